"""Tidy per-class count frames: the input of every metric (docs/architecture.md, SPEC 2).

A tidy frame has one row per (dataset, arch, method, ratio, model, distribution, cls) with the
integer counts

* ``support``   -- samples whose true class is ``cls`` (row sum of the confusion matrix),
* ``predicted`` -- predictions equal to ``cls`` (column sum),
* ``correct``   -- samples of class ``cls`` predicted as ``cls`` (diagonal).

The dense (unpruned) model of a seed appears with ``method == "dense"`` and ``ratio == 1.0``.
Any further column (for example ``level`` for iterative pruning, or ``seed``) is an extra key:
it is carried through every function of :mod:`prunescope.metrics` untouched.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from prunescope.metrics._groups import group_codes

#: Key columns every tidy frame has, in this order.
KEY_COLUMNS: tuple[str, ...] = ("dataset", "arch", "method", "ratio", "model", "distribution", "cls")
#: Count columns every tidy frame has (int64, >= 0).
COUNT_COLUMNS: tuple[str, ...] = ("support", "predicted", "correct")
#: Keys that identify the dense parent of a pruned row (all keys but method and ratio).
PARENT_KEYS: tuple[str, ...] = ("dataset", "arch", "model", "distribution", "cls")
#: The method name (and ratio) of the unpruned model.
DENSE_METHOD = "dense"
DENSE_RATIO = 1.0
#: Default name of the nominal (unshifted) test distribution.
NOMINAL = "nominal"


def key_columns(frame: pd.DataFrame) -> list[str]:
    """All key columns of ``frame``: every column that is not a count, in frame order."""
    return [c for c in frame.columns if c not in COUNT_COLUMNS]


def validate(frame: pd.DataFrame) -> pd.DataFrame:
    """Check that ``frame`` is a tidy count frame and return it unchanged.

    Raises ``ValueError`` naming the problem: a missing key or count column, negative or
    non-integer counts, ``correct`` larger than ``support`` or ``predicted``, or a duplicated
    key (two rows for the same class of the same model).
    """
    validate_counts(frame)
    check_and_group(frame)
    return frame


def validate_counts(frame: pd.DataFrame) -> None:
    """The column and count checks of :func:`validate` (all but the duplicate-key check)."""
    missing = [c for c in (*KEY_COLUMNS, *COUNT_COLUMNS) if c not in frame.columns]
    if missing:
        raise ValueError(
            f"tidy frame lacks column(s) {missing}; it needs {list(KEY_COLUMNS + COUNT_COLUMNS)} "
            "(build it with prunescope.metrics.from_confusion or from_predictions)"
        )
    counts = frame[list(COUNT_COLUMNS)]
    if not all(pd.api.types.is_integer_dtype(counts[c]) for c in COUNT_COLUMNS):
        raise ValueError(f"count columns {list(COUNT_COLUMNS)} must have an integer dtype, "
                         f"got {dict(counts.dtypes.astype(str))}")
    if (counts.to_numpy() < 0).any():
        raise ValueError("counts must be >= 0; found a negative support/predicted/correct")
    bad = (frame["correct"] > frame["support"]) | (frame["correct"] > frame["predicted"])
    if bad.any():
        row = frame.loc[bad].iloc[0].to_dict()
        raise ValueError(f"correct exceeds support or predicted in row {row}: counts must come "
                         "from one confusion matrix (correct = diagonal, support = row sum, "
                         "predicted = column sum)")


def check_and_group(frame: pd.DataFrame) -> tuple[np.ndarray, pd.DataFrame]:
    """Evaluation group code per row ``(N,)`` (all keys but ``cls``) and the ``(G, keys)`` frame
    of the evaluations; raises ``ValueError`` on a duplicated (evaluation, cls) key."""
    eval_keys = [c for c in key_columns(frame) if c != "cls"]
    codes, groups = group_codes(frame, eval_keys)
    cls_codes, cls_levels = pd.factorize(frame["cls"])
    pair = codes.astype(np.int64) * max(len(cls_levels), 1) + cls_codes
    if pair.size and np.bincount(pair).max() > 1:
        dup = pd.Series(pair).duplicated().to_numpy()
        row = frame.loc[dup, key_columns(frame)].iloc[0].to_dict()
        raise ValueError(f"duplicated key {row}: each (model, ratio, method, distribution, cls, "
                         "extra keys) must appear once")
    return codes, groups


def from_confusions(confusions: np.ndarray, keys: pd.DataFrame) -> pd.DataFrame:
    """Tidy rows from G confusion matrices at once.

    Parameters
    ----------
    confusions:
        Integer array of shape ``(G, C, C)``; ``confusions[g, i, j]`` counts samples of true class
        ``i`` predicted as ``j`` (rows true, columns predicted, as ``prunescope.train.evaluate``).
    keys:
        Frame with G rows holding the key columns of each matrix: at least ``dataset, arch,
        method, ratio, model, distribution`` (``distribution`` defaults to ``"nominal"`` when
        absent); any extra column is copied to every class row of its matrix.

    Returns
    -------
    pandas.DataFrame with ``G * C`` rows: the key columns, ``cls`` (int64, 0..C-1) and
    ``support, predicted, correct`` (int64).
    """
    cms = np.asarray(confusions)
    if cms.ndim != 3 or cms.shape[1] != cms.shape[2]:
        raise ValueError(f"confusions must have shape (G, C, C), got {cms.shape}")
    if not np.issubdtype(cms.dtype, np.integer):
        if not np.all(np.isfinite(cms)) or not np.array_equal(cms, np.round(cms)):
            raise ValueError("confusion counts must be whole numbers")
    if cms.size and cms.min() < 0:
        raise ValueError("confusion counts must be >= 0")
    if len(keys) != cms.shape[0]:
        raise ValueError(f"keys has {len(keys)} rows but there are {cms.shape[0]} matrices")
    if "cls" in keys.columns:
        raise ValueError("keys must not contain 'cls': one row per class is created here")
    g, c, _ = cms.shape
    cms = cms.astype(np.int64, copy=False)
    k = keys.reset_index(drop=True)
    if "distribution" not in k.columns:
        k = k.assign(distribution=NOMINAL)
    missing = [col for col in KEY_COLUMNS[:-1] if col not in k.columns]
    if missing:
        raise ValueError(f"keys lacks column(s) {missing}; needs {list(KEY_COLUMNS[:-1])}")
    out = k.loc[np.repeat(np.arange(g), c)].reset_index(drop=True)
    out["ratio"] = out["ratio"].astype(np.float64)
    out["cls"] = np.tile(np.arange(c, dtype=np.int64), g)
    out["support"] = cms.sum(axis=2).reshape(-1)
    out["predicted"] = cms.sum(axis=1).reshape(-1)
    out["correct"] = np.diagonal(cms, axis1=1, axis2=2).reshape(-1)
    order = [*KEY_COLUMNS, *[col for col in k.columns if col not in KEY_COLUMNS], *COUNT_COLUMNS]
    return out[order]


def from_confusion(confusion: np.ndarray, **keys: Any) -> pd.DataFrame:
    """Tidy rows (one per class) from one ``(C, C)`` confusion matrix (rows true, cols predicted).

    ``keys`` are the key values of this evaluation: ``dataset, arch, method, ratio, model`` and
    optionally ``distribution`` (default ``"nominal"``) and any extra key (e.g. ``level=3``).
    Returns a frame of C rows (see :func:`from_confusions`).
    """
    cm = np.asarray(confusion)
    if cm.ndim != 2:
        raise ValueError(f"confusion must have shape (C, C), got {cm.shape}")
    return from_confusions(cm[None], pd.DataFrame([dict(keys)]))


def confusion_from_predictions(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> np.ndarray:
    """Confusion matrix ``(C, C)`` int64 (rows true, cols predicted) from label vectors ``(N,)``."""
    yt = np.asarray(y_true)
    yp = np.asarray(y_pred)
    if yt.shape != yp.shape or yt.ndim != 1:
        raise ValueError(f"y_true and y_pred must be 1-D of equal length, got {yt.shape} and {yp.shape}")
    for name, y in (("y_true", yt), ("y_pred", yp)):
        if y.size and (y.min() < 0 or y.max() >= num_classes):
            raise ValueError(f"{name} has values outside 0..{num_classes - 1} (found "
                             f"{int(y.min())}..{int(y.max())}); num_classes must cover every "
                             "label and every class the model can predict")
    flat = yt.astype(np.int64) * num_classes + yp.astype(np.int64)
    return np.bincount(flat, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def from_predictions(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int, **keys: Any) -> pd.DataFrame:
    """Tidy rows (one per class) from true labels and predictions, both int ``(N,)`` in 0..C-1.

    ``keys`` as in :func:`from_confusion`. Returns a frame of ``num_classes`` rows.
    """
    return from_confusion(confusion_from_predictions(y_true, y_pred, num_classes), **keys)

