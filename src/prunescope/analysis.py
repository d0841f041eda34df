"""prunescope.analysis: a study's tidy results -> every frame the report shows (DESIGN's flow:
store -> analysis -> report).

Pure functions over pandas frames built from :mod:`prunescope.metrics` and
:mod:`prunescope.stats` (never imports torch or matplotlib): per-model and pooled alphas and
their intervals, the SPEC 5 test families, prune potential as Lost in Pruning reports it,
excess error, alpha per test distribution, functional agreement, study coverage, and the views
of underrepresented classes (long-tail slopes, balanced-vs-imbalanced tests, PIE shares). The report
(:mod:`prunescope.report`) only lays these frames out and draws them; :mod:`prunescope.audit`
takes its per-model alphas from :func:`model_alphas`. See docs/architecture.md.

Units: accuracies, errors and agreement are fractions in [0, 1]; ``removed_pct`` is a percentage;
ratios are compression ratios t = all params / nonzero params; ``delta`` is in percentage points.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import stats as sps

from prunescope import metrics, stats
from prunescope.metrics.underrepresented import Exemplars, count_slopes, slope_points

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
    """

    paired: pd.DataFrame
    alphas: pd.DataFrame
    pooled: pd.DataFrame
    ci: pd.DataFrame | None
    cell_keys: list[str]
    dense_acc: pd.DataFrame
    notices: list[str] = field(default_factory=list)
    ci_method: str = "t"


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
    return Analysis(paired, alphas, pooled, ci, cell_keys,
                    dense_acc[["dataset", "arch", "model", "accuracy"]], notices, ci_method)


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
    """The SPEC 5 test families of ``an``'s per-model alphas (``stats.all_families``), or an
    empty dict when ``an`` has no intervals (every cell a single model)."""
    if an.ci is None:
        return {}
    return stats.all_families(an.alphas, correction=correction, families=families)


def potential_summary(potential: pd.DataFrame) -> pd.DataFrame:
    """Prune potential per (dataset, arch, method, distribution) as Lost in Pruning reports it.

    Args:
        potential: ``metrics.prune_potential`` output (``removed_pct``, ``potential``: one row
            per model's curve).

    Returns:
        ``stats.mean_ci`` of ``removed_pct`` (percent of parameters removed, 99 % t-interval;
        ``mean``, ``ci_low``, ``ci_high``, ...) with ``t`` = 1 / (1 - mean / 100) (the ratio
        removing the mean fraction: the harmonic mean of the models' potentials), ``t_ci_low``
        and ``t_ci_high`` (the interval mapped the same way, monotone) and ``mean_t`` (the plain
        mean of the potentials, for comparison).
    """
    keys = list(POTENTIAL_KEYS)
    out = cell_ci(potential, "removed_pct", keys, null=0.0)

    def to_t(pct: object) -> np.ndarray:
        return 1.0 / (1.0 - np.asarray(pct, np.float64) / 100.0)

    with np.errstate(divide="ignore"):
        out["t"] = to_t(out["mean"])
        out["t_ci_low"] = to_t(np.maximum(out["ci_low"], 0.0))
        out["t_ci_high"] = to_t(np.minimum(out["ci_high"], 100.0))
    mean_t = potential.groupby(keys, sort=True, dropna=False)["potential"].mean().rename("mean_t")
    return out.merge(mean_t.reset_index(), on=keys, how="left")


def alpha_by_distribution(frame: pd.DataFrame, an: Analysis,
                          nominal: str = metrics.NOMINAL) -> pd.DataFrame:
    """``stats.mean_ci`` of alpha per (dataset, arch, method, ratio, distribution), every
    distribution's Bn before and after measured on it, intervals by ``an.ci_method``.

    ``frame``: the tidy results of every distribution (orphans and the pruning ``level`` and
    :data:`VALUE_COLUMNS` dropped). The nominal rows are ``an.ci``'s, so only the shifted
    distributions are computed here (a bootstrap interval is 9,999 resamples per cell); all are
    computed when ``an.ci`` is None (single-model cells) or a pruning ``level`` splits a cell.
    """
    keys = ["dataset", "arch", "method", "ratio"]
    nominal_ci = an.ci
    if nominal_ci is not None and "level" in an.cell_keys:
        # the pruning level (a function of the ratio) took the place of the CI level column
        nominal_ci = nominal_ci.drop(columns="level").assign(level=CI_LEVEL)
    if nominal_ci is not None and nominal_ci.duplicated([*keys, "distribution"]).any():
        nominal_ci = None
    if nominal_ci is not None:
        frame = frame[frame["distribution"] != nominal]
    with warnings.catch_warnings():
        # the shifted sets are corruptions of the nominal test set: same class supports, and an
        # unbalanced nominal set is already stated on the page by analyse()
        warnings.simplefilter("ignore", metrics.ImbalanceWarning)
        _, alphas = model_alphas(frame)
    ci = cell_ci(alphas, "alpha", [*keys, "distribution"], null=1.0, method=an.ci_method)
    if nominal_ci is not None:
        ci = (pd.concat([ci, nominal_ci[ci.columns]], ignore_index=True)
              .sort_values([*keys, "distribution"], kind="stable", ignore_index=True))
    return ci


@dataclass
class Shift:
    """The Lost-in-Pruning views of a study with shifted test distributions, from
    :func:`analyse_shift`.

    Attributes:
        distributions: the nominal distribution first, then the shifted ones sorted.
        delta: the prune-potential tolerance (percentage points).
        errors: ``metrics.error_frame`` per evaluation (requested ratios; dense rows included).
        potential: ``metrics.prune_potential`` per model's curve (achieved ratios).
        potential_summary: :func:`potential_summary` of ``potential``.
        excess: ``stats.mean_ci`` of ``metrics.excess_error`` per (dataset, arch, method, ratio,
            distribution), fractions (empty without pruned rows on shifted distributions).
        alpha: :func:`alpha_by_distribution`.
        notices: what the page must say (orphans left out).
    """

    distributions: list[str]
    delta: float
    errors: pd.DataFrame
    potential: pd.DataFrame
    potential_summary: pd.DataFrame
    excess: pd.DataFrame
    alpha: pd.DataFrame
    notices: list[str] = field(default_factory=list)


def distributions(frame: pd.DataFrame, nominal: str = metrics.NOMINAL) -> list[str]:
    """The test distributions of ``frame``: ``nominal`` first, then the others sorted."""
    return [nominal, *sorted(d for d in frame["distribution"].unique() if d != nominal)]


def analyse_shift(frame: pd.DataFrame, an: Analysis, nominal: str = metrics.NOMINAL,
                  delta: float = metrics.DEFAULT_DELTA) -> Shift | None:
    """Prune potential (at the achieved ratio), errors, excess error and alpha per test
    distribution of the tidy results ``frame``; ``an`` is its nominal :func:`analyse`, whose
    interval method and alpha intervals are reused. None when ``frame`` has only ``nominal``."""
    dists = distributions(frame, nominal)
    if len(dists) == 1:
        return None
    notices: list[str] = []
    # a pruning level is a function of the ratio: as a key it would cut error curves into points
    frame = drop_orphans(frame, notices).drop(columns=[c for c in ("level",) if c in frame])
    errors = metrics.error_frame(frame)
    # the prune potential is read at the achieved ratio; the other views at the requested one
    potential = metrics.prune_potential(errors, delta=delta)
    frame = frame.drop(columns=[c for c in VALUE_COLUMNS if c in frame])
    errors = errors.drop(columns=[c for c in VALUE_COLUMNS if c in errors])
    excess = metrics.excess_error(errors, nominal=nominal)
    ex_ci = (cell_ci(excess, "excess_error", ["dataset", "arch", "method", "ratio", "distribution"],
                     null=0.0) if not excess.empty else pd.DataFrame())
    return Shift(dists, metrics.check_delta(delta), errors, potential,
                 potential_summary(potential), ex_ci, alpha_by_distribution(frame, an, nominal),
                 notices)


def agreement_ci(agreement: pd.DataFrame, results_frame: pd.DataFrame) -> pd.DataFrame | None:
    """Mean functional agreement (fraction) per (dataset, arch, method, ratio, distribution)
    over models with a 99 % interval inside [0, 1] (``stats.proportion_mean_ci``: t-interval
    of the mean empirical logit, each model's test-set size from the dense evaluation's
    support in ``results_frame``), or None when no row has a value (no predictions were kept).

    Raises ``TypeError``/``ValueError`` for a frame that is not one, lacks
    :data:`AGREEMENT_KEYS`, holds a value outside [0, 1] or a row without a dense evaluation
    in ``results_frame``."""
    if not isinstance(agreement, pd.DataFrame):
        raise TypeError(f"agreement must be a pandas DataFrame, got {type(agreement).__name__}")
    missing = [c for c in AGREEMENT_KEYS if c not in agreement.columns]
    if missing:
        raise ValueError(f"agreement frame lacks column(s) {missing}; expected "
                         f"{list(AGREEMENT_KEYS)} (prunescope.study.StudyResults.agreement)")
    frame = agreement.dropna(subset=["agreement"])
    if frame.empty:
        return None
    bad = ~frame["agreement"].between(0.0, 1.0)
    if bad.any():
        raise ValueError(f"agreement must be a fraction in [0, 1]; got "
                         f"{frame.loc[bad, 'agreement'].tolist()[:5]}")
    size_keys = ["dataset", "arch", "model", "distribution"]
    sizes = (results_frame[results_frame["method"] == metrics.DENSE_METHOD]
             .groupby(size_keys, sort=False)["support"].sum().rename("_n").reset_index())
    frame = frame.merge(sizes, on=size_keys, how="left")
    if frame["_n"].isna().any():
        raise ValueError("agreement rows without an evaluated dense model in the results frame: "
                         f"{frame.loc[frame['_n'].isna(), size_keys].drop_duplicates().values.tolist()[:3]}")
    # a pruning level is a function of the ratio: it is not a separate key here
    return stats.proportion_mean_ci(frame, "agreement",
                                    ["dataset", "arch", "method", "ratio", "distribution"],
                                    frame["_n"], level=CI_LEVEL, null=1.0)


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


# ---- underrepresented classes: long-tailed splits and PIEs (docs/underrepresented.md) -------
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
