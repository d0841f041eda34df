"""The validation hold-out (SPEC 4: held out from the training split, default 5,000 images, seeded):
stratified, deterministic, disjoint, covering, never a slice of class-sorted rows."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from prunescope.data import train_val_indices


@settings(max_examples=60, deadline=None)
@given(
    counts=st.lists(st.integers(1, 40), min_size=1, max_size=12),
    frac=st.floats(0.0, 0.95),
    seed=st.integers(0, 2**31),
)
def test_split_properties(counts, frac, seed):
    y = np.random.default_rng(seed).permutation(np.repeat(np.arange(len(counts)), counts))
    n = len(y)
    n_val = min(int(frac * n), n - 1)
    tr, va = train_val_indices(y, n_val, seed)
    assert tr.dtype == va.dtype == np.int64
    assert len(va) == n_val
    assert np.intersect1d(tr, va).size == 0
    np.testing.assert_array_equal(np.sort(np.concatenate([tr, va])), np.arange(n))
    assert np.all(np.diff(va) > 0) and np.all(np.diff(tr) > 0)
    # stratified: every class gets its proportional share, rounded either way
    quota = n_val * np.asarray(counts) / n
    got = np.bincount(y[va], minlength=len(counts))
    assert np.all(got >= np.floor(quota)) and np.all(got <= np.ceil(quota))
    # deterministic
    tr2, va2 = train_val_indices(y, n_val, seed)
    np.testing.assert_array_equal(va, va2)
    np.testing.assert_array_equal(tr, tr2)


def test_class_sorted_labels_like_cifar():
    y = np.repeat(np.arange(10), 5000)  # shared CIFAR-10 copy: rows sorted by class
    tr, va = train_val_indices(y)
    assert len(va) == 5000 and len(tr) == 45000
    np.testing.assert_array_equal(np.bincount(y[va]), [500] * 10)
    assert not np.array_equal(va, np.arange(45000, 50000)) and va.max() - va.min() > 40000
    # within a class the choice is a random draw, not the first rows
    assert not np.array_equal(va[:500], np.arange(500))


def test_seed_changes_the_draw_but_not_the_stratification():
    y = np.repeat(np.arange(4), 250)
    _, a = train_val_indices(y, 100, seed=0)
    _, b = train_val_indices(y, 100, seed=1)
    assert not np.array_equal(a, b)
    np.testing.assert_array_equal(np.bincount(y[a]), np.bincount(y[b]))


def test_largest_remainder_rounding():
    y = np.repeat(np.arange(3), [5, 3, 2])  # quotas for n_val=5: 2.5, 1.5, 1.0
    _, va = train_val_indices(y, 5, seed=3)
    np.testing.assert_array_equal(np.bincount(y[va], minlength=3), [3, 1, 1])  # tie 0.5/0.5 -> lower class id


@pytest.mark.parametrize(("y", "n_val", "pattern"), [
    (np.arange(10), 10, r"n_val must be in 0\.\.9 for 10 training images, got 10"),
    (np.arange(10), -1, r"n_val must be in 0\.\.9"),
    (np.array([0.0, 1.0]), 1, "non-negative integer labels"),
    (np.array([[0, 1]]), 1, "1-d array"),
    (np.array([0, -1]), 1, "non-negative"),
])
def test_bad_arguments(y, n_val, pattern):
    with pytest.raises(ValueError, match=pattern):
        train_val_indices(y, n_val)
