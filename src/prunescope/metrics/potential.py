"""Beyond test accuracy (SPEC 2, Lost in Pruning): error curves, prune potential, excess error and
functional agreement.

Units: every error is a fraction in [0, 1]; the prune-potential tolerance ``delta`` is in
percentage points of error (0.5 = half a point, Lost in Pruning's default); ratios are
compression ratios t = all params / nonzero params (1.0 = dense); a removed fraction
1 - 1/t is in percent.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from prunescope.metrics._groups import group_codes, gsum
from prunescope.metrics.tidy import DENSE_METHOD, NOMINAL, check_and_group, validate_counts

#: Keys that identify the dense parent of a pruned evaluation (no ``cls``: errors are per model).
ERROR_PARENT_KEYS: tuple[str, ...] = ("dataset", "arch", "model", "distribution")
#: Default tolerance delta of the prune potential, in percentage points of error (Lost in Pruning).
DEFAULT_DELTA = 0.5
#: Smallest nonzero ``delta`` accepted (percentage points): a smaller one is almost surely a
#: fraction passed by mistake (0.005 for half a point) and is far below the sampling noise of a
#: test set's error (about 0.3 points at 10 % error on 10,000 images). 0 is allowed.
MIN_DELTA = 0.1
#: Slack added to ``dense_error + delta`` so that float rounding of count fractions never flips
#: a comparison that is exact in rational arithmetic (e.g. 0.1 + 0.005 vs 0.105).
_TOL = 1e-12


def error_frame(tidy: pd.DataFrame) -> pd.DataFrame:
    """Top-1 error per evaluation from a tidy count frame.

    Returns one row per (dataset, arch, method, ratio, model, distribution, extra keys) with
    ``n_samples`` (int, sum of supports) and ``error`` = 1 - sum correct / sum support (fraction).
    """
    validate_counts(tidy)
    codes, out = check_and_group(tidy)
    keys = list(out.columns)
    g = len(out)
    n = gsum(codes, tidy["support"].to_numpy(), g)
    with np.errstate(divide="ignore", invalid="ignore"):
        out["error"] = 1.0 - gsum(codes, tidy["correct"].to_numpy(), g) / n
    out.insert(len(keys), "n_samples", n.astype(np.int64))
    return out


def _split_dense(errors: pd.DataFrame, parent_keys: Sequence[str]) -> tuple[pd.DataFrame, pd.DataFrame]:
    missing = [c for c in (*parent_keys, "method", "ratio", "error") if c not in errors.columns]
    if missing:
        raise ValueError(f"error frame lacks column(s) {missing}; build it with error_frame(tidy)")
    is_dense = (errors["method"] == DENSE_METHOD).to_numpy()
    dense = errors.loc[is_dense, [*parent_keys, "error"]].rename(columns={"error": "dense_error"})
    if dense.duplicated(subset=list(parent_keys)).any():
        row = dense.loc[dense.duplicated(subset=list(parent_keys)), list(parent_keys)].iloc[0].to_dict()
        raise ValueError(f"more than one dense evaluation for {row}; add the distinguishing key to parent_keys")
    pruned = errors.loc[~is_dense].merge(dense, on=list(parent_keys), how="left",
                                         validate="many_to_one", indicator=True)
    orphan = (pruned.pop("_merge") != "both").to_numpy()
    if orphan.any():
        row = pruned.loc[orphan, list(parent_keys)].iloc[0].to_dict()
        raise ValueError(f"{int(orphan.sum())} pruned evaluations have no dense parent, e.g. {row}: "
                         "evaluate the dense model (method='dense', ratio=1.0) on that distribution")
    return pruned, dense


def check_delta(delta: float) -> float:
    """``delta`` as a float if it is a valid prune-potential tolerance in percentage points:
    0 (no tolerance) or in [:data:`MIN_DELTA`, 100]. Raises ``ValueError`` saying why otherwise
    (negative, not a number, above 100 points, or below :data:`MIN_DELTA`, which looks like a
    fraction: delta=0.005 meant as half a point is delta=0.5)."""
    try:
        d = float(delta)
    except (TypeError, ValueError):
        raise ValueError(f"delta must be a number of percentage points (0.5 = half a point), "
                         f"got {delta!r}") from None
    if not np.isfinite(d) or d < 0:
        raise ValueError(f"delta must be >= 0 percentage points (0.5 = half a point), got {delta}")
    if d > 100:
        raise ValueError(f"delta = {d:g} is above 100 percentage points, the largest possible "
                         "error difference; delta is in points (0.5 = half a point)")
    if 0 < d < MIN_DELTA:
        raise ValueError(f"delta = {d:g} percentage points looks like a fraction: delta is in "
                         f"points, so half a point is delta=0.5 (was delta={d:g} meant as "
                         f"{100 * d:g} points? pass delta={100 * d:g}); tolerances between 0 "
                         f"and {MIN_DELTA:g} points are refused, 0 means no tolerance")
    return d


#: Columns that place a point along an error-vs-ratio curve (the requested ratio, the ratio
#: actually reached, the level of iterative pruning): never part of a curve's identity.
CURVE_POSITION_COLUMNS = ("ratio", "achieved_ratio", "level")


def prune_potential(errors: pd.DataFrame, delta: float = DEFAULT_DELTA,
                    parent_keys: Sequence[str] = ERROR_PARENT_KEYS) -> pd.DataFrame:
    """Prune potential per (model, method, distribution): the largest tested ratio t with
    error_pruned(t) <= error_dense + delta (SPEC 2, Liebenwein et al. 2021), as the ratio the
    pruned model achieved and as the fraction of parameters removed, 1 - 1/t.

    Parameters
    ----------
    errors:
        Output of :func:`error_frame` (dense rows: method "dense", ratio 1.0), with an
        ``achieved_ratio`` column when the results have one (``prunescope.study``'s frame does).
    delta:
        Tolerance in *percentage points* of error (default 0.5 = half a point): 0 or in
        [:data:`MIN_DELTA`, 100], checked by :func:`check_delta` (0.005, a fraction, is refused).
    parent_keys:
        Keys matching a pruned evaluation to its dense one (default dataset, arch, model,
        distribution).

    Returns
    -------
    One row per curve (all keys of ``errors`` except :data:`CURVE_POSITION_COLUMNS`) with
    ``dense_error``, ``delta`` (points), ``n_ratios`` (ratios tested), ``n_within`` (ratios
    within tolerance), ``potential`` (t: the achieved ratio of the evaluation chosen, the
    requested one where ``errors`` has no finite ``achieved_ratio``), ``potential_requested``
    (its requested ratio), ``removed_pct`` = 100 (1 - 1/potential) and ``status``:

    * ``"some"`` -- some ratios qualify: the largest of them (not necessarily the end of a run
      of qualifying ratios: the definition takes the largest one);
    * ``"none"`` -- no ratio qualifies: ``potential`` = 1.0, ``removed_pct`` = 0 (only the
      dense model is within delta);
    * ``"all"``  -- every tested ratio qualifies: the largest tested ratio, a lower bound
      (larger ratios were not tested).

    Average ``removed_pct`` over models, not ``potential``: a mean of t is dominated by large
    values and can reverse a comparison (potentials {2, 50} have mean t 26 > 20 of {20, 20},
    but remove 74 % < 95 % of the parameters).
    """
    delta = check_delta(delta)
    pruned, _ = _split_dense(errors, parent_keys)
    curve_keys = [c for c in errors.columns
                  if c not in (*CURVE_POSITION_COLUMNS, "error", "n_samples")]
    codes, out = group_codes(pruned, curve_keys)
    g = len(out)
    within = (pruned["error"] <= pruned["dense_error"] + delta / 100.0 + _TOL).to_numpy()
    requested = pruned["ratio"].to_numpy(np.float64)
    achieved = (pruned["achieved_ratio"].to_numpy(np.float64) if "achieved_ratio" in pruned
                else np.full(len(pruned), np.nan))
    ratio = np.where(np.isfinite(achieved), achieved, requested)
    # the qualifying evaluation with the largest ratio per curve: last after sorting by
    # (curve, qualifies, ratio)
    order = np.lexsort((ratio, within, codes))
    last = order[np.r_[codes[order][1:] != codes[order][:-1], True]] if len(order) else order
    n_within = np.bincount(codes, weights=within, minlength=g).astype(np.int64)
    n_ratios = np.bincount(codes, minlength=g)
    out["dense_error"] = pruned.groupby(codes, sort=True)["dense_error"].first().to_numpy()
    out["delta"] = delta
    out["n_ratios"] = n_ratios
    out["n_within"] = n_within
    found = n_within > 0
    out["potential"] = np.where(found, ratio[last], 1.0)
    out["potential_requested"] = np.where(found, requested[last], 1.0)
    out["removed_pct"] = 100.0 * (1.0 - 1.0 / out["potential"].to_numpy(np.float64))
    out["status"] = np.where(n_within == 0, "none", np.where(n_within == n_ratios, "all", "some"))
    return out


def excess_error(errors: pd.DataFrame, nominal: str = NOMINAL,
                 parent_keys: Sequence[str] = ERROR_PARENT_KEYS) -> pd.DataFrame:
    """Excess error per pruned evaluation on a shifted distribution (SPEC 2):
    (pruned - dense error on the shifted distribution) - (pruned - dense error on ``nominal``).

    Returns one row per pruned evaluation whose distribution is not ``nominal`` (all keys of
    ``errors``) with ``error``, ``dense_error`` (shifted), ``error_nominal``,
    ``dense_error_nominal`` and ``excess_error`` (fractions; positive = pruning hurts more under
    shift than on the nominal test set). Rows without a nominal counterpart get NaN.
    """
    pruned, _ = _split_dense(errors, parent_keys)
    keys = [c for c in errors.columns if c not in ("error", "n_samples")]
    match = [c for c in keys if c != "distribution"]
    nom = pruned.loc[pruned["distribution"] == nominal, [*match, "error", "dense_error"]]
    nom = nom.rename(columns={"error": "error_nominal", "dense_error": "dense_error_nominal"})
    shifted = pruned.loc[pruned["distribution"] != nominal, [*keys, "error", "dense_error"]]
    out = shifted.merge(nom, on=match, how="left", validate="many_to_one")
    out["excess_error"] = (out["error"] - out["dense_error"]) - (out["error_nominal"] - out["dense_error_nominal"])
    return out.reset_index(drop=True)


def functional_agreement(pred_pruned: np.ndarray, pred_dense: np.ndarray) -> np.ndarray | float:
    """Fraction of inputs on which pruned and dense predictions agree (SPEC 2).

    ``pred_pruned`` and ``pred_dense`` are integer class predictions of equal shape ``(..., N)``
    for the same N inputs of one distribution; returns the agreement fraction in [0, 1], a float
    for 1-D input or an array of shape ``(...)`` (e.g. one value per model of a pack).
    """
    a = np.asarray(pred_pruned)
    b = np.asarray(pred_dense)
    if a.shape != b.shape or a.ndim == 0 or a.shape[-1] == 0:
        raise ValueError(f"predictions must have equal non-empty shapes (..., N), got {a.shape} and {b.shape}")
    agree = (a == b).mean(axis=-1)
    return float(agree) if agree.ndim == 0 else agree
