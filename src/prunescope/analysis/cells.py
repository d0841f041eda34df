"""The analysis of a results frame's cells: the nominal test set checked, orphans dropped,
per-model and pooled alphas with their intervals, the notices the report shows, the SPEC 5
p-value families and the study's coverage (:func:`analyse` -> :class:`Analysis`)."""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from prunescope import metrics, stats
from prunescope.analysis.orders import family_orders

#: Confidence level of every interval (SPEC 5: 99 % per cell, 95 % family-wise over 5 ratios).
CI_LEVEL = 0.99
#: A cell whose mean accuracy after pruning is below this multiple of chance (1 / classes) is
#: reported as collapsed.
COLLAPSE_FACTOR = 2.0
#: Per-evaluation values that are not keys (they differ between a model and its dense parent).
VALUE_COLUMNS = ("achieved_ratio",)
#: Job statuses that count as finished.
DONE_STATUSES = ("done",)
#: Columns an agreement frame must have (``prunescope.study.StudyResults.agreement``).
AGREEMENT_KEYS = ("dataset", "arch", "method", "ratio", "model", "distribution", "agreement")
#: Keys of one prune-potential summary row.
POTENTIAL_KEYS = ("dataset", "arch", "method", "distribution")


def check_choice(name: str, value: object, allowed: tuple[str, ...]) -> None:
    """Raise ``ValueError`` naming the allowed values unless ``value`` is one of them."""
    if value not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(allowed)}; got {value!r}")


def check_frame(frame: pd.DataFrame) -> None:
    """Raise ``TypeError``/``ValueError`` unless ``frame`` is a non-empty tidy results frame."""
    if not isinstance(frame, pd.DataFrame):
        raise TypeError(f"results_frame must be a pandas DataFrame, got {type(frame).__name__}")
    if frame.empty:
        raise ValueError("results frame is empty: no evaluation of the study has finished yet; "
                         "run the study (prunescope run STUDY) and render the report when at "
                         "least one dense and one pruned model are evaluated")
    metrics.validate(frame)


def cell_ci(frame: pd.DataFrame, value: str, by: list[str], null: float,
            method: str = "t") -> pd.DataFrame:
    """``stats.mean_ci`` of ``value`` per ``by`` cell at :data:`CI_LEVEL` (``method`` t or
    bootstrap, seeded), keeping a pruning ``level`` key (``mean_ci``'s own ``level`` column is
    the confidence level, which this drops in that case)."""
    renamed = "level" in by
    if renamed:
        frame = frame.rename(columns={"level": "_prune_level"})
        by = ["_prune_level" if c == "level" else c for c in by]
    out = stats.mean_ci(frame, value=value, by=by, level=CI_LEVEL, null=null, method=method)
    if renamed:
        out = out.drop(columns="level").rename(columns={"_prune_level": "level"})
    return out


def drop_orphans(frame: pd.DataFrame, notices: list[str]) -> pd.DataFrame:
    """``frame`` without the pruned rows whose dense parent was not evaluated (they cannot be
    paired); appends a notice saying how many to ``notices``."""
    keys = list(metrics.PARENT_KEYS)
    dense = frame.loc[frame["method"] == metrics.DENSE_METHOD, keys].drop_duplicates()
    flag = frame.merge(dense.assign(_has_parent=True), on=keys, how="left")["_has_parent"]
    orphan = (frame["method"] != metrics.DENSE_METHOD).to_numpy() & flag.isna().to_numpy()
    if orphan.any():
        models = frame.loc[orphan, ["dataset", "arch", "model"]].drop_duplicates()
        notices.append(f"{int(orphan.sum())} pruned rows of {len(models)} model(s) have no "
                       "evaluated dense parent and are left out of every figure: evaluate the "
                       "dense models (method 'dense', ratio 1.0) to include them.")
    return frame.loc[~orphan]


def model_alphas(frame: pd.DataFrame, metric: str = "recall") -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per-class pairs with the dense parent and per-model slopes of a tidy count frame (every
    distribution in it; extra columns such as ``achieved_ratio``, ``seed``, ``level`` ride along
    as keys of each evaluation).

    Returns ``(paired, alphas)``: ``metrics.pair_with_dense(metrics.per_class(frame, metric))``
    (one row per pruned (evaluation, class)) and its ``metrics.model_alpha`` (one row per pruned
    evaluation). ``metrics.ImbalanceWarning`` is raised as a warning for the caller to handle.
    The one alpha computation of the report and of ``prunescope.audit``.
    """
    paired = metrics.pair_with_dense(metrics.per_class(frame, metric))
    return paired, metrics.model_alpha(paired)


def _collapsed_cells(pooled: pd.DataFrame, nom: pd.DataFrame) -> list[str]:
    """Names ``dataset/arch/method@ratio`` of cells whose mean accuracy after pruning
    (``A_bar``, a fraction) is below :data:`COLLAPSE_FACTOR` / number of classes."""
    classes = nom.groupby(["dataset", "arch"])["cls"].nunique().rename("n_classes").reset_index()
    cells = pooled.merge(classes, on=["dataset", "arch"])
    low = cells[cells["A_bar"] < COLLAPSE_FACTOR / cells["n_classes"]]
    return [f"{r.dataset}/{r.arch}/{r.method}@{r.ratio:g}x" for r in low.itertuples()]


@dataclass
class Analysis:
    """Everything the report draws about the nominal test set, from :func:`analyse`.

    Attributes:
        paired: ``metrics.pair_with_dense`` rows (one per pruned class), nominal distribution.
        alphas: ``metrics.model_alpha`` (one row per pruned model evaluation).
        pooled: ``metrics.pooled_alpha`` per cell.
        ci: ``stats.mean_ci`` of alpha per cell (only cells with >= 2 models), or None.
        cell_keys: the keys of one cell (dataset, arch, method, ratio, distribution[, level]).
        dense_acc: ``dataset, arch, model, accuracy`` of every dense model (fraction).
        notices: what the page must say about these results (unbalanced, collapsed, single
            seed ...).
        ci_method: how ``ci`` was computed, ``"t"`` or ``"bootstrap"`` (``stats.mean_ci``).
        table11: ``metrics.correct_share_variance`` of every nominal evaluation (dense ones
            included): the paper's Table 11 statistic as its code computes it (SPEC 8).
    """

    paired: pd.DataFrame
    alphas: pd.DataFrame
    pooled: pd.DataFrame
    ci: pd.DataFrame | None
    cell_keys: list[str]
    dense_acc: pd.DataFrame
    notices: list[str] = field(default_factory=list)
    ci_method: str = "t"
    table11: pd.DataFrame | None = None


def _imbalance_notice(nominal_frame: pd.DataFrame) -> str:
    """The banner line of a test set whose classes differ in size, in a reader's terms."""
    support = nominal_frame.groupby(["distribution", "cls"], sort=False)["support"].first()
    return (f"Unbalanced test set: its classes hold between {int(support.min()):,} and "
            f"{int(support.max()):,} images, so the per-class recall gaps to the accuracy "
            "(R^c − A) do not add up to zero exactly, as they would with equal class sizes "
            "(docs/metrics.md). α is still the least-squares slope through the origin of "
            "these gaps after pruning against before, as in the paper; the figures and tables "
            "are unaffected otherwise.")


def analyse(frame: pd.DataFrame, nominal: str = metrics.NOMINAL, ci_method: str = "t") -> Analysis:
    """Pair, fit and bound the nominal-distribution results of ``frame`` (see :class:`Analysis`);
    ``ci_method`` (``"t"`` or ``"bootstrap"``) gives the intervals of E[alpha]."""
    check_choice("ci_method", ci_method, stats.CI_METHODS)
    notices: list[str] = []
    nom = drop_orphans(frame[frame["distribution"] == nominal], notices)
    if nom.empty:
        raise ValueError(f"no results on the nominal distribution {nominal!r} (found "
                         f"{sorted(frame['distribution'].unique())}); pass nominal=... naming the "
                         "unshifted test set")
    if (nom["method"] == metrics.DENSE_METHOD).all():
        raise ValueError("the results hold only dense models: no pruned model is evaluated yet, "
                         "so there is nothing to compare; render again when pruning jobs finish")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", metrics.ImbalanceWarning)
        paired, alphas = model_alphas(nom)
    for w in caught:
        if issubclass(w.category, metrics.ImbalanceWarning):
            notices.append(_imbalance_notice(nom))
        else:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    cell_keys = list(metrics.CELL_KEYS) + (["level"] if "level" in frame.columns else [])
    pooled = metrics.pooled_alpha(paired, by=cell_keys)
    dense_rows = nom[nom["method"] == metrics.DENSE_METHOD]
    dense_acc = (dense_rows.groupby(["dataset", "arch", "model"], sort=False)[["correct", "support"]]
                 .sum().reset_index())
    dense_acc["accuracy"] = dense_acc["correct"] / dense_acc["support"]
    collapsed = _collapsed_cells(pooled, nom)
    if len(collapsed):
        notices.append(
            f"{len(collapsed)} cell(s) have a mean accuracy after pruning below "
            f"{COLLAPSE_FACTOR:g}x chance ({', '.join(collapsed)}): those models have collapsed "
            "(most inputs get one class), so their α measures the collapse, not a distortion of "
            "a working classifier (α axes turn symmetric-log when |α| > 5).")
    ci = cell_ci(alphas, "alpha", cell_keys, null=1.0, method=ci_method)
    if ci["n"].max() < 2:
        notices.append("Every cell has a single model (one seed): confidence intervals, the "
                       "< / > / ? labels and the t-tests need at least two independent models "
                       "per cell, so they are not shown. Add seeds to the study to get them.")
        ci = None
    else:
        single = ci[ci["n"] < 2]
        if len(single):
            notices.append(f"{len(single)} cell(s) have fewer than two models: they have no "
                           "confidence interval (marked ? with a reason in the CI table).")
    notices.extend(unmatched_ratios(alphas))
    return Analysis(paired, alphas, pooled, ci, cell_keys,
                    dense_acc[["dataset", "arch", "model", "accuracy"]], notices, ci_method,
                    metrics.correct_share_variance(nom))


#: the relative difference in mean achieved ratio above which two methods compared at one
#: stated ratio are reported as not matched (issue 25)
MATCH_TOLERANCE = 0.02


def unmatched_ratios(alphas: pd.DataFrame, tolerance: float = MATCH_TOLERANCE) -> list[str]:
    """One notice per (dataset, arch, stated ratio) whose methods' mean achieved ratios differ
    by more than ``tolerance`` (relative to the smaller): their method comparison at that ratio
    mixes the criterion with the compression. Empty without an ``achieved_ratio`` column."""
    if "achieved_ratio" not in alphas or alphas["achieved_ratio"].isna().all():
        return []
    keys = ["dataset", "arch", "ratio"]
    cells = (alphas[alphas["level"].isna()] if "level" in alphas else alphas).groupby(
        [*keys, "method"], sort=False)["achieved_ratio"].mean().reset_index()
    out = []
    for (dataset, arch, ratio), rows in cells.groupby(keys, sort=False):
        low, high = rows["achieved_ratio"].min(), rows["achieved_ratio"].max()
        if len(rows) > 1 and high > low * (1 + tolerance):
            shown = ", ".join(f"{m} {a:.3g}" for m, a in rows[["method", "achieved_ratio"]]
                              .itertuples(index=False))
            out.append(f"At stated ratio {ratio:g} on {dataset} / {arch} the methods reach "
                       f"different compressions ({shown}; more than {100 * tolerance:g} % apart): "
                       "their comparison there mixes the criterion with the compression. Compare "
                       "at matched achieved ratios (a method that keeps another's count, e.g. "
                       "mp-at-up; docs/pruning.md).")
    return out


def mean_i(an: Analysis) -> pd.DataFrame:
    """Per cell of ``an``: mean and sd over models of the per-model mean of I
    (``model_alpha``'s ``mean_I``, SPEC 5 option; non-finite values left out as in
    ``stats.mean_ci``, sd with ddof = 1) and the number of (model, class) points with
    undefined I."""
    values = an.alphas["mean_I"].astype(np.float64)
    cells = (an.alphas.assign(mean_I=values.where(np.isfinite(values)))
             .groupby(an.cell_keys, sort=True, dropna=False))
    return cells.agg(mean_I=("mean_I", "mean"), sd_mean_I=("mean_I", "std"),
                     n_undefined_I=("n_undefined_I", "sum")).reset_index()


def pvalue_families(an: Analysis, correction: str = "bonferroni",
                  families: str = "column") -> dict[str, stats.FamilyResult]:
    """The SPEC 5 test families of ``an``'s per-model alphas (``stats.all_families`` with the
    catalog's names and orders, :func:`~prunescope.analysis.orders.family_orders`), or an
    empty dict when ``an`` has no intervals (every cell a single model)."""
    if an.ci is None:
        return {}
    return stats.all_families(an.alphas, family_orders(), correction=correction,
                              families=families)


def coverage(frame: pd.DataFrame) -> pd.DataFrame:
    """Pruned models evaluated per (dataset, arch, method, ratio) on the results ``frame``
    (column ``models``) beside the dense models of its dataset and architecture (``dense
    models``), in the stats tables' order."""
    models = (frame.groupby(["dataset", "arch", "method", "ratio"], sort=False)["model"].nunique()
              .rename("models").reset_index())
    dense = models[models["method"] == metrics.DENSE_METHOD][["dataset", "arch", "models"]]
    cov = models[models["method"] != metrics.DENSE_METHOD].merge(
        dense.rename(columns={"models": "dense models"}), on=["dataset", "arch"], how="left")
    cov["dense models"] = cov["dense models"].fillna(0).astype(int)
    return cov


__all__ = [
    "AGREEMENT_KEYS", "CI_LEVEL", "COLLAPSE_FACTOR", "DONE_STATUSES", "POTENTIAL_KEYS", "VALUE_COLUMNS",
    "Analysis", "Shift", "agreement_ci", "alpha_by_distribution", "analyse",
    "analyse_shift", "cell_ci", "check_choice", "check_frame", "coverage", "distributions",
    "drop_orphans", "mean_i", "model_alphas", "potential_summary", "pvalue_families",
]


