"""The validation hold-out (SPEC 4): a seeded, stratified draw from the training split (or from
its long-tailed subset, :mod:`prunescope.data.imbalance`)."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from prunescope.data.imbalance import imbalanced_indices


def val_quota(counts: np.ndarray | list[int], n_val: int) -> np.ndarray:
    """Validation images per class of :func:`train_val_indices`: ``n_val * count_c / N`` rounded
    by largest remainder (ties to the lower class id), summing to exactly ``n_val``.

    Args:
        counts: images per class of the split the hold-out is drawn from, int ``(C,)``.
        n_val: validation size, ``0 <= n_val <= sum(counts)``.

    Returns:
        int64 ``(C,)``.
    """
    counts = np.asarray(counts, dtype=np.int64)
    quota = n_val * counts / counts.sum()
    take = np.floor(quota).astype(np.int64)
    short = n_val - int(take.sum())
    take[np.argsort(-(quota - take), kind="stable")[:short]] += 1
    return take


def train_val_indices(y: np.ndarray, n_val: int = 5000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Split training indices into a training part and a validation hold-out.

    Each class gets ``n_val * count_c / N`` validation images, rounded by largest remainder (ties to
    the lower class id) so the total is exactly ``n_val``; which images is a seeded random draw within
    the class. Never a slice: CIFAR rows are sorted by class.

    Args:
        y: labels, integer ``(N,)``, values ``>= 0``.
        n_val: validation size, ``0 <= n_val < N``.
        seed: seed of the draw; the same (y, n_val, seed) always gives the same split.

    Returns:
        ``(train_idx, val_idx)``: sorted ``int64`` index arrays, disjoint, together ``0..N-1``.
    """
    y = np.asarray(y)
    if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer) or (y.size and y.min() < 0):
        raise ValueError(f"y must be a 1-d array of non-negative integer labels, got {y.dtype} shape {y.shape}")
    n = len(y)
    if not 0 <= n_val < n:
        raise ValueError(f"n_val must be in 0..{n - 1} for {n} training images, got {n_val}")
    take = val_quota(np.bincount(y), n_val)
    rng = np.random.default_rng(seed)
    val = [rng.permutation(np.flatnonzero(y == c))[:k] for c, k in enumerate(take)]
    val_idx = np.sort(np.concatenate(val)).astype(np.int64)
    train_mask = np.ones(n, dtype=bool)
    train_mask[val_idx] = False
    return np.flatnonzero(train_mask).astype(np.int64), val_idx


def training_split(y: np.ndarray, n_val: int, split_seed: int,
                   imbalance: Mapping[str, Any] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The training part and the validation hold-out of a model's training split, as indices into
    the full training split ``y``.

    Without ``imbalance`` this is :func:`train_val_indices` ``(y, n_val, split_seed)``. With it
    (a job's ``imbalance`` parameters: ``counts`` per class and the ``seed`` of the draw), the
    long-tailed split :func:`prunescope.data.imbalance.imbalanced_indices` is drawn first and the
    stratified hold-out is drawn from it, so validation is as imbalanced as training.

    Returns:
        ``(train_idx, val_idx)``: sorted int64 indices into ``y``, disjoint.
    """
    if imbalance is None:
        return train_val_indices(y, n_val, seed=split_seed)
    keep = imbalanced_indices(y, imbalance["counts"], int(imbalance["seed"]))
    tr, va = train_val_indices(np.asarray(y)[keep], n_val, seed=split_seed)
    return keep[tr], keep[va]
