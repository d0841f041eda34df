"""The side-by-side tables of docs/reproduction.md, from the reports of two protocols' studies.

Reads the CSV tables ``prunescope report`` wrote for each study (``<output>/report/tables``)
and prints Markdown: accuracy before pruning, alpha with its 99 % CI label and the accuracy and
achieved ratio per cell, the consecutive-ratio p-values, the recall variance both ways, and the
method-pair p-values, one column block per protocol. Copies the CSVs it read to ``--copy-to``
(one folder per protocol) so the page's numbers stay checkable.

Usage::

    python bench/reproduction_tables.py paper-code=/work/runs/paper-lenet \\
        corrected=/work/runs/paper-corrected-lenet --copy-to docs/reproduction
"""
from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import pandas as pd

from prunescope.report.tables import to_markdown

TABLES = ("dense_accuracy", "alpha_ci", "recall_variance", "recall_variance_table11",
          "pvalues_ratios_by_method", "pvalues_methods", "pvalues_mp_vs_up", "coverage")
CELL = ["dataset", "method", "ratio"]


def _read(folder: Path, name: str) -> pd.DataFrame | None:
    path = folder / "report" / "tables" / f"{name}.csv"
    return pd.read_csv(path) if path.exists() else None


def alpha_side_by_side(runs: dict[str, Path]) -> pd.DataFrame:
    """One row per (dataset, method, ratio): per protocol models, achieved ratio, mean alpha
    [99 % CI] label and accuracy after pruning (%)."""
    parts = []
    for label, folder in runs.items():
        ci = _read(folder, "alpha_ci")
        if ci is None:
            continue
        ci = ci[ci["distribution"] == "nominal"]
        out = ci[CELL].copy()
        out[f"{label}: n"] = ci["n"]
        out[f"{label}: achieved"] = ci["achieved ratio"].round(2)
        out[f"{label}: α [99% CI]"] = [f"{m:.3f} [{lo:.2f}, {hi:.2f}] {lab}" for m, lo, hi, lab in
                                       ci[["mean α", "99% CI low", "99% CI high", "label"]]
                                       .itertuples(index=False)]
        out[f"{label}: acc (%)"] = ci["Ā (%)"].round(2)
        parts.append(out.set_index(CELL))
    return _counts_as_ints(pd.concat(parts, axis=1).reset_index())


def side_by_side(runs: dict[str, Path], name: str, keys: list[str]) -> pd.DataFrame:
    """Table ``name`` of each protocol, rows matched on ``keys``, columns prefixed."""
    parts = []
    for label, folder in runs.items():
        t = _read(folder, name)
        if t is not None:
            parts.append(t.set_index(keys).add_prefix(f"{label}: "))
    return _counts_as_ints(pd.concat(parts, axis=1).reset_index())


def _counts_as_ints(frame: pd.DataFrame) -> pd.DataFrame:
    """Model counts as integers (a row one protocol lacks made them floats with NaN)."""
    for col in frame.columns:
        if str(col).endswith((": n", ": models")):
            frame[col] = ["" if pd.isna(v) else str(int(v)) for v in frame[col]]
    return frame


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("runs", nargs="+", help="LABEL=OUTPUT folder of a study with a report")
    ap.add_argument("--copy-to", default=None)
    args = ap.parse_args()
    runs = {r.split("=", 1)[0]: Path(r.split("=", 1)[1]) for r in args.runs}
    print("## accuracy before pruning\n")
    print(to_markdown(side_by_side(runs, "dense_accuracy", ["dataset", "arch", "method"]), 2))
    print("\n## alpha, achieved ratio, accuracy after pruning\n")
    print(to_markdown(alpha_side_by_side(runs)))
    for name, keys, digits in (("recall_variance", ["dataset", "arch", "method"], 5),
                               ("recall_variance_table11", ["dataset", "arch", "method"], 5),
                               ("pvalues_ratios_by_method",
                                ["dataset", "arch", "distribution", "comparison"], 3),
                               ("pvalues_methods",
                                ["dataset", "arch", "distribution", "comparison"], 3),
                               ("pvalues_mp_vs_up",
                                ["dataset", "arch", "distribution", "comparison"], 3)):
        if all(_read(f, name) is None for f in runs.values()):
            continue
        print(f"\n## {name}\n")
        print(to_markdown(side_by_side(runs, name, keys), digits))
    if args.copy_to:
        for label, folder in runs.items():
            dest = Path(args.copy_to) / label
            dest.mkdir(parents=True, exist_ok=True)
            for name in TABLES:
                for suffix in (".csv", "_long.csv"):
                    src = folder / "report" / "tables" / f"{name}{suffix}"
                    if src.exists():
                        shutil.copy(src, dest / src.name)


if __name__ == "__main__":
    main()
