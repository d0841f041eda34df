"""Benchmark: the whole analysis (alphas, CIs, all SPEC 5 test families) on a synthetic results
frame the size of the paper's full study (SPEC 4 grid, 30 models per (dataset, arch)).

Usage: python bench/analysis.py [--classes 10 100] [--repeats 5] [--json PATH]
Prints one Markdown table row per class count; results go in docs/benchmarks/analysis.md.
"""
from __future__ import annotations

import argparse
import json
import platform
import time

import numpy as np
import pandas as pd

from prunescope.metrics import (
    NOMINAL,
    error_frame,
    intensification,
    model_alpha,
    pooled_alpha,
    prune_potential,
    validate,
)
from prunescope.analysis import family_orders
from prunescope.stats import all_families, mean_ci

RATIOS = (2.0, 4.0, 10.0, 20.0, 50.0)
RESNETS = ("resnet20", "resnet32", "resnet44", "resnet56", "resnet110")


def paper_grid() -> list[tuple[str, str, str]]:
    """(dataset, arch, method) of SPEC 4: MP everywhere, UP on every ResNet, GP/RP on ResNet-56/CIFAR-10."""
    pairs = [("mnist", "lenet5"), ("fashion-mnist", "lenet5")]
    pairs += [(d, a) for d in ("cifar10", "cifar100") for a in RESNETS]
    grid = [(d, a, "mp") for d, a in pairs]
    grid += [(d, a, "up") for d, a in pairs if a != "lenet5"]
    grid += [("cifar10", "resnet56", m) for m in ("gp", "rp")]
    return grid


def synthetic_tidy(n_classes: int, n_models: int = 30, per_class: int = 100, seed: int = 0) -> pd.DataFrame:
    """Tidy counts for the paper grid with ``n_classes`` classes and ``per_class`` test samples each.

    Dense per-class recalls vary around 0.9; pruning at ratio t scales the recall gaps by
    1 + t/50 and lowers accuracy by t/500 (a planted intensification). ``correct`` is a binomial
    draw; the errors of an evaluation are spread over the predicted classes multinomially, so
    sum(predicted) = sum(support) and predicted >= correct, as in a real confusion matrix.
    """
    rng = np.random.default_rng(seed)
    pairs = sorted({(d, a) for d, a, _ in paper_grid()})
    evals = [(d, a, "dense", 1.0) for d, a in pairs]
    evals += [(d, a, m, t) for d, a, m in paper_grid() for t in RATIOS]
    base = {p: np.clip(0.9 + rng.normal(0, 0.05, (n_models, n_classes)), 0.05, 0.99) for p in pairs}
    recalls = []
    for d, a, _, t in evals:
        r = base[(d, a)]
        acc = r.mean(axis=1, keepdims=True)
        gaps = (r - acc) * (1 + (t - 1) / 50) + (rng.normal(0, 0.01, r.shape) if t > 1 else 0.0)
        recalls.append(np.clip(acc - (t - 1) / 500 + gaps, 0.01, 0.999))
    rec = np.concatenate(recalls)  # (E * n_models, n_classes)
    correct = rng.binomial(per_class, rec)
    wrong = per_class * n_classes - correct.sum(axis=1)
    predicted = correct + rng.multinomial(wrong, np.full(n_classes, 1.0 / n_classes))
    keys = pd.DataFrame(np.repeat(np.array(evals, dtype=object), n_models, axis=0),
                        columns=["dataset", "arch", "method", "ratio"])
    keys["ratio"] = keys["ratio"].astype(np.float64)
    keys["model"] = np.tile(np.arange(n_models), len(evals))
    keys["distribution"] = NOMINAL
    tidy = keys.loc[np.repeat(np.arange(len(keys)), n_classes)].reset_index(drop=True)
    for col in ("dataset", "arch", "method"):
        tidy[col] = tidy[col].astype(str)
    tidy["cls"] = np.tile(np.arange(n_classes, dtype=np.int64), len(keys))
    tidy["support"] = np.int64(per_class)
    tidy["predicted"] = predicted.reshape(-1).astype(np.int64)
    tidy["correct"] = correct.reshape(-1).astype(np.int64)
    return validate(tidy)


def analyse(tidy: pd.DataFrame) -> dict[str, object]:
    """The whole analysis of SPEC 5 on a tidy frame."""
    paired = intensification(tidy)
    alphas = model_alpha(paired)
    return {
        "alphas": alphas,
        "pooled": pooled_alpha(paired),
        "ci": mean_ci(alphas),
        "families": all_families(alphas, family_orders()),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--classes", type=int, nargs="+", default=[10, 100])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--json", default=None, help="also write the results as JSON to this path")
    args = ap.parse_args()
    results = []
    print("| classes | pruned models | tidy rows | analysis wall s (median) | min | CPU s (median) "
          "| prune potential s | comparisons |")
    print("|---|---|---|---|---|---|---|---|")
    for c in args.classes:
        tidy = synthetic_tidy(c)
        n_pruned = int(((tidy["method"] != "dense") & (tidy["cls"] == 0)).sum())
        times, cpu, pp_times = [], [], []
        for _ in range(args.repeats):
            t0, c0 = time.perf_counter(), time.process_time()
            out = analyse(tidy)
            times.append(time.perf_counter() - t0)
            cpu.append(time.process_time() - c0)
            t0 = time.perf_counter()
            prune_potential(error_frame(tidy))
            pp_times.append(time.perf_counter() - t0)
        n_cmp = sum(len(r.long) for r in out["families"].values())
        row = {"classes": c, "pruned_models": n_pruned, "tidy_rows": len(tidy),
               "median_s": float(np.median(times)), "min_s": float(np.min(times)),
               "median_cpu_s": float(np.median(cpu)),
               "prune_potential_s": float(np.median(pp_times)), "comparisons": n_cmp,
               "mean_alpha_ratio50": float(out["alphas"].query("ratio == 50")["alpha"].mean())}
        results.append(row)
        print(f"| {c} | {n_pruned} | {len(tidy)} | {row['median_s']:.3f} | {row['min_s']:.3f} | "
              f"{row['median_cpu_s']:.3f} | "
              f"{row['prune_potential_s']:.3f} | {n_cmp} |")
    meta = {"python": platform.python_version(), "numpy": np.__version__, "pandas": pd.__version__,
            "machine": platform.machine(), "repeats": args.repeats}
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"meta": meta, "results": results}, fh, indent=2)


if __name__ == "__main__":
    main()
