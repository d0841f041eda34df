"""The report's "Mitigation" section (docs/mitigation.md): fine-tuning objectives compared
with cross-entropy at each pruning ratio.

Tables: accuracy, alpha and max EAG with 99 % intervals per (cell, objective, ratio); the
two-sided paired t-tests of each objective against ``ce`` (one family per ratio column); for
``ceag`` the fraction of classes whose constraint holds on the training and test splits. Figure:
accuracy against max EAG, one panel per ratio, one point per objective with its 99 % interval
bars. The statistics come from :func:`prunescope.analysis.mitigation`; this module lays them
out.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from prunescope import analysis
from prunescope.catalog import objectives as registry
from prunescope.report.html import Section, figure_item, table_item
from prunescope.report.style import method_label, new_figure, ratio_label

INTRO = ("Each pruned model here was fine-tuned with one objective (docs/mitigation.md): "
         "cross-entropy (CE, SPEC 4), distillation from its dense parent (KD), equalized loss "
         "(EL) or the constrained excess accuracy gap (CEAG, Hashemizadeh et al. 2024). "
         "EAG_c = (R^c dense - R^c pruned) - (A dense - A pruned): how much more class c lost "
         "than the model; max EAG is the worst class's excess. The sections above show the CE "
         "models only, so that no cell pools two objectives.")
_KEYS = ["dataset", "arch", "method", "distribution"]
_NAMES = {"accuracy_after": "accuracy (%)", "alpha": "alpha", "max_eag": "max EAG (points)"}


def _scaled(frame: pd.DataFrame, value_col: str, cols: list[str]) -> pd.DataFrame:
    """Accuracy and EAG as percentages / points (fractions x 100), alpha as it is."""
    out = frame.copy()
    scale = np.where(out[value_col].isin(["accuracy_after", "max_eag"]), 100.0, 1.0)
    for c in cols:
        out[c] = out[c] * scale
    return out


def _label(name: str) -> str:
    return registry.objective(name).label


def summary_table(summary: pd.DataFrame) -> pd.DataFrame:
    """One row per (cell, ratio, objective): n and each value's mean [99 % CI]."""
    s = _scaled(summary, "value", ["mean", "ci_low", "ci_high"])
    s["cell"] = [f"{m:.3f} [{lo:.3f}, {hi:.3f}]" if n >= 2 else f"{m:.3f}"
                 for m, lo, hi, n in s[["mean", "ci_low", "ci_high", "n"]].itertuples(index=False)]
    wide = s.pivot_table(index=[*_KEYS, "ratio", "objective", "n"], columns="value",
                         values="cell", aggfunc="first").reset_index()
    wide["_o"] = wide["objective"].map(registry.display_order().index)
    wide = wide.sort_values([*_KEYS, "ratio", "_o"], kind="stable").drop(columns="_o")
    wide["objective"] = wide["objective"].map(_label)
    return wide.rename(columns=_NAMES)[[*_KEYS, "ratio", "objective", "n",
                                        *[_NAMES[v] for v in analysis.MITIGATION_VALUES
                                          if _NAMES[v] in wide.rename(columns=_NAMES)]]
                                       ].reset_index(drop=True)


def tests_table(tests: pd.DataFrame) -> pd.DataFrame:
    """The paired tests, differences in points for accuracy and EAG."""
    t = _scaled(tests, "value", ["mean1", "mean2", "mean_diff"])
    t = t.assign(_o=t["objective"].map(registry.display_order().index)).sort_values(
        [*_KEYS, "value", "ratio", "_o"], kind="stable")
    t["value"] = t["value"].map(_NAMES)
    t["comparison"] = [f"{_label(o)} - {_label(r)}" for o, r in t[["objective", "reference"]]
                       .itertuples(index=False)]
    cols = [*_KEYS, "value", "ratio", "comparison", "n", "mean_diff", "t", "df", "p_raw",
            "family_size", "p_corrected"]
    return t[cols].reset_index(drop=True)


def holds_table(holds: pd.DataFrame) -> pd.DataFrame:
    """Mean fraction (%) of classes whose CEAG constraint holds, per split, with its CI."""
    h = holds.copy()
    for c in ("mean", "ci_low", "ci_high"):
        h[c] = 100 * h[c]
    h = h.rename(columns={"mean": "classes held (%)", "ci_low": "99% CI low",
                          "ci_high": "99% CI high"})
    return h[[*_KEYS, "ratio", "split", "n", "classes held (%)", "99% CI low",
              "99% CI high"]].sort_values([*_KEYS, "ratio", "split"]).reset_index(drop=True)


def tradeoff_figure(summary: pd.DataFrame, title: str) -> Figure:
    """Accuracy (%) against max EAG (points), one panel per ratio with its own axes (a
    collapsed ratio would otherwise squeeze the others into a corner): one point per objective,
    coloured as its record says, with 99 % interval bars on both axes."""
    acc = summary[summary["value"] == "accuracy_after"].set_index(["objective", "ratio"])
    eag = summary[summary["value"] == "max_eag"].set_index(["objective", "ratio"])
    ratios = sorted(set(acc.index.get_level_values("ratio")))
    fig = new_figure(3.2 * len(ratios) + 0.8, 3.8)
    axes = fig.subplots(1, len(ratios), squeeze=False)[0]
    order = registry.display_order()
    for ax, ratio in zip(axes, ratios):
        for obj in sorted(acc.xs(ratio, level="ratio").index, key=order.index):
            if (obj, ratio) not in eag.index:
                continue
            a, e = acc.loc[(obj, ratio)], eag.loc[(obj, ratio)]
            x, y = 100 * e["mean"], 100 * a["mean"]
            xerr = None if not np.isfinite(e["ci_low"]) else [[x - 100 * e["ci_low"]],
                                                              [100 * e["ci_high"] - x]]
            yerr = None if not np.isfinite(a["ci_low"]) else [[y - 100 * a["ci_low"]],
                                                              [100 * a["ci_high"] - y]]
            ax.errorbar(x, y, xerr=xerr, yerr=yerr, fmt="o",
                        color=registry.objective(obj).colour, capsize=3, label=_label(obj))
        ax.set_title(f"ratio {ratio_label(ratio)}", fontsize=9)
        ax.set_xlabel("max EAG over classes (points)")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("test accuracy after pruning (%)")
    axes[-1].legend(fontsize=7)
    fig.suptitle(f"{title}: up and left is better", fontsize=10)
    return fig


def mitigation_section(frame: pd.DataFrame, out: Path, nominal: str = "nominal",
                       correction: str = "bonferroni",
                       train_recall: pd.DataFrame | None = None) -> Section | None:
    """The "Mitigation" section, or ``None`` when the study fine-tuned with ``ce`` only."""
    mt = analysis.mitigation(frame, nominal, correction, train_recall)
    if mt is None:
        return None
    sec = Section("mitigation", "Mitigation", intro=INTRO)
    tdir, fdir = out / "tables", out / "figures"
    tdir.mkdir(parents=True, exist_ok=True)
    fdir.mkdir(parents=True, exist_ok=True)
    for (dataset, arch, method), sub in mt.summary.groupby(["dataset", "arch", "method"]):
        stem = "_".join(str(s) for s in (dataset, arch, method)).replace("/", "-")
        title = f"{dataset} · {arch} · {method_label(method)}"
        sec.figures.append(figure_item(
            tradeoff_figure(sub, title), fdir / f"mitigation_{stem}",
            f"Accuracy against max EAG: {title}",
            "Mean over models of test accuracy after pruning against the largest excess "
            "accuracy gap over classes, one panel per ratio and one point per objective, "
            "with 99 % t intervals on both axes. Down and right is worse.",
            f"fig-mitigation-{stem}"))
    sec.tables.append(table_item(
        summary_table(mt.summary), tdir / "mitigation", "Objectives per ratio",
        "Mean over models [99 % t interval] of accuracy after pruning, alpha and max EAG "
        "(accuracy in %, EAG in points).", "tab-mitigation"))
    sec.tables.append(table_item(
        tests_table(mt.tests), tdir / "mitigation_tests", "Objectives against CE",
        f"Two-sided paired t-tests (pairs share the dense model) of each objective against CE; "
        f"p corrected ({correction}) within each ratio column (family size = its rows).",
        "tab-mitigation-tests", digits=4))
    if mt.holds is not None:
        sec.tables.append(table_item(
            holds_table(mt.holds), tdir / "ceag_constraints", "CEAG constraints held",
            "Mean over CEAG models of the percentage of classes with EAG_c <= the tolerance, "
            "on the training split (recalls recorded by the jobs) and on the test split.",
            "tab-ceag-constraints"))
    return sec
