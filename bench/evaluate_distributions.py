"""Wall time of the evaluate phase of a study with all 41 test distributions of SPEC 7 (issue 15,
item 7).

A small real-MNIST LeNet-5 study (``--models`` dense models, each pruned by MP at ratio 4, a few
SGD steps of training) is run twice into one temporary output folder: first with the nominal test
set only (trains, prunes, evaluates nominal), then with ``nominal`` and the 8 corruptions at the
5 severities (41 distributions): the second run reruns nothing but the 40 x 2 x ``--models`` new
evaluate jobs, so its wall time is the evaluate phase. Every evaluation is on the full
10,000-image test split; one worker process, ``--threads`` torch threads.

Usage::

    PYTHONPATH=src .venv/bin/python bench/evaluate_distributions.py [--models 2] [--threads 1]

Prints a JSON object: the number of evaluate jobs, the phase's wall time, its per-job mean, and
the summed job CPU seconds from the store.
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from prunescope.data.corruptions import distribution_names
from prunescope.study import load_results, parse_spec, run_study

STUDY = """
name = "evaluate-bench"
seed = 3
models = {models}
datasets = ["mnist"]
architectures = ["lenet5"]
methods = ["mp"]
ratios = [4]
n_val = 500
distributions = {distributions}
[train]
schedule = [[1, 0.05]]
max_steps_per_epoch = 20
[finetune]
schedule = [[1, 0.01]]
max_steps_per_epoch = 5
[executor]
workers = 1
threads = {threads}
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)

        def spec(dists: list[str]):
            text = STUDY.format(models=args.models, threads=args.threads,
                                distributions=json.dumps(dists))
            (folder / "study.toml").write_text(text)
            return parse_spec(text, base_dir=folder, source=str(folder / "study.toml"))

        run_study(spec(["nominal"]))
        full = spec(distribution_names())
        t0 = time.perf_counter()
        summary = run_study(full)
        wall = time.perf_counter() - t0
        jobs = load_results(full).jobs
        ev = jobs[(jobs["kind"] == "evaluate") & (jobs["distribution"] != "nominal")]
        print(json.dumps({
            "distributions": len(distribution_names()),
            "evaluate_jobs_run": int(len(ev)),
            "ran": summary.ran,
            "phase_wall_s": round(wall, 2),
            "per_job_wall_ms": round(1000 * wall / max(1, len(ev)), 1),
            "jobs_cpu_s": round(float(ev["info"].map(lambda i: i.get("cpu_s", 0.0)).sum()), 2),
        }, indent=1))


if __name__ == "__main__":
    main()
