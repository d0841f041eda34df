"""Beyond test accuracy (SPEC 2, Lost in Pruning): error curves, prune potential, excess error and
functional agreement.

Units: every error is a fraction in [0, 1] (0.005 = 0.5 percentage points); ratios are
compression ratios t = all params / nonzero params (1.0 = dense).
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from prunescope.metrics._groups import group_codes, gsum
from prunescope.metrics.tidy import DENSE_METHOD, NOMINAL, check_and_group, validate_counts

#: Keys that identify the dense parent of a pruned evaluation (no ``cls``: errors are per model).
ERROR_PARENT_KEYS: tuple[str, ...] = ("dataset", "arch", "model", "distribution")
#: Default tolerance delta of the prune potential: 0.5 percentage points, as a fraction.
DEFAULT_DELTA = 0.005
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


#: Columns that place a point along an error-vs-ratio curve (the requested ratio, the ratio
#: actually reached, the level of iterative pruning): never part of a curve's identity.
CURVE_POSITION_COLUMNS = ("ratio", "achieved_ratio", "level")


def prune_potential(errors: pd.DataFrame, delta: float = DEFAULT_DELTA,
                    parent_keys: Sequence[str] = ERROR_PARENT_KEYS) -> pd.DataFrame:
    """Prune potential per (model, method, distribution): the largest tested ratio t with
    error_pruned(t) <= error_dense + delta (SPEC 2, Liebenwein et al. 2021).

    Parameters
    ----------
    errors:
        Output of :func:`error_frame` (dense rows: method "dense", ratio 1.0).
    delta:
        Tolerance as a *fraction* (default 0.005 = 0.5 percentage points); must be >= 0.
    parent_keys:
        Keys matching a pruned evaluation to its dense one (default dataset, arch, model,
        distribution).

    Returns
    -------
    One row per curve (all keys of ``errors`` except :data:`CURVE_POSITION_COLUMNS`) with ``dense_error``, ``delta``,
    ``n_ratios`` (ratios tested), ``n_within`` (ratios within tolerance), ``potential`` and
    ``status``:

    * ``"some"`` -- some ratios qualify: ``potential`` is the largest of them (not necessarily
      the end of a run of qualifying ratios: the definition takes the largest one);
    * ``"none"`` -- no ratio qualifies: ``potential`` = 1.0 (only the dense model is within delta);
    * ``"all"``  -- every tested ratio qualifies: ``potential`` = the largest tested ratio, a
      lower bound (larger ratios were not tested).
    """
    if not delta >= 0:
        raise ValueError(f"delta must be a fraction >= 0 (0.005 = 0.5 points), got {delta}")
    pruned, _ = _split_dense(errors, parent_keys)
    curve_keys = [c for c in errors.columns
                  if c not in (*CURVE_POSITION_COLUMNS, "error", "n_samples")]
    codes, out = group_codes(pruned, curve_keys)
    g = len(out)
    within = (pruned["error"] <= pruned["dense_error"] + delta + _TOL).to_numpy()
    ratio = pruned["ratio"].to_numpy(np.float64)
    best = np.full(g, -np.inf)
    np.maximum.at(best, codes, np.where(within, ratio, -np.inf))
    n_within = np.bincount(codes, weights=within, minlength=g).astype(np.int64)
    n_ratios = np.bincount(codes, minlength=g)
    out["dense_error"] = pruned.groupby(codes, sort=True)["dense_error"].first().to_numpy()
    out["delta"] = float(delta)
    out["n_ratios"] = n_ratios
    out["n_within"] = n_within
    out["potential"] = np.where(n_within > 0, best, 1.0)
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
