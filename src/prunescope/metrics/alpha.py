"""Per-model slope alpha_t(m) and pooled slope alpha_hat per cell (SPEC 2).

x = Bn before pruning, y = Bn after pruning, one point per class. Points where x or y is NaN
(e.g. precision of a class never predicted) are left out of every sum and counted in
``n_points`` / ``n_classes``.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from prunescope.metrics._groups import group_codes, gsum
from prunescope.metrics.classwise import PAIRED_COLUMNS
from prunescope.metrics.eag import EAG_COLUMNS, class_eag, eag_summary

#: Keys of one cell of the study (SPEC 5); extra keys such as ``level`` are added by the caller.
CELL_KEYS: tuple[str, ...] = ("dataset", "arch", "method", "ratio", "distribution")

#: Columns of :func:`model_alpha` besides the model's keys (``intercept=True`` adds two more).
MODEL_ALPHA_COLUMNS: tuple[str, ...] = (
    "metric", "n_classes", "n_points", "alpha", "mean_I", "n_undefined_I",
    "accuracy_before", "accuracy_after", "var_before", "var_after", "balanced",
    *EAG_COLUMNS,
)
#: Columns of :func:`pooled_alpha` besides the cell keys.
POOLED_COLUMNS: tuple[str, ...] = (
    "metric", "n_models", "n_points", "alpha_hat", "r2", "A_bar", "A_bar_before",
    "n_undefined_I", "balanced",
)


def _model_keys(paired: pd.DataFrame) -> list[str]:
    return [c for c in paired.columns if c not in PAIRED_COLUMNS and c != "cls"]


def _slope_sums(codes: np.ndarray, g: int, x: np.ndarray, y: np.ndarray) -> dict[str, np.ndarray]:
    ok = np.isfinite(x) & np.isfinite(y)
    xs = np.where(ok, x, 0.0)
    ys = np.where(ok, y, 0.0)
    return {
        "n": gsum(codes, ok, g), "sx": gsum(codes, xs, g), "sy": gsum(codes, ys, g),
        "sxx": gsum(codes, xs * xs, g), "sxy": gsum(codes, xs * ys, g), "syy": gsum(codes, ys * ys, g),
    }


def _with_intercept(s: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Ordinary least squares y = a + b x per group from the sums: returns (b, a)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        mx = s["sx"] / s["n"]
        my = s["sy"] / s["n"]
        sxx_c = s["sxx"] - s["n"] * mx * mx
        sxy_c = s["sxy"] - s["n"] * mx * my
        slope = np.where(sxx_c > 0, sxy_c / sxx_c, np.nan)
    return slope, my - slope * mx


def _model_level(paired: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
    """:func:`model_alpha` without the intercept columns, plus the per-model slope sums."""
    keys = _model_keys(paired)
    codes, out = group_codes(paired, keys)
    g = len(out)
    x = paired["Bn_before"].to_numpy(np.float64)
    y = paired["Bn_after"].to_numpy(np.float64)
    s = _slope_sums(codes, g, x, y)
    i = paired["I"].to_numpy(np.float64)
    i_ok = np.isfinite(i)
    n_rows = np.bincount(codes, minlength=g)
    with np.errstate(divide="ignore", invalid="ignore"):
        alpha = np.where(s["sxx"] > 0, s["sxy"] / s["sxx"], np.nan)
        mean_i = gsum(codes, np.where(i_ok, i, 0.0), g) / gsum(codes, i_ok, g)
    out["metric"] = paired["metric"].iloc[0] if len(paired) else "recall"
    out["n_classes"] = n_rows
    out["n_points"] = s["n"].astype(np.int64)
    out["alpha"] = alpha
    out["mean_I"] = mean_i
    out["n_undefined_I"] = (n_rows - gsum(codes, i_ok, g)).astype(np.int64)
    for when in ("before", "after"):
        v = paired[f"value_{when}"].to_numpy(np.float64)
        acc = paired[f"accuracy_{when}"].to_numpy(np.float64)
        v_ok = np.isfinite(v)
        n_v = gsum(codes, v_ok, g)
        with np.errstate(divide="ignore", invalid="ignore"):
            mean_v = gsum(codes, np.where(v_ok, v, 0.0), g) / n_v
            dev = np.where(v_ok, v - mean_v[codes], 0.0)
            out[f"var_{when}"] = gsum(codes, dev * dev, g) / n_v
            out[f"accuracy_{when}"] = gsum(codes, acc, g) / n_rows
    out["balanced"] = np.bincount(codes, weights=~paired["balanced"].to_numpy(bool), minlength=g) == 0
    for k, v in eag_summary(codes, g, class_eag(paired)).items():
        out[k] = v
    return out[[*keys, *MODEL_ALPHA_COLUMNS]], s


def model_alpha(paired: pd.DataFrame, intercept: bool = False) -> pd.DataFrame:
    """Per-model slope alpha_t(m) = sum_c Bn^c Bn_t^c / sum_c (Bn^c)^2 (SPEC 2).

    Parameters
    ----------
    paired:
        Output of :func:`prunescope.metrics.pair_with_dense` (one row per pruned class).
    intercept:
        Also fit y = a + b x per model (for unbalanced test sets, where sum_c Bn = 0 fails):
        adds ``alpha_intercept`` (b) and ``intercept`` (a).

    Returns
    -------
    One row per pruned evaluation (all key columns of ``paired`` except ``cls``, extra keys
    included) with

    * ``alpha`` -- least-squares slope through the origin, equal to the (Bn^c)^2-weighted mean of
      the finite I^c; NaN when all Bn^c are 0;
    * ``mean_I`` -- unweighted mean of the finite I^c (SPEC 5: shown to explain why the slope is
      preferred); ``n_undefined_I`` -- classes with I = NaN (Bn^c = 0 or undefined);
    * ``n_classes`` (rows), ``n_points`` (classes with finite before and after Bn);
    * ``accuracy_before``, ``accuracy_after`` -- fractions;
    * ``var_before``, ``var_after`` -- variance over classes of the metric value (recall by
      default) with ddof = 0 (the classes are the whole population, not a sample);
    * ``balanced`` -- every class support equal before and after;
    * ``max_eag``, ``eag_spread`` -- the largest excess accuracy gap over classes, EAG_c =
      (R^c before - R^c after) - (A before - A after), and max - min of EAG_c
      (:mod:`prunescope.metrics.eag`; fractions).
    """
    out, s = _model_level(paired)
    if intercept:
        out["alpha_intercept"], out["intercept"] = _with_intercept(s)
    return out


def pooled_alpha(paired: pd.DataFrame, by: Sequence[str] = CELL_KEYS, intercept: bool = False) -> pd.DataFrame:
    """Pooled slope alpha_hat per cell over all (model, class) points (SPEC 2, SPEC 6 scatter).

    Parameters
    ----------
    paired:
        Output of :func:`prunescope.metrics.pair_with_dense`.
    by:
        Cell keys (default ``CELL_KEYS``: dataset, arch, method, ratio, distribution; add
        ``level`` etc. for iterative studies).
    intercept:
        Also fit y = a + b x over the cell's points: adds ``alpha_hat_intercept``, ``intercept``.

    Returns
    -------
    One row per cell: the ``by`` columns plus ``metric``, ``n_models``, ``n_points``,
    ``alpha_hat`` = sum x y / sum x^2, ``r2`` -- the *uncentered* coefficient of determination of
    the through-origin fit, 1 - sum (y - alpha_hat x)^2 / sum y^2 = (sum x y)^2 / (sum x^2 sum y^2),
    ``A_bar`` -- mean accuracy after pruning over the cell's models (fraction), ``A_bar_before`` --
    the same before pruning, ``n_undefined_I``, ``balanced``.
    """
    by = list(by)
    missing = [c for c in by if c not in paired.columns]
    if missing:
        raise ValueError(f"paired frame lacks cell key(s) {missing}")
    models, sm = _model_level(paired)
    cell_of_model, out = group_codes(models, by)
    g = len(out)
    s = {k: gsum(cell_of_model, v, g) for k, v in sm.items()}
    with np.errstate(divide="ignore", invalid="ignore"):
        alpha = np.where(s["sxx"] > 0, s["sxy"] / s["sxx"], np.nan)
        r2 = np.where((s["sxx"] > 0) & (s["syy"] > 0), s["sxy"] ** 2 / (s["sxx"] * s["syy"]), np.nan)
    n_models = np.bincount(cell_of_model, minlength=g)
    out["metric"] = models["metric"].iloc[0] if len(models) else "recall"
    out["n_models"] = n_models
    out["n_points"] = s["n"].astype(np.int64)
    out["alpha_hat"] = alpha
    out["r2"] = r2
    out["A_bar"] = gsum(cell_of_model, models["accuracy_after"].to_numpy(), g) / n_models
    out["A_bar_before"] = gsum(cell_of_model, models["accuracy_before"].to_numpy(), g) / n_models
    out["n_undefined_I"] = gsum(cell_of_model, models["n_undefined_I"].to_numpy(), g).astype(np.int64)
    out["balanced"] = gsum(cell_of_model, ~models["balanced"].to_numpy(bool), g) == 0
    out = out[[*by, *POOLED_COLUMNS]]
    if intercept:
        out["alpha_hat_intercept"], out["intercept"] = _with_intercept(s)
    return out
