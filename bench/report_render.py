"""Benchmark: time to render the report of a study the size of the paper's full grid (SPEC 4).

The results frame is synthetic (tests/report/report_synth.py) but store-sized: 30 models per
(dataset, arch); LeNet-5 on MNIST and Fashion-MNIST with MP; ResNet-20/32/44/56/110 on CIFAR-10
with MP and UP; ResNet-56 / CIFAR-10 with GP and RP; ResNet-56 / CIFAR-100 (100 classes) with MP
and UP; ratios {2, 4, 10, 20, 50}; the nominal test set (``--distributions N`` adds N-1 shifted
ones for the Lost-in-Pruning views).

Usage::

    .venv/bin/python bench/report_render.py [--repeat 1] [--distributions 1] [--json out.json]

Prints one JSON object: frame rows, figure and table counts, HTML size, and per run the wall and
CPU seconds (user + system) of ``render_report``; on a shared machine CPU seconds are the better
measure of the work, wall seconds of what a user waits.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "report"))
from report_synth import paper_grid, synthetic_results  # noqa: E402

from prunescope.report import render_report  # noqa: E402

SHIFTED = ("gaussian_noise-3", "contrast-3", "jpeg-5", "gaussian_blur-5", "impulse_noise-1")


def _cpu_s() -> float:
    """CPU seconds (user + system) of this process."""
    t = os.times()
    return t.user + t.system


def main() -> None:
    """Render the full-grid report ``--repeat`` times and print the timings as JSON."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeat", type=int, default=1, help="renders to time (default 1)")
    ap.add_argument("--distributions", type=int, default=1,
                    help=f"test distributions incl. nominal, 1..{1 + len(SHIFTED)} (default 1)")
    ap.add_argument("--json", type=Path, help="also write the result to this file")
    args = ap.parse_args()
    if not 1 <= args.distributions <= 1 + len(SHIFTED):
        ap.error(f"--distributions must be in 1..{1 + len(SHIFTED)}")
    dists = ("nominal", *SHIFTED[: args.distributions - 1])
    t0 = time.perf_counter()
    frame = synthetic_results(paper_grid(), n_models=30, distributions=dists)
    gen_s = time.perf_counter() - t0
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.repeat):
            out = Path(tmp) / f"run{i}"
            wall, cpu = time.perf_counter(), _cpu_s()
            html = render_report(frame, out, spec_text="# synthetic full grid\n",
                                 study_name="paper-grid-synthetic")
            runs.append({"wall_s": round(time.perf_counter() - wall, 2),
                         "cpu_s": round(_cpu_s() - cpu, 2)})
        figs = list((out / "figures").glob("*.png"))
        result = {
            "frame_rows": len(frame), "pruned_models": int(
                frame[frame["method"] != "dense"].groupby(["dataset", "arch", "method", "ratio",
                                                           "model"]).ngroups),
            "distributions": len(dists), "figures_png_pdf": len(figs),
            "tables": len(list((out / "tables").glob("*.csv"))),
            "html_mb": round(html.stat().st_size / 1e6, 2), "generate_frame_s": round(gen_s, 2),
            "runs": runs, "cpu_count": os.cpu_count(), "load_avg_1min": os.getloadavg()[0],
            "python": platform.python_version(),
        }
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
