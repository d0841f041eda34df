"""Long-tailed (class-imbalanced) training splits.

Two profiles, both with the class order of the dataset (class 0 keeps the most images):

* ``exponential`` (the CIFAR-10-LT construction of Cao et al. 2019 and Cui et al. 2019): class
  ``c`` of ``C`` keeps ``floor(n_max * ratio ** (-c / (C - 1)))`` images;
* ``step`` (Buda et al. 2018): the first ``ceil(C / 2)`` classes keep ``n_max`` images, the
  other ``floor(C / 2)`` keep ``floor(n_max / ratio)``.

``n_max`` is the smallest class count of the full training split, so every class can supply its
share (MNIST: 5,421; the balanced Fashion-MNIST and CIFAR-10: 6,000 and 5,000). ``ratio`` is the
largest over the smallest count before flooring (``ratio = 1`` keeps ``n_max`` of every class).
Which images a class keeps is a seeded draw (:func:`imbalanced_indices`); the test sets are never
touched.
"""
from __future__ import annotations

import math

import numpy as np

#: the imbalance profiles :func:`class_counts` knows
PROFILES = ("exponential", "step")


def class_counts(available: np.ndarray | list[int], ratio: float, profile: str) -> np.ndarray:
    """Per-class image counts of a long-tailed split.

    Args:
        available: images per class in the full training split, int ``(C,)``, ``C >= 2``.
        ratio: largest / smallest class count, ``1 <= ratio <= min(available)`` (finite).
        profile: one of :data:`PROFILES`.

    Returns:
        int64 ``(C,)``: the images each class keeps, every one ``>= 1`` and ``<= available``.

    Raises:
        ValueError: an unknown profile, fewer than 2 classes, or a ratio out of range.
    """
    avail = np.asarray(available, dtype=np.int64)
    n_classes = len(avail)
    if profile not in PROFILES:
        raise ValueError(f"imbalance profile must be one of {', '.join(PROFILES)}, got {profile!r}")
    if n_classes < 2:
        raise ValueError(f"an imbalanced split needs at least 2 classes, got {n_classes}")
    n_max = int(avail.min())
    if not (math.isfinite(ratio) and 1 <= ratio <= n_max):
        raise ValueError(f"imbalance ratio must be in [1, {n_max}] (the smallest class has "
                         f"{n_max} training images), got {ratio}")
    c = np.arange(n_classes)
    if profile == "exponential":
        counts = np.floor(n_max * ratio ** (-c / (n_classes - 1)) + 1e-9)
    else:
        counts = np.where(c < math.ceil(n_classes / 2), n_max, np.floor(n_max / ratio + 1e-9))
    return counts.astype(np.int64)


def imbalanced_indices(y: np.ndarray, counts: np.ndarray | list[int], seed: int) -> np.ndarray:
    """Indices of the images a long-tailed split keeps: ``counts[c]`` images of each class ``c``,
    a seeded random draw within the class (the same ``(y, counts, seed)`` always gives the same
    images).

    Args:
        y: labels of the full training split, int ``(N,)`` with values in ``0..C-1``.
        counts: images to keep per class, int ``(C,)`` (:func:`class_counts`).
        seed: seed of the draw.

    Returns:
        Sorted int64 indices into ``y``, ``sum(counts)`` of them.
    """
    y = np.asarray(y)
    counts = np.asarray(counts, dtype=np.int64)
    have = np.bincount(y, minlength=len(counts))
    if len(have) != len(counts) or (counts > have).any() or (counts < 0).any():
        raise ValueError(f"counts {counts.tolist()} do not fit the class counts {have.tolist()}")
    rng = np.random.default_rng(seed)
    keep = [rng.permutation(np.flatnonzero(y == cls))[:k] for cls, k in enumerate(counts)]
    return np.sort(np.concatenate(keep)).astype(np.int64)
