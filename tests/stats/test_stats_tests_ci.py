"""t-tests, corrections and CIs against scipy, statsmodels and hand computation (SPEC 5)."""
import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps
from statsmodels.stats.multitest import multipletests

from prunescope.stats import (
    correct,
    correct_within,
    mean_ci,
    t_interval,
    ttest,
)

X = np.array([1.10, 1.32, 0.95, 1.21, 1.40])
Y = np.array([1.02, 1.15, 0.99, 1.05, 1.21])


def test_paired_ttest_by_hand_and_scipy():
    d = X - Y
    n = d.size
    mean = d.sum() / n
    sd = math.sqrt(((d - mean) ** 2).sum() / (n - 1))
    t_hand = mean / (sd / math.sqrt(n))
    r = ttest(X, Y, paired=True, alternative="greater")
    assert r["t"] == pytest.approx(t_hand, rel=1e-12) and r["df"] == n - 1
    assert r["p_raw"] == pytest.approx(sps.t.sf(t_hand, n - 1), rel=1e-12)
    assert r["mean_diff"] == pytest.approx(mean, abs=1e-15)
    for alt in ("less", "two-sided"):
        ref = sps.ttest_rel(X, Y, alternative=alt)
        assert ttest(X, Y, paired=True, alternative=alt)["p_raw"] == pytest.approx(ref.pvalue, rel=1e-12)


@pytest.mark.parametrize("equal_var", [True, False])
@pytest.mark.parametrize("alt", ["less", "greater", "two-sided"])
def test_independent_ttest_matches_scipy(equal_var, alt):
    y = np.append(Y, [0.88, 1.3])
    ref = sps.ttest_ind(X, y, equal_var=equal_var, alternative=alt)
    r = ttest(X, y, alternative=alt, equal_var=equal_var)
    assert r["t"] == pytest.approx(ref.statistic, rel=1e-12)
    assert r["p_raw"] == pytest.approx(ref.pvalue, rel=1e-12)
    assert r["df"] == pytest.approx(ref.df, rel=1e-12)
    if equal_var:  # hand computation of Student's pooled t
        n1, n2 = X.size, y.size
        sp2 = ((n1 - 1) * X.var(ddof=1) + (n2 - 1) * y.var(ddof=1)) / (n1 + n2 - 2)
        assert r["t"] == pytest.approx((X.mean() - y.mean()) / math.sqrt(sp2 * (1 / n1 + 1 / n2)), rel=1e-12)


def test_one_sample_and_too_small_samples():
    r = ttest(X, popmean=1.0)
    assert r["test"] == "one-sample" and r["t"] == pytest.approx(sps.ttest_1samp(X, 1.0).statistic, rel=1e-12)
    with pytest.raises(ValueError, match="alternative"):
        ttest(X, Y, alternative="bigger")


@pytest.mark.parametrize("method", ["bonferroni", "holm"])
def test_corrections_match_statsmodels_and_cap_at_one(method):
    p = np.array([0.001, 0.3, 0.04, 0.5, 0.6, np.nan])
    got = correct(p, method)
    ref = multipletests(p[:5], method=method)[1]
    np.testing.assert_allclose(got[:5], ref, rtol=1e-12)
    assert np.isnan(got[5]) and np.nanmax(got) == 1.0
    if method == "bonferroni":
        np.testing.assert_allclose(got[:5], np.minimum(p[:5] * 5, 1.0), rtol=1e-12)


def test_correct_within_families():
    f = pd.DataFrame({"family": ["a", "a", "b", "b", "b"], "p_raw": [0.01, 0.2, 0.01, 0.02, np.nan]})
    out = correct_within(f)
    np.testing.assert_allclose(out["p_corrected"].iloc[:4], [0.02, 0.4, 0.02, 0.04], rtol=1e-12)
    assert out["family_size"].tolist() == [2, 2, 2, 2, 2]
    assert (out["correction"] == "bonferroni").all()


def test_t_interval_by_hand_and_scipy():
    n = X.size
    half = sps.t.ppf(0.995, n - 1) * X.std(ddof=1) / math.sqrt(n)
    lo, hi = t_interval(X, 0.99)
    assert lo == pytest.approx(X.mean() - half, rel=1e-12) and hi == pytest.approx(X.mean() + half, rel=1e-12)
    ref = sps.ttest_1samp(X, 1.0).confidence_interval(0.99)
    assert (lo, hi) == pytest.approx((ref.low, ref.high), rel=1e-12)


def cells(values: dict[float, list[float]]) -> pd.DataFrame:
    rows = [dict(dataset="d", arch="a", method="mp", ratio=r, distribution="nominal", model=m, alpha=v)
            for r, vs in values.items() for m, v in enumerate(vs)]
    return pd.DataFrame(rows)


def test_mean_ci_labels_n1_and_nan_counting():
    f = cells({2.0: [0.80, 0.85, 0.90, 0.82], 10.0: list(X), 20.0: [1.3, 1.35, 1.4, 1.32, np.nan], 50.0: [1.7]})
    out = mean_ci(f).set_index("ratio")
    assert out.loc[2.0, "label"] == "<"
    assert out.loc[20.0, "label"] == ">" and out.loc[20.0, "n"] == 4 and out.loc[20.0, "n_nan"] == 1
    lo, hi = t_interval(X)
    assert out.loc[10.0, "ci_low"] == pytest.approx(lo, rel=1e-12) and out.loc[10.0, "ci_high"] == pytest.approx(hi, rel=1e-12)
    assert out.loc[10.0, "label"] == ("?" if lo <= 1 <= hi else "<" if hi < 1 else ">")
    assert np.isnan(out.loc[50.0, "ci_low"]) and out.loc[50.0, "label"] == "?"
    assert out.loc[50.0, "reason"].startswith("n=1") and out.loc[2.0, "reason"] == ""
    assert out.loc[10.0, "sd"] == pytest.approx(X.std(ddof=1), rel=1e-12)


def test_bootstrap_ci_is_seeded_and_matches_scipy():
    f = cells({2.0: list(X), 4.0: [0.9, 0.95, 0.97, 1.0, 0.92, 0.88]})
    a = mean_ci(f, method="bootstrap", n_resamples=999, seed=3)
    b = mean_ci(f, method="bootstrap", n_resamples=999, seed=3)
    pd.testing.assert_frame_equal(a, b)
    ref = sps.bootstrap((X,), np.mean, confidence_level=0.99, n_resamples=999, method="BCa",
                        rng=np.random.default_rng(3)).confidence_interval
    row = a.set_index("ratio").loc[2.0]
    assert (row["ci_low"], row["ci_high"]) == pytest.approx((ref.low, ref.high), rel=1e-12)
    assert (a["ci_method"] == "bootstrap").all()


def test_ci_over_models_of_excess_error_uses_null_zero():
    # SPEC 2 excess error, CIs over models (issue 8): label against 0, not 1
    rows = [dict(dataset="d", arch="a", method="mp", ratio=4.0, distribution="shot-3", model=m, excess_error=e)
            for m, e in enumerate([0.021, 0.034, 0.028, 0.025, 0.031])]
    out = mean_ci(pd.DataFrame(rows), value="excess_error", null=0.0).iloc[0]
    lo, hi = t_interval(np.array([0.021, 0.034, 0.028, 0.025, 0.031]))
    assert (out["ci_low"], out["ci_high"]) == pytest.approx((lo, hi), rel=1e-12)
    assert out["label"] == ">"
    with pytest.raises(ValueError, match="lacks column"):
        mean_ci(pd.DataFrame(rows), value="alpha")


def test_cell_key_clashing_with_an_output_column_is_an_error():
    f = cells({2.0: list(X)}).assign(level=1)
    with pytest.raises(ValueError, match="clash"):
        mean_ci(f, by=["ratio", "level"])
