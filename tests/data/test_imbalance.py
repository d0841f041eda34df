"""Long-tailed training splits (issue 17): counts against the published formulas, the seeded
draw, and the validation hold-out drawn from the imbalanced split."""
from __future__ import annotations

import numpy as np
import pytest

from prunescope.data.imbalance import class_counts, imbalanced_indices
from prunescope.data.splits import training_split, val_quota

#: CIFAR-10-LT at imbalance 100 (Cao et al. 2019, Table/appendix; Cui et al. 2019): the counts
#: every long-tail paper reports
CIFAR10_LT100 = [5000, 2997, 1796, 1077, 645, 387, 232, 139, 83, 50]


def test_exponential_matches_cifar10_lt():
    assert class_counts([5000] * 10, 100, "exponential").tolist() == CIFAR10_LT100


@pytest.mark.parametrize("ratio", [1, 2, 10, 50, 100, 200])
def test_exponential_formula(ratio):
    got = class_counts([6000] * 10, ratio, "exponential")
    want = [int(np.floor(6000 * ratio ** (-c / 9) + 1e-9)) for c in range(10)]
    assert got.tolist() == want
    assert got[0] == 6000 and got[-1] == 6000 // ratio
    assert (np.diff(got) <= 0).all()


def test_step_profile_halves_the_classes():
    got = class_counts([5000] * 10, 10, "step").tolist()
    assert got == [5000] * 5 + [500] * 5
    assert class_counts([100] * 5, 4, "step").tolist() == [100, 100, 100, 25, 25]


def test_n_max_is_the_smallest_available_class():
    mnist = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
    got = class_counts(mnist, 100, "exponential")
    assert got[0] == 5421 and got[-1] == 54 and (got <= np.array(mnist)).all()


@pytest.mark.parametrize("bad", [0.5, 0, float("inf"), 5001])
def test_ratio_out_of_range_is_refused(bad):
    with pytest.raises(ValueError, match="imbalance ratio"):
        class_counts([5000] * 10, bad, "exponential")


def test_unknown_profile_is_refused():
    with pytest.raises(ValueError, match="profile"):
        class_counts([5000] * 10, 10, "linear")


def test_draw_is_seeded_and_exact():
    y = np.repeat(np.arange(4), 50)
    counts = [50, 20, 10, 5]
    a = imbalanced_indices(y, counts, seed=3)
    assert np.bincount(y[a]).tolist() == counts
    assert np.array_equal(a, imbalanced_indices(y, counts, seed=3))
    assert not np.array_equal(a, imbalanced_indices(y, counts, seed=4))
    with pytest.raises(ValueError):
        imbalanced_indices(y, [51, 1, 1, 1], seed=0)


def test_validation_is_drawn_from_the_imbalanced_split():
    y = np.repeat(np.arange(4), 100)
    imb = {"counts": [100, 40, 20, 10], "seed": 1}
    tr, va = training_split(y, 17, split_seed=0, imbalance=imb)
    kept = imbalanced_indices(y, imb["counts"], imb["seed"])
    assert set(tr) | set(va) == set(kept) and not set(tr) & set(va)
    assert np.bincount(y[va], minlength=4).tolist() == val_quota(imb["counts"], 17).tolist()
    assert np.bincount(y[va], minlength=4)[0] > np.bincount(y[va], minlength=4)[3]
    # no imbalance: exactly the balanced hold-out
    from prunescope.data import train_val_indices
    b_tr, b_va = training_split(y, 17, 0)
    e_tr, e_va = train_val_indices(y, 17, seed=0)
    assert np.array_equal(b_tr, e_tr) and np.array_equal(b_va, e_va)
