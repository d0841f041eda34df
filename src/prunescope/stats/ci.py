"""Confidence intervals of E[value] per cell over models (SPEC 5)."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
import pandas as pd
from scipy import stats as sps

from prunescope.choices import CI_METHODS  # the interval methods of mean_ci (method=)

#: Default cell keys (SPEC 5): the sample of one cell is {alpha_t(m)} over models m.
CELL_KEYS: tuple[str, ...] = ("dataset", "arch", "method", "ratio", "distribution")
#: Columns of :func:`mean_ci` besides the cell keys.
CI_COLUMNS: tuple[str, ...] = (
    "n", "n_nan", "mean", "sd", "se", "df", "ci_low", "ci_high", "level", "ci_method", "label", "reason",
)


def t_interval(x: np.ndarray, level: float = 0.99) -> tuple[float, float]:
    """Two-sided t-based CI of E[x] from a 1-D sample: mean -/+ t_{(1+level)/2, n-1} * sd / sqrt(n)
    (sd with ddof = 1). Returns ``(nan, nan)`` for n < 2."""
    x = np.asarray(x, dtype=np.float64)
    if x.size < 2:
        return float("nan"), float("nan")
    half = sps.t.ppf(0.5 + level / 2.0, x.size - 1) * x.std(ddof=1) / np.sqrt(x.size)
    return float(x.mean() - half), float(x.mean() + half)


def ci_label(lo: np.ndarray, hi: np.ndarray, null: float = 1.0) -> np.ndarray:
    """``"<"`` where the CI lies below ``null``, ``">"`` above, ``"?"`` where it contains it or is NaN."""
    lo = np.asarray(lo, dtype=np.float64)
    hi = np.asarray(hi, dtype=np.float64)
    return np.where(hi < null, "<", np.where(lo > null, ">", "?"))


def mean_ci(frame: pd.DataFrame, value: str = "alpha", by: Sequence[str] = CELL_KEYS,
            level: float = 0.99, null: float = 1.0, method: Literal["t", "bootstrap"] = "t",
            n_resamples: int = 9999, seed: int = 0,
            bootstrap_method: Literal["BCa", "percentile", "basic"] = "BCa") -> pd.DataFrame:
    """CI of E[``value``] per cell with a ``<``/``>``/``?`` label against ``null`` (SPEC 5).

    Parameters
    ----------
    frame:
        One row per model, e.g. the output of :func:`prunescope.metrics.model_alpha`
        (``value="alpha"``, ``null=1``) or of :func:`prunescope.metrics.excess_error`
        (``value="excess_error"``, ``null=0``).
    by:
        Cell keys (default dataset, arch, method, ratio, distribution; add ``level`` etc.).
    level:
        Confidence level (default 0.99: 95% family-wise over 5 ratios by Bonferroni).
    method:
        ``"t"`` (default): mean -/+ t quantile * se. ``"bootstrap"``:
        :func:`scipy.stats.bootstrap` of the mean with ``bootstrap_method``, ``n_resamples``,
        and a generator seeded with ``seed`` afresh for every cell (order-independent).

    Returns
    -------
    One row per cell: ``by`` columns, ``n`` (finite values used), ``n_nan`` (NaN values left
    out, e.g. models whose alpha is undefined), ``mean``, ``sd`` (ddof = 1), ``se`` = sd/sqrt(n),
    ``df`` = n - 1, ``ci_low``, ``ci_high``, ``level``, ``ci_method``, ``label`` and ``reason``
    (empty when the CI exists; otherwise why it is NaN, e.g. n = 1). Cells with n < 2 get a NaN
    CI and label ``?``.
    """
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), e.g. 0.99; got {level}")
    if method not in CI_METHODS:
        raise ValueError(f"method must be one of {CI_METHODS}, got {method!r}")
    by = list(by)
    clash = [c for c in by if c in CI_COLUMNS]
    if clash:
        raise ValueError(f"cell key(s) {clash} clash with output columns of mean_ci {list(CI_COLUMNS)}; "
                         "rename them before the call (e.g. a pruning 'level' to 'prune_level')")
    missing = [c for c in (*by, value) if c not in frame.columns]
    if missing:
        raise ValueError(f"frame lacks column(s) {missing}")
    v = frame[value].astype(np.float64)
    finite = np.isfinite(v.to_numpy())
    grouped = v.where(finite).groupby([frame[c] for c in by], sort=True, dropna=False)
    out = grouped.agg(["count", "mean", "std"]).reset_index()
    out.columns = [*by, "n", "mean", "sd"]
    out["n_nan"] = grouped.size().to_numpy() - out["n"].to_numpy()
    n = out["n"].to_numpy(np.float64)
    sd = out["sd"].to_numpy(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        se = np.where(n >= 2, sd / np.sqrt(n), np.nan)
    df = np.where(n >= 2, n - 1.0, np.nan)
    out["sd"] = np.where(n >= 2, sd, np.nan)
    out["se"] = se
    out["df"] = df
    if method == "t":
        half = sps.t.ppf(0.5 + level / 2.0, df) * se
        lo, hi = out["mean"].to_numpy() - half, out["mean"].to_numpy() + half
    else:
        lo = np.full(len(out), np.nan)
        hi = np.full(len(out), np.nan)
        codes = frame.groupby(by, sort=True, dropna=False).ngroup().to_numpy()
        values = v.to_numpy()
        order = np.argsort(codes, kind="stable")
        bounds = np.searchsorted(codes[order], np.arange(len(out) + 1))
        for i in range(len(out)):
            x = values[order[bounds[i]:bounds[i + 1]]]
            x = x[np.isfinite(x)]
            if x.size < 2 or np.ptp(x) == 0:
                continue
            res = sps.bootstrap((x,), np.mean, confidence_level=level, n_resamples=n_resamples,
                                method=bootstrap_method, rng=np.random.default_rng(seed))
            lo[i], hi[i] = res.confidence_interval
    out["ci_low"] = lo
    out["ci_high"] = hi
    out["level"] = level
    out["ci_method"] = method
    out["label"] = ci_label(lo, hi, null)
    reason = np.where(n == 0, "n=0: no finite values", np.where(n == 1, "n=1: no variance estimate", ""))
    if method == "bootstrap":
        reason = np.where((reason == "") & np.isnan(lo), "all values equal: bootstrap CI undefined", reason)
    out["reason"] = reason
    return out[[*by, *CI_COLUMNS]]


def proportion_mean_ci(frame: pd.DataFrame, value: str, by: Sequence[str], n_images: pd.Series,
                       level: float = 0.99, null: float = 1.0) -> pd.DataFrame:
    """:func:`mean_ci` of a per-model proportion (e.g. functional agreement) whose interval
    stays inside [0, 1]: a t-interval of the mean empirical logit, transformed back.

    Each model's proportion ``p`` of ``n`` images (``n_images``, aligned with ``frame``) becomes
    ``log((p n + 1/2) / ((1 - p) n + 1/2))`` (finite at 0 and 1); the 99 % t-interval of the
    mean of these over the cell's models is mapped back with the logistic function. On the
    logit scale a proportion near a bound is no longer squeezed against it, so the interval is
    asymmetric there and never leaves [0, 1] (a plain t-interval on 5 agreements of 2 %, 20 %,
    ... reaches below 0). ``mean`` stays the arithmetic mean of the proportions; the interval
    is that of the back-transformed mean logit (close to it unless the models differ widely).
    ``ci_method`` is ``"logit-t"``.
    """
    p = frame[value].astype(np.float64).to_numpy()
    n = np.asarray(n_images, dtype=np.float64)
    if len(n) != len(p):
        raise ValueError(f"n_images has {len(n)} values for {len(p)} rows")
    if np.any((p < 0) | (p > 1)) or np.any(~(n > 0)):
        raise ValueError(f"{value} must be proportions in [0, 1] of n_images > 0 images")
    logit = np.log((p * n + 0.5) / ((1 - p) * n + 0.5))
    out = mean_ci(frame, value=value, by=by, level=level, null=null)
    lg = mean_ci(frame.assign(**{value: logit}), value=value, by=by, level=level, null=0.0)
    lo, hi = [1.0 / (1.0 + np.exp(-lg[c].to_numpy())) for c in ("ci_low", "ci_high")]
    out["ci_low"], out["ci_high"] = lo, hi
    out["ci_method"] = "logit-t"
    out["label"] = ci_label(lo, hi, null)
    return out
