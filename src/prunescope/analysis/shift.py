"""Distribution shift (SPEC 7) and functional agreement: error curves, prune potential as Lost
in Pruning reports it, excess error, alpha per test distribution, agreement intervals."""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from prunescope import metrics, stats
from prunescope.analysis.cells import (AGREEMENT_KEYS, CI_LEVEL, POTENTIAL_KEYS, VALUE_COLUMNS,
                                       Analysis, cell_ci, drop_orphans, model_alphas)


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
