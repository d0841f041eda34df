"""t-tests and multiple-testing corrections (SPEC 5).

Every t-test is :mod:`scipy.stats`' own: :func:`ttest` for one comparison, and the family
functions (:mod:`prunescope.stats.families`) call ``ttest_rel`` / ``ttest_ind`` along an axis
for many at once.
"""
from __future__ import annotations

from typing import Literal

import numpy as np
import pandas as pd
from scipy import stats as sps
from statsmodels.stats.multitest import multipletests

from prunescope.choices import CORRECTIONS  # the corrections of correct (method=)

Alternative = Literal["two-sided", "less", "greater"]
Correction = Literal["bonferroni", "holm"]
ALTERNATIVES: tuple[str, ...] = ("two-sided", "less", "greater")

#: Statistics every test result carries (one row per comparison).
TEST_COLUMNS: tuple[str, ...] = (
    "test", "alternative", "n1", "n2", "mean1", "mean2", "mean_diff", "t", "df", "p_raw",
)


def _check_alternative(alternative: str) -> None:
    if alternative not in ALTERNATIVES:
        raise ValueError(f"alternative must be one of {ALTERNATIVES}, got {alternative!r}")


def ttest(a: np.ndarray, b: np.ndarray | None = None, *, paired: bool = False,
          alternative: Alternative = "two-sided", popmean: float = 0.0,
          equal_var: bool = True) -> dict[str, float | int | str]:
    """One t-test through :mod:`scipy.stats` (H_a stated for mean(a) - mean(b), or mean(a) - popmean).

    Parameters
    ----------
    a, b:
        1-D samples. ``b=None``: one-sample test of E[a] = popmean. ``paired=True``: ``a[i]`` and
        ``b[i]`` belong to the same unit (model), equal lengths required
        (:func:`scipy.stats.ttest_rel`); otherwise independent samples (:func:`scipy.stats.ttest_ind`,
        Student's pooled variance by default, Welch's with ``equal_var=False``).
    alternative:
        ``"less"`` (H_a: E[a] < E[b]), ``"greater"`` or ``"two-sided"``.

    Returns
    -------
    dict with ``test`` (``"one-sample"``, ``"paired"``, ``"independent"`` or ``"welch"``),
    ``alternative``, ``n1``, ``n2`` (0 for one-sample; n2 = n1 when paired), ``mean1``, ``mean2``
    (``popmean`` for one-sample), ``mean_diff`` = mean1 - mean2, ``t``, ``df``, ``p_raw``.
    """
    _check_alternative(alternative)
    x = np.asarray(a, dtype=np.float64)
    if b is None:
        res = sps.ttest_1samp(x, popmean, alternative=alternative)
        kind, y_mean, n2 = "one-sample", float(popmean), 0
    else:
        y = np.asarray(b, dtype=np.float64)
        if paired:
            if x.shape != y.shape:
                raise ValueError(f"paired samples need equal shapes, got {x.shape} and {y.shape}")
            res = sps.ttest_rel(x, y, alternative=alternative)
            kind = "paired"
        else:
            res = sps.ttest_ind(x, y, equal_var=equal_var, alternative=alternative)
            kind = "independent" if equal_var else "welch"
        y_mean, n2 = float(y.mean()), int(y.size)
    return {
        "test": kind, "alternative": alternative, "n1": int(x.size), "n2": n2,
        "mean1": float(x.mean()), "mean2": y_mean, "mean_diff": float(x.mean()) - y_mean,
        "t": float(res.statistic), "df": float(res.df), "p_raw": float(res.pvalue),
    }


def correct(p: np.ndarray, method: Correction = "bonferroni", *,
            count_undefined: bool = False) -> np.ndarray:
    """Multiple-testing correction of one family's p-values (:func:`statsmodels.stats.multitest.multipletests`).

    ``p`` (K,) raw p-values; NaN entries (comparisons without a p-value) stay NaN. The family
    size m is the number of finite p-values, or with ``count_undefined=True`` all K entries (the
    paper's rule, SPEC 5: every row of a table's column counts, an undefined one included; for
    Holm an undefined p ranks last, as p = 1 would). Bonferroni multiplies by m, Holm is the
    step-down version; both are capped at 1. Returns corrected p (K,).
    """
    if method not in CORRECTIONS:
        raise ValueError(f"correction must be one of {CORRECTIONS}, got {method!r}")
    p = np.asarray(p, dtype=np.float64)
    out = np.full(p.shape, np.nan)
    ok = np.isfinite(p)
    if ok.any():
        if count_undefined:
            out[ok] = multipletests(np.where(ok, p, 1.0), method=method)[1][ok]
        else:
            out[ok] = multipletests(p[ok], method=method)[1]
    return out


def correct_within(frame: pd.DataFrame, family: str = "family", p: str = "p_raw",
                   method: Correction = "bonferroni", *, count_undefined: bool = False) -> pd.DataFrame:
    """Correct ``frame[p]`` within each value of ``frame[family]`` (:func:`correct`).

    Returns a copy of ``frame`` with ``correction`` (the method), ``family_size`` (the rows of
    the row's family with a finite p, or all its rows with ``count_undefined=True``) and
    ``p_corrected`` added.
    """
    if method not in CORRECTIONS:
        raise ValueError(f"correction must be one of {CORRECTIONS}, got {method!r}")
    out = frame.copy()
    values = out[p].to_numpy(np.float64)
    corrected = np.full(len(out), np.nan)
    for idx in out.groupby(family, sort=False).indices.values():
        corrected[idx] = correct(values[idx], method, count_undefined=count_undefined)
    counted = np.ones(len(out), bool) if count_undefined else np.isfinite(values)
    out["correction"] = method
    out["family_size"] = out.assign(_f=counted).groupby(family, sort=False)["_f"].transform("sum").astype(np.int64)
    out["p_corrected"] = corrected
    return out
