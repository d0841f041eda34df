"""Single-pair statistics (issue 27): per-class exact McNemar against statsmodels on the same
predictions, Holm across classes, and the stratified bootstrap against a per-resample
re-expression through the project's own metrics (tidy counts -> intensification -> alpha)."""
from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from scipy.stats import binomtest
from statsmodels.stats.contingency_tables import mcnemar
from statsmodels.stats.multitest import multipletests

from prunescope import metrics
from prunescope.stats.pairs import PAIR_UNCERTAINTY, mcnemar_by_class, pair_bootstrap


K = dict(dataset="d", arch="a", model=0)


def _pair(seed=0, n_per=60, c=4):
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(c), n_per)
    dense = np.where(rng.random(len(y)) < np.linspace(0.95, 0.65, c)[y], y, rng.integers(0, c, len(y)))
    # pruning hurts class 1 hard, leaves the rest nearly alone
    flip = rng.random(len(y)) < np.where(y == 1, 0.5, 0.05)
    pruned = np.where(flip, (y + 1) % c, dense)
    return y, dense, pruned


def test_mcnemar_matches_statsmodels_and_holm():
    y, d, p = _pair()
    out = mcnemar_by_class(y, d, p, 4)
    for c in range(4):
        on = y == c
        a, b = d[on] == c, p[on] == c
        table = [[np.sum(a & b), np.sum(a & ~b)], [np.sum(~a & b), np.sum(~a & ~b)]]
        row = out.iloc[c]
        assert [row.both_right, row.dense_only, row.pruned_only, row.both_wrong] == sum(table, [])
        assert row.p_raw == pytest.approx(mcnemar(table, exact=True).pvalue, rel=1e-12)
        # the exact test is the two-sided binomial test of the discordant pairs
        k, m = table[0][1], table[0][1] + table[1][0]
        assert row.p_raw == pytest.approx(binomtest(k, m, 0.5).pvalue if m else 1.0, rel=1e-9)
    assert np.allclose(out.p_corrected, multipletests(out.p_raw, method="holm")[1])
    assert out.p_corrected[1] < 0.01 and out.p_corrected[0] > 0.01  # the hurt class stands out


def test_mcnemar_no_change_is_p_one():
    y, d, _ = _pair()
    assert (mcnemar_by_class(y, d, d, 4).p_raw == 1.0).all()


def test_bootstrap_matches_metrics_per_resample():
    y, d, p = _pair(seed=3, n_per=25)
    b = 40
    res = pair_bootstrap(y, d, p, 4, n_resamples=b, level=0.9, seed=7)
    rng = np.random.default_rng(7)
    draws = {c: rng.integers(0, 25, size=(b, 25)) for c in range(4)}
    alphas, eags, changes = [], [], []
    for r in range(b):
        idx = np.concatenate([np.flatnonzero(y == c)[draws[c][r]] for c in range(4)])
        counts = pd.concat([metrics.from_predictions(y[idx], d[idx], 4, method="dense", ratio=1.0, **K),
                            metrics.from_predictions(y[idx], p[idx], 4, method="x", ratio=2.0, **K)])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", metrics.ImbalanceWarning)
            paired = metrics.intensification(counts)
        alphas.append(float(metrics.model_alpha(paired).alpha.iloc[0]))
        rd, rp = paired.value_before.to_numpy(), paired.value_after.to_numpy()
        ad, ap = paired.accuracy_before.iloc[0], paired.accuracy_after.iloc[0]
        eags.append(np.max((rd - rp) - (ad - ap)))
        changes.append(rp - rd)
    s = res.summary.set_index("statistic")
    assert s.loc["alpha", ["ci_low", "ci_high"]].tolist() == pytest.approx(
        np.nanquantile(alphas, [0.05, 0.95]).tolist(), rel=1e-9)
    assert s.loc["max_eag", ["ci_low", "ci_high"]].tolist() == pytest.approx(
        np.quantile(eags, [0.05, 0.95]).tolist(), abs=1e-12)
    assert np.allclose(res.classes.ci_low, np.quantile(changes, 0.05, axis=0))
    assert np.allclose(res.classes.ci_high, np.quantile(changes, 0.95, axis=0))
    full = pd.concat([metrics.from_predictions(y, d, 4, method="dense", ratio=1.0, **K),
                      metrics.from_predictions(y, p, 4, method="x", ratio=2.0, **K)])
    assert s.loc["alpha", "estimate"] == pytest.approx(
        metrics.model_alpha(metrics.intensification(full)).alpha.iloc[0], rel=1e-12)
    assert res.uncertainty == PAIR_UNCERTAINTY and "not seed-to-seed" in res.uncertainty


def test_bootstrap_is_seeded_and_covers_the_estimate():
    y, d, p = _pair()
    a = pair_bootstrap(y, d, p, 4, n_resamples=300, seed=1)
    b = pair_bootstrap(y, d, p, 4, n_resamples=300, seed=1)
    pd.testing.assert_frame_equal(a.summary, b.summary)
    s = a.summary
    assert ((s.ci_low <= s.estimate) & (s.estimate <= s.ci_high)).all()
    hurt = a.classes.iloc[1]
    assert hurt.ci_high < 0  # class 1 lost recall beyond test-set noise
