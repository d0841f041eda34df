"""Scheduling overhead of the study layer, and wall time of the quick study (issue 5).

Part 1 (always): a study of ~10,000 jobs (233 LeNet-5 models x MP/GP/UP/RP x 5 ratios, each
model and pruned model evaluated once) run by the real driver against the real SQLite store,
with an executor that returns instantly (a 10x10 confusion matrix for each evaluation). This
times everything but the work itself: spec parsing, planning (ids), store inserts, the
ready-queue, two transactions per pack (running, finished) and the per-class counts; then the
no-op rerun on the complete store and ``load_results``. Target: < 5 ms per job.

Part 2 (``--quick``): ``prunescope run studies/quick.toml`` from an empty store, then the rerun on
the complete store (target < 5 s), each as a subprocess, into a temporary output folder.

Usage::

    .venv/bin/python bench/scheduling.py [--models 233] [--pack-size 1] [--quick]

Prints a JSON object with the measured numbers.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from prunescope.study import load_results, make_plan, parse_spec, run_study
from prunescope.study.store import JobResult

ROOT = Path(__file__).resolve().parents[1]


class InstantExecutor:
    """An executor whose packs finish immediately (the work itself costs nothing)."""

    def __init__(self) -> None:
        self.queue: list = []
        self.cm = np.diag(np.full(10, 90)) + 1

    def free_slots(self) -> int:
        return 1 - len(self.queue)

    def submit(self, pack, ctx) -> None:
        self.queue.append(pack)

    def wait(self):
        pack = self.queue.pop()
        return [(pack, [JobResult(j.id, "done", achieved_ratio=j.ratio,
                                  artifacts={"weights": f"/dev/null/{j.id}"},
                                  confusion=self.cm if j.kind == "evaluate" else None,
                                  distribution=j.distribution) for j in pack.jobs])]

    def close(self) -> None:
        self.queue.clear()


def bench_overhead(models: int, pack_size: int) -> dict[str, float]:
    text = f"""
name = "bench"
models = {models}
datasets = ["mnist"]
architectures = ["lenet5"]
methods = ["mp", "gp", "up", "rp"]
ratios = [2, 4, 10, 20, 50]
[executor]
pack_size = {pack_size}
"""
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        spec = parse_spec(text, base_dir=tmp)
        t_spec = time.perf_counter() - t0
        t0 = time.perf_counter()
        n = len(make_plan(spec).jobs)
        t_plan = time.perf_counter() - t0
        t0 = time.perf_counter()
        summary = run_study(spec, executor=InstantExecutor())
        t_run = time.perf_counter() - t0
        assert summary.ran == n and summary.failed == 0
        t0 = time.perf_counter()
        again = run_study(spec, executor=InstantExecutor())
        t_rerun = time.perf_counter() - t0
        assert again.ran == 0
        t0 = time.perf_counter()
        res = load_results(spec)
        t_load = time.perf_counter() - t0
        db_mb = os.path.getsize(Path(spec.output) / "study.sqlite") / 1e6
    return {
        "jobs": n, "pack_size": pack_size, "spec_s": t_spec, "plan_s": t_plan,
        "run_s": t_run, "run_ms_per_job": 1e3 * t_run / n,
        "plan_plus_run_ms_per_job": 1e3 * (t_plan + t_run) / n,
        "rerun_complete_s": t_rerun, "load_results_s": t_load, "frame_rows": len(res.frame),
        "store_mb": db_mb,
    }


def bench_quick() -> dict[str, float]:
    cli = [sys.executable, "-c", "from prunescope.cli import main; main()"]
    with tempfile.TemporaryDirectory() as tmp:
        out = {}
        for label in ("empty_store_s", "complete_store_s"):
            t0 = time.perf_counter()
            subprocess.run([*cli, "run", str(ROOT / "studies" / "quick.toml"), "--quiet",
                            "--output", tmp], check=True)
            out[label] = time.perf_counter() - t0
        res = load_results(ROOT / "studies" / "quick.toml", output=tmp)
        f = res.frame
        acc = f.groupby(["method", "ratio", "model"])["correct"].sum() / f.groupby(
            ["method", "ratio", "model"])["support"].sum()
        out["mean_accuracy"] = {f"{m}@{r:g}": float(v) for (m, r), v in
                                acc.groupby(level=[0, 1]).mean().items()}
        out["job_wall_s"] = {k: float(v) for k, v in
                             res.jobs.groupby("kind")["wall_s"].sum().items()}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", type=int, default=233, help="models (43 jobs each)")
    ap.add_argument("--pack-size", type=int, default=1)
    ap.add_argument("--quick", action="store_true", help="also time studies/quick.toml")
    args = ap.parse_args()
    result = {"overhead": bench_overhead(args.models, args.pack_size)}
    if args.quick:
        result["quick"] = bench_quick()
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
