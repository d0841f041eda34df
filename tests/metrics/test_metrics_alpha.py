"""Per-class balances, intensification and alpha (SPEC 2)."""
import warnings

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from prunescope.metrics import (
    ImbalanceWarning,
    from_confusion,
    intensification,
    model_alpha,
    per_class,
    pooled_alpha,
)

BASE = dict(dataset="d", arch="a", distribution="nominal")


def tidy(dense: np.ndarray, pruned: np.ndarray, model: int = 0, ratio: float = 2.0) -> pd.DataFrame:
    return pd.concat([
        from_confusion(dense, **BASE, method="dense", ratio=1.0, model=model),
        from_confusion(pruned, **BASE, method="mp", ratio=ratio, model=model),
    ], ignore_index=True)


def recall_matrix(correct: list[int], n: int) -> np.ndarray:
    """Balanced (C, C) confusion with the given diagonal; errors go to the next class."""
    c = len(correct)
    cm = np.zeros((c, c), dtype=np.int64)
    for i, k in enumerate(correct):
        cm[i, i] = k
        cm[i, (i + 1) % c] += n - k
    return cm


def test_spec2_worked_example():
    # SPEC 2: A = 0.8, R^X = 0.9, R^Y = 0.7; after: A_t = 0.6, R_t^X = 0.7, R_t^Y = 0.5.
    p = intensification(tidy(recall_matrix([9, 7], 10), recall_matrix([7, 5], 10)))
    np.testing.assert_allclose(p["Bn_before"], [1 / 8, -1 / 8], rtol=0, atol=1e-15)
    np.testing.assert_allclose(p["Bn_after"], [1 / 6, -1 / 6], rtol=0, atol=1e-15)
    np.testing.assert_allclose(p["I"], [4 / 3, 4 / 3], rtol=1e-14)
    m = model_alpha(p)
    assert m["alpha"].iloc[0] == pytest.approx(4 / 3, rel=1e-14)
    assert m["accuracy_before"].iloc[0] == pytest.approx(0.8)
    assert m["accuracy_after"].iloc[0] == pytest.approx(0.6)
    assert m["n_undefined_I"].iloc[0] == 0
    # recall variance over classes, ddof = 0: ((0.1)^2 + (0.1)^2) / 2
    assert m["var_before"].iloc[0] == pytest.approx(0.01)


@st.composite
def balanced_pair(draw):
    c = draw(st.integers(2, 12))
    mats = []
    for _ in range(2):
        m = draw(arrays(np.int64, (c, c), elements=st.integers(0, 40)))
        n = int(m.sum(axis=1).max()) + 1
        m[np.diag_indices(c)] += n - m.sum(axis=1)
        mats.append(m)
    return mats


@settings(max_examples=40, deadline=None)
@given(balanced_pair())
def test_balances_sum_to_zero_on_balanced_sets(mats):
    f = per_class(tidy(*mats))
    sums = f.groupby("method")[["B", "Bn"]].sum()
    np.testing.assert_allclose(sums.to_numpy(), 0.0, atol=1e-12)
    assert f["balanced"].all()


@settings(max_examples=40, deadline=None)
@given(balanced_pair())
def test_alpha_is_bn2_weighted_mean_of_finite_i(mats):
    p = intensification(tidy(*mats))
    alpha = model_alpha(p)["alpha"].iloc[0]
    ok = np.isfinite(p["I"])
    w = p["Bn_before"][ok] ** 2
    if w.sum() == 0:
        assert np.isnan(alpha)
    else:
        assert alpha == pytest.approx((w * p["I"][ok]).sum() / w.sum(), rel=1e-12, abs=1e-12)
    assert model_alpha(p)["n_undefined_I"].iloc[0] == (~ok).sum()


@settings(max_examples=40, deadline=None)
@given(balanced_pair(), st.randoms(use_true_random=False))
def test_alpha_invariant_to_class_order(mats, rnd):
    c = mats[0].shape[0]
    perm = np.array(rnd.sample(range(c), c))
    a = model_alpha(intensification(tidy(*mats)))["alpha"].iloc[0]
    b = model_alpha(intensification(tidy(*(m[np.ix_(perm, perm)] for m in mats))))["alpha"].iloc[0]
    assert (np.isnan(a) and np.isnan(b)) or a == pytest.approx(b, rel=1e-12, abs=1e-14)


@settings(max_examples=40, deadline=None)
@given(balanced_pair())
def test_identical_pruned_and_dense_give_alpha_exactly_one(mats):
    p = intensification(tidy(mats[0], mats[0]))
    alpha = model_alpha(p)["alpha"].iloc[0]
    if (p["Bn_before"] != 0).any():
        assert alpha == 1.0
    else:
        assert np.isnan(alpha)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(-6, 6), min_size=1, max_size=6).filter(any), st.integers(1, 4))
def test_gaps_widened_by_k_give_alpha_k(devs, k):
    # correct counts m + d_c (dense) and m + k d_c (pruned) with sum d = 0: same accuracy,
    # every recall gap multiplied by k, so Bn_t = k Bn and alpha = I = k.
    d = np.array(devs + [-v for v in devs])
    m, n = 30, 60
    p = intensification(tidy(recall_matrix(list(m + d), n), recall_matrix(list(m + k * d), n)))
    assert model_alpha(p)["alpha"].iloc[0] == pytest.approx(k, rel=1e-12)
    finite = p["I"].dropna()
    np.testing.assert_allclose(finite, k, rtol=1e-12)


def test_undefined_i_is_nan_and_counted_never_dropped():
    # class 2 has recall = accuracy before pruning -> Bn = 0 -> I undefined
    p = intensification(tidy(recall_matrix([9, 7, 8], 10), recall_matrix([8, 5, 8], 10)))
    assert len(p) == 3 and np.isnan(p["I"].iloc[2])
    m = model_alpha(p)
    assert m["n_undefined_I"].iloc[0] == 1 and m["n_classes"].iloc[0] == 3
    assert m["mean_I"].iloc[0] == pytest.approx(p["I"].iloc[:2].mean())


def test_precision_and_f1_variants():
    cm = np.array([[8, 2], [4, 6]])
    f = per_class(tidy(cm, cm), "precision")
    np.testing.assert_allclose(f["value"].iloc[:2], [8 / 12, 6 / 8])
    g = per_class(tidy(cm, cm), "f1")
    prec, rec = np.array([8 / 12, 6 / 8]), np.array([0.8, 0.6])
    np.testing.assert_allclose(g["value"].iloc[:2], 2 * prec * rec / (prec + rec), rtol=1e-14)
    never = np.array([[5, 0], [5, 0]])  # class 1 never predicted -> precision undefined
    h = per_class(tidy(never, never), "precision")
    assert np.isnan(h["value"].iloc[1])
    with pytest.raises(ValueError, match="metric must be one of"):
        per_class(tidy(cm, cm), "accuracy")


def test_never_predicted_class_counts_in_the_f1_slope():
    """SPEC 2 (F-score variant of alpha): a class the pruned model never predicts has F = 0
    (2 correct / (support + predicted) with correct = predicted = 0), so its point stays in
    alpha_F; precision is undefined for it and its point is left out of alpha_P."""
    dense = np.diag([90, 80, 70])
    dense[0, 1], dense[1, 2], dense[2, 0] = 10, 20, 30
    pruned = np.array([[90, 10, 0], [20, 80, 0], [40, 60, 0]])  # class 2 never predicted
    f = intensification(tidy(dense, pruned), "f1")
    assert f["value_after"].iloc[2] == 0.0
    assert np.isfinite(f["Bn_after"]).all()
    m = model_alpha(f)
    assert m["n_points"].iloc[0] == 3
    x, y = f["Bn_before"].to_numpy(), f["Bn_after"].to_numpy()
    assert m["alpha"].iloc[0] == pytest.approx((x @ y) / (x @ x), rel=1e-12)
    p = model_alpha(intensification(tidy(dense, pruned), "precision"))
    assert p["n_points"].iloc[0] == 2


def test_unbalanced_sets_are_flagged_and_warned():
    dense = np.array([[18, 2], [3, 7]])
    pruned = np.array([[15, 5], [4, 6]])
    with pytest.warns(ImbalanceWarning, match="unequal class supports"):
        p = intensification(tidy(dense, pruned))
    assert not p["balanced"].any()
    assert abs(p["B_before"].sum()) > 1e-3  # sum B = 0 does not hold
    m = model_alpha(p, intercept=True)
    x, y = p["Bn_before"].to_numpy(), p["Bn_after"].to_numpy()
    slope, icpt = np.polyfit(x, y, 1)
    assert m["alpha_intercept"].iloc[0] == pytest.approx(slope, rel=1e-10)
    assert m["intercept"].iloc[0] == pytest.approx(icpt, abs=1e-12)
    assert not m["balanced"].iloc[0]


def test_missing_dense_parent_is_an_error():
    f = from_confusion(recall_matrix([9, 7], 10), **BASE, method="mp", ratio=2.0, model=0)
    with pytest.raises(ValueError, match="no dense parent"):
        intensification(f)


def test_extra_keys_pass_through_to_model_alpha():
    dense = from_confusion(recall_matrix([9, 7], 10), **BASE, method="dense", ratio=1.0, model=0)
    lv = [from_confusion(recall_matrix([9 - i, 7 - 2 * i], 10), **BASE, method="imp", ratio=1.25 ** i,
                         model=0, level=i) for i in (1, 2)]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        p = intensification(pd.concat([dense.assign(level=0), *lv], ignore_index=True))
    m = model_alpha(p)
    assert m["level"].tolist() == [1, 2]


def test_pooled_alpha_r2_is_uncentered_through_origin():
    frames = [tidy(recall_matrix(d, 20), recall_matrix(a, 20), model=i)
              for i, (d, a) in enumerate([([18, 14, 16], [17, 9, 13]), ([15, 17, 16], [12, 17, 13])])]
    p = intensification(pd.concat(frames, ignore_index=True))
    cell = pooled_alpha(p)
    assert len(cell) == 1 and cell["n_models"].iloc[0] == 2 and cell["n_points"].iloc[0] == 6
    x, y = p["Bn_before"].to_numpy(), p["Bn_after"].to_numpy()
    a_hat = (x * y).sum() / (x * x).sum()
    assert cell["alpha_hat"].iloc[0] == pytest.approx(a_hat, rel=1e-13)
    assert cell["r2"].iloc[0] == pytest.approx(1 - ((y - a_hat * x) ** 2).sum() / (y ** 2).sum(), rel=1e-12)
    assert cell["A_bar"].iloc[0] == pytest.approx(np.mean([39 / 60, 42 / 60]))
    assert cell["A_bar_before"].iloc[0] == pytest.approx(np.mean([48 / 60, 48 / 60]))
