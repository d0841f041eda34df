"""t-tests and multiple-testing corrections (SPEC 5).

Single tests call :mod:`scipy.stats` directly. The family functions need hundreds of tests at
once, so :func:`paired_from_moments` / :func:`independent_from_moments` compute the same
statistics from per-comparison moments (vectorised); the tests check both paths against
scipy to 1e-12.
"""
from __future__ import annotations

from typing import Literal

import numpy as np
import pandas as pd
from scipy import stats as sps
from statsmodels.stats.multitest import multipletests

Alternative = Literal["two-sided", "less", "greater"]
Correction = Literal["bonferroni", "holm"]
ALTERNATIVES: tuple[str, ...] = ("two-sided", "less", "greater")
#: Multiple-testing corrections of :func:`correct` (``method=``); the report's and the CLI's choices.
CORRECTIONS: tuple[str, ...] = ("bonferroni", "holm")

#: Statistics every test result carries (one row per comparison).
TEST_COLUMNS: tuple[str, ...] = (
    "test", "alternative", "n1", "n2", "mean1", "mean2", "mean_diff", "t", "df", "p_raw",
)


def _check_alternative(alternative: str) -> None:
    if alternative not in ALTERNATIVES:
        raise ValueError(f"alternative must be one of {ALTERNATIVES}, got {alternative!r}")


def t_pvalue(t: np.ndarray, df: np.ndarray, alternative: Alternative) -> np.ndarray:
    """p-value of Student-t statistics ``t`` with ``df`` degrees of freedom (arrays, same shape).

    ``"less"``: P(T <= t); ``"greater"``: P(T >= t); ``"two-sided"``: 2 P(T >= |t|), capped at 1.
    """
    _check_alternative(alternative)
    t = np.asarray(t, dtype=np.float64)
    df = np.asarray(df, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        if alternative == "less":
            return sps.t.cdf(t, df)
        if alternative == "greater":
            return sps.t.sf(t, df)
        return np.minimum(2.0 * sps.t.sf(np.abs(t), df), 1.0)


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


def paired_from_moments(n: np.ndarray, mean_d: np.ndarray, var_d: np.ndarray,
                        alternative: Alternative) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Paired t-tests from moments of the differences d = a - b, vectorised over comparisons.

    ``n`` pairs, ``mean_d`` and ``var_d`` (sample variance, ddof = 1), arrays of shape (K,).
    Returns ``(t, df, p)`` each (K,): t = mean_d / sqrt(var_d / n), df = n - 1 (NaN where n < 2).
    """
    n = np.asarray(n, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.where(n >= 2, mean_d / np.sqrt(var_d / n), np.nan)
    df = np.where(n >= 2, n - 1.0, np.nan)
    return t, df, t_pvalue(t, df, alternative)


def independent_from_moments(n1: np.ndarray, mean1: np.ndarray, var1: np.ndarray,
                             n2: np.ndarray, mean2: np.ndarray, var2: np.ndarray,
                             alternative: Alternative, equal_var: bool = True
                             ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Independent two-sample t-tests from moments (variances with ddof = 1), vectorised (K,).

    ``equal_var=True``: Student's pooled variance, df = n1 + n2 - 2; ``False``: Welch's test with
    the Welch-Satterthwaite df. t and p come from :func:`scipy.stats.ttest_ind_from_stats`.
    Returns ``(t, df, p)``, NaN where a side has fewer than 2 observations.
    """
    _check_alternative(alternative)
    n1 = np.asarray(n1, dtype=np.float64)
    n2 = np.asarray(n2, dtype=np.float64)
    ok = (n1 >= 2) & (n2 >= 2)
    with np.errstate(divide="ignore", invalid="ignore"):
        res = sps.ttest_ind_from_stats(mean1, np.sqrt(var1), n1, mean2, np.sqrt(var2), n2,
                                       equal_var=equal_var, alternative=alternative)
        if equal_var:
            df = n1 + n2 - 2.0
        else:
            v1, v2 = var1 / n1, var2 / n2
            df = (v1 + v2) ** 2 / (v1 ** 2 / (n1 - 1.0) + v2 ** 2 / (n2 - 1.0))
    t = np.where(ok, np.asarray(res.statistic, dtype=np.float64), np.nan)
    p = np.where(ok, np.asarray(res.pvalue, dtype=np.float64), np.nan)
    return t, np.where(ok, df, np.nan), p


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
