"""Underrepresented classes (docs/underrepresented.md): the slope of each model's change of Bn
on log class count in long-tailed splits, balanced-vs-imbalanced tests, and the share of
pruning-identified exemplars per class."""
from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats as sps

from prunescope import metrics, stats
from prunescope.metrics.underrepresented import Exemplars, count_slopes, slope_points


#: cell keys of the long-tail and PIE frames (:data:`prunescope.metrics.CELL_KEYS`)
UNDER_CELL = list(metrics.CELL_KEYS)


def longtail_slopes(paired: pd.DataFrame, splits: pd.DataFrame
                    ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The long-tail slope of each cell trained on an imbalanced split.

    Args:
        paired: :func:`prunescope.metrics.intensification` of the study.
        splits: :func:`prunescope.study.results.training_splits` (label -> base, imbalance).

    Returns:
        ``(ci, points)``: per :data:`UNDER_CELL` cell, the mean, sd and 99 % t-interval over
        models of the per-model least-squares slope of ``B_after - B_before`` on log10 of the
        class's training count (:func:`~prunescope.metrics.underrepresented.count_slopes`;
        label ``<``/``>``/``?`` against 0); and the (model, class) points of the first
        test distribution (:func:`~prunescope.metrics.underrepresented.slope_points`).
    """
    lt_labels = set(splits.loc[splits["imbalance_ratio"] > 1, "dataset"])
    p = paired[paired["dataset"].isin(lt_labels)]
    ci = stats.mean_ci(count_slopes(p, splits), value="slope", by=UNDER_CELL, null=0.0)
    first = p[p["distribution"] == p["distribution"].iloc[0]] if len(p) else p
    return ci, slope_points(first, splits)


def imbalance_tests(alphas: pd.DataFrame, splits: pd.DataFrame,
                    correction: str = "bonferroni") -> pd.DataFrame:
    """Balanced vs imbalanced training split at each ratio: one-sided independent t-test per
    (base dataset, arch, method, ratio, distribution) and imbalanced split, H_a: the model trained
    on the imbalanced split has the larger E[α] (intensification grows with imbalance). One family
    per ratio column (its rows: every imbalanced split of every base dataset, architecture,
    method and distribution; an undefined row counts), corrected with ``correction``.

    Args:
        alphas: per-model α (:func:`prunescope.metrics.model_alpha`), ``dataset`` = results label.
        splits: :func:`prunescope.study.results.training_splits` (label -> base, imbalance).

    Returns:
        One row per comparison: ``dataset`` (base), ``arch``, ``method``, ``distribution``,
        ``comparison`` (``<label> vs balanced``), ``ratio``, ``n_imbalanced``, ``n_balanced``,
        ``mean_diff`` (imbalanced - balanced), ``t``, ``df``, ``p_raw``, ``p_corrected``,
        ``family`` (the ratio column it was corrected in); empty without imbalanced splits.
    """
    lv = splits.drop_duplicates("dataset").set_index("dataset")
    a = alphas[alphas["dataset"].isin(lv.index)].copy()
    a["base"] = a["dataset"].map(lv["base_dataset"])
    a["imb"] = a["dataset"].map(lv["imbalance_ratio"])
    rows = []
    keys = ["base", *UNDER_CELL[1:]]
    for k, grp in a.groupby(keys, sort=True):
        bal = grp.loc[grp["imb"] == 1.0, "alpha"].to_numpy(np.float64)
        if not len(bal):
            continue
        for label, sub in grp[grp["imb"] > 1.0].groupby("dataset", sort=False):
            imb = sub["alpha"].to_numpy(np.float64)
            r = stats.ttest(imb[np.isfinite(imb)], bal[np.isfinite(bal)], alternative="greater")
            rows.append(dict(zip(keys, k)) | dict(
                imb_ratio=float(sub["imb"].iloc[0]), comparison=f"{label} vs balanced",
                n_imbalanced=int(np.isfinite(imb).sum()), n_balanced=int(np.isfinite(bal).sum()),
                mean_diff=float(np.nanmean(imb) - np.nanmean(bal)), t=r["t"], df=r["df"],
                p_raw=r["p_raw"]))
    cols = ["dataset", "arch", "method", "distribution", "comparison", "ratio", "n_imbalanced",
            "n_balanced", "mean_diff", "t", "df", "p_raw", "p_corrected", "family"]
    if not rows:
        return pd.DataFrame(columns=cols)
    out = pd.DataFrame(rows).rename(columns={"base": "dataset"})
    out["family"] = [f"ratio {r:g}x, {d}" for r, d in zip(out["ratio"], out["distribution"])]
    out["p_corrected"] = np.nan
    for _, idx in out.groupby("family", sort=False).groups.items():
        out.loc[idx, "p_corrected"] = stats.correct(out.loc[idx, "p_raw"].to_numpy(), correction)
    out = out.sort_values(["ratio", "dataset", "arch", "method", "imb_ratio"], kind="stable")
    return out[cols].reset_index(drop=True)


def pie_share(ex: Exemplars, paired: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Are a cell's PIEs in the classes that lose recall?

    Args:
        ex: the study's exemplars (:func:`prunescope.study.results.load_exemplars`).
        paired: :func:`prunescope.metrics.intensification` of the study.

    Returns:
        ``(share, rho)``: ``ex.per_class`` with ``delta_B``, the class's mean ``B_after -
        B_before`` over models; and per :data:`UNDER_CELL` cell the Spearman correlation over
        classes of PIE share with ``delta_B`` (``spearman_rho``; NaN with fewer than 3
        classes), the class with the largest share (``top_share_cls``, ``top_share``) and the
        class losing the most recall balance (``most_recall_lost_cls``).
    """
    dB = paired.assign(delta_B=paired["B_after"] - paired["B_before"]).groupby(
        UNDER_CELL + ["cls"], sort=False)["delta_B"].mean().reset_index()
    share = ex.per_class.merge(dB, on=UNDER_CELL + ["cls"], how="left")
    rho = []
    for k, g in share.groupby(UNDER_CELL, sort=True):
        ok = g[np.isfinite(g["share"]) & np.isfinite(g["delta_B"])]
        r = sps.spearmanr(ok["delta_B"], ok["share"]).statistic if len(ok) > 2 else np.nan
        worst = g.sort_values("delta_B").iloc[0] if len(g) else None
        rho.append(dict(zip(UNDER_CELL, k)) | dict(
            spearman_rho=float(r), top_share_cls=int(g.sort_values("share").iloc[-1]["cls"]),
            top_share=float(g["share"].max()),
            most_recall_lost_cls=None if worst is None else int(worst["cls"])))
    return share, pd.DataFrame(rho)


def pie_accuracy(ex: Exemplars) -> pd.DataFrame:
    """Per :data:`UNDER_CELL` cell, the mean accuracy (fraction) of the dense and of the pruned
    models on the cell's PIEs and on the other test images: columns ``<group> acc on pie`` and
    ``<group> acc on rest``."""
    acc = ex.accuracy.groupby(UNDER_CELL + ["group"], sort=False)[["acc_pie", "acc_rest"]].mean()
    acc = acc.unstack("group")
    acc.columns = [f"{g} acc on {w.split('_')[1]}" for w, g in acc.columns]
    return acc.reset_index()
