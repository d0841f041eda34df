"""Excess accuracy gap (issue 26) against a hand-computed example, and the objective-vs-ce
paired tests against scipy."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from prunescope import metrics
from prunescope.stats.objectives import objective_tests


def _cm(correct_per_class, n=10):
    """Confusion matrix with ``correct_per_class[c]`` right of n per class, the rest on c+1."""
    k = len(correct_per_class)
    cm = np.zeros((k, k), dtype=np.int64)
    for c, r in enumerate(correct_per_class):
        cm[c, c] = r
        cm[c, (c + 1) % k] = n - r
    return cm


def test_eag_hand_computed():
    """Dense recalls 0.9 / 0.7 / 0.8 (A 0.8); pruned 0.7 / 0.6 / 0.8 (A 0.7). Overall drop 0.1:
    EAG = (0.2 - 0.1, 0.1 - 0.1, 0.0 - 0.1) = (0.1, 0, -0.1); max 0.1, spread 0.2."""
    dense = metrics.from_confusion(_cm([9, 7, 8]), dataset="d", arch="a", method="dense",
                                   ratio=1.0, model=0)
    pruned = metrics.from_confusion(_cm([7, 6, 8]), dataset="d", arch="a", method="mp",
                                    ratio=10.0, model=0)
    paired = metrics.intensification(pd.concat([dense, pruned], ignore_index=True))
    from prunescope.metrics.eag import class_eag

    np.testing.assert_allclose(class_eag(paired), [0.1, 0.0, -0.1], atol=1e-12)
    row = metrics.model_alpha(paired).iloc[0]
    assert row["max_eag"] == pytest.approx(0.1)
    assert row["eag_spread"] == pytest.approx(0.2)


def test_eag_sums_to_zero_on_a_balanced_set():
    rng = np.random.default_rng(3)
    dense = metrics.from_confusion(_cm(rng.integers(3, 10, 6)), dataset="d", arch="a",
                                   method="dense", ratio=1.0, model=0)
    pruned = metrics.from_confusion(_cm(rng.integers(0, 10, 6)), dataset="d", arch="a",
                                    method="mp", ratio=4.0, model=0)
    from prunescope.metrics.eag import class_eag

    paired = metrics.intensification(pd.concat([dense, pruned], ignore_index=True))
    assert class_eag(paired).sum() == pytest.approx(0.0, abs=1e-12)


def test_objective_tests_match_scipy_ttest_rel():
    rng = np.random.default_rng(0)
    rows = []
    for ratio in (20.0, 50.0):
        for obj in ("ce", "kd", "ceag"):
            for m in range(6):
                rows.append({"dataset": "d", "arch": "a", "method": "mp", "distribution": "n",
                             "ratio": ratio, "objective": obj, "model": m,
                             "alpha": 1 + 0.1 * m + rng.normal(0, 0.2)})
    models = pd.DataFrame(rows).sample(frac=1.0, random_state=1)  # order must not matter
    out = objective_tests(models, "alpha")
    assert len(out) == 4 and set(out["family_size"]) == {2}
    for r in out.itertuples():
        sub = models[models["ratio"] == r.ratio]
        a = sub[sub["objective"] == r.objective].sort_values("model")["alpha"].to_numpy()
        b = sub[sub["objective"] == "ce"].sort_values("model")["alpha"].to_numpy()
        ref = sps.ttest_rel(a, b, alternative="two-sided")
        assert r.t == pytest.approx(ref.statistic) and r.p_raw == pytest.approx(ref.pvalue)
        assert r.df == 5 and r.n == 6
        assert r.p_corrected == pytest.approx(min(1.0, 2 * ref.pvalue))
        assert r.mean_diff == pytest.approx((a - b).mean())
