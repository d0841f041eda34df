"""Underrepresented classes: recall change against training-set size, and pruning-identified
exemplars (PIEs, Hooker et al. 2019, "What Do Compressed Deep Neural Networks Forget?").

Pure functions over tidy frames and prediction arrays; no torch.

* :func:`count_slopes`: per model, the least-squares slope (with intercept) of the change of
  normalised recall balance ``Bn_t^c - Bn^c`` on ``log10`` of the class's training count. A
  positive slope means the rare classes lose more (relative to accuracy) than the frequent ones
  (the change of Bn grows with the class's size).
  Its 99% CI over models comes from :func:`prunescope.stats.mean_ci` (``value="slope"``,
  ``null=0``), exactly as alpha's does.
* :func:`modal_labels` / :func:`pie_mask`: Hooker et al.'s definition: a test image is a PIE of a
  cell at ratio t when the modal label over the pruned models differs from the modal label over
  the dense models. Ties in a mode go to the smallest class id (deterministic; documented in
  docs/underrepresented.md).
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

@dataclass(frozen=True, eq=False)
class Exemplars:
    """Pruning-identified exemplars of a study (docs/underrepresented.md; built by
    :func:`prunescope.study.results.load_exemplars`).

    Attributes:
        summary: one row per cell (dataset, arch, method, ratio, distribution): ``n_images``,
            ``n_dense``/``n_pruned`` (models whose predictions were found), ``n_pies``,
            ``pie_fraction``.
        per_class: one row per (cell, cls): ``n_pies`` and ``share`` (of the cell's PIEs).
        accuracy: one row per (cell, model, group) with ``group`` in ``dense``/``pruned`` and
            ``acc_pie``, ``acc_rest``: the model's accuracy on the cell's PIEs and on the other
            test images.
        images: one row per PIE: cell keys, ``index`` (into the official test split), ``label``,
            ``dense_label``, ``pruned_label`` (the modal labels).
        thumbnails: ``{index: uint8 (H, W, C)}`` of nominal test images listed in ``images``,
            at most ``gallery`` per nominal cell.
        classes: class names of each (base) dataset label.
    """

    summary: pd.DataFrame
    per_class: pd.DataFrame
    accuracy: pd.DataFrame
    images: pd.DataFrame
    thumbnails: dict[tuple[str, int], np.ndarray]
    classes: dict[str, tuple[str, ...]]


#: columns of :func:`count_slopes`'s output besides the model keys
SLOPE_COLUMNS = ("slope", "n_classes")


def slope_points(paired: pd.DataFrame, train_counts: pd.DataFrame) -> pd.DataFrame:
    """The points :func:`count_slopes` fits: ``paired`` rows whose class has a training count,
    plus ``x`` = log10 of the class's training images and ``y`` = ``Bn_after - Bn_before``; rows
    with an undefined ``y`` are left out.

    Args:
        paired: :func:`prunescope.metrics.intensification` output (``Bn_before``, ``Bn_after``,
            one row per pruned (model, class)).
        train_counts: ``dataset, cls, train_count`` (images of class ``cls`` in the training
            split the models of ``dataset`` were trained on; ``dataset`` is the results' label,
            e.g. ``mnist-lt100``).
    """
    m = paired.merge(train_counts[["dataset", "cls", "train_count"]], on=["dataset", "cls"],
                     how="inner", validate="many_to_one")
    m = m.assign(x=np.log10(m["train_count"].to_numpy(np.float64)),
                 y=(m["Bn_after"] - m["Bn_before"]).to_numpy(np.float64))
    return m[np.isfinite(m["y"].to_numpy())]


def count_slopes(paired: pd.DataFrame, train_counts: pd.DataFrame,
                 model_keys: Sequence[str] = ("dataset", "arch", "method", "ratio", "model",
                                              "distribution")) -> pd.DataFrame:
    """Per-model slope of the change of normalised recall balance on log10 training count.

    Args:
        paired, train_counts: as for :func:`slope_points`.
        model_keys: the columns identifying one model's evaluation.

    Returns:
        One row per model: ``model_keys``, ``slope`` (change of Bn per decade of training
        images; NaN when the classes' counts do not vary or a Bn is undefined) and ``n_classes``
        (classes used).
    """
    keys = list(model_keys)
    m = slope_points(paired, train_counts)
    g = m.groupby(keys, sort=True, dropna=False)
    xm = g["x"].transform("mean")
    ym = g["y"].transform("mean")
    m = m.assign(sxy=(m["x"] - xm) * (m["y"] - ym), sxx=(m["x"] - xm) ** 2)
    agg = m.groupby(keys, sort=True, dropna=False).agg(sxy=("sxy", "sum"), sxx=("sxx", "sum"),
                                                       n_classes=("y", "size")).reset_index()
    with np.errstate(divide="ignore", invalid="ignore"):
        slope = agg["sxy"].to_numpy() / agg["sxx"].to_numpy()
    flat = agg["sxx"].to_numpy() <= 1e-12 * np.maximum(1.0, agg["n_classes"].to_numpy())
    agg["slope"] = np.where(flat, np.nan, slope)
    agg["n_classes"] = agg["n_classes"].astype(np.int64)
    return agg[[*keys, *SLOPE_COLUMNS]]


def modal_labels(preds: np.ndarray, num_classes: int) -> np.ndarray:
    """The most frequent label of each image over models; ties go to the smallest class id.

    Args:
        preds: predicted classes, int ``(K, N)`` (K models, N images), values in
            ``0..num_classes-1``.
        num_classes: number of classes.

    Returns:
        int64 ``(N,)``.
    """
    preds = np.asarray(preds)
    if preds.ndim != 2 or preds.shape[0] < 1:
        raise ValueError(f"preds must be (K >= 1 models, N images), got shape {preds.shape}")
    if preds.size and (preds.min() < 0 or preds.max() >= num_classes):
        raise ValueError(f"predictions must lie in 0..{num_classes - 1}")
    n = preds.shape[1]
    votes = np.zeros((num_classes, n), dtype=np.int64)
    cols = np.broadcast_to(np.arange(n), preds.shape)
    np.add.at(votes, (preds.astype(np.int64), cols), 1)
    return votes.argmax(axis=0).astype(np.int64)  # argmax takes the first maximum: smallest id


def pie_mask(dense_preds: np.ndarray, pruned_preds: np.ndarray, num_classes: int
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pruning-identified exemplars of one cell (Hooker et al. 2019).

    Args:
        dense_preds: predictions of the dense models, int ``(K_dense, N)``.
        pruned_preds: predictions of the pruned models of the cell, int ``(K_pruned, N)``, on
            the same N images in the same order.
        num_classes: number of classes.

    Returns:
        ``(is_pie bool (N,), dense modal label int64 (N,), pruned modal label int64 (N,))``.
    """
    dense_preds, pruned_preds = np.asarray(dense_preds), np.asarray(pruned_preds)
    if dense_preds.ndim != 2 or pruned_preds.ndim != 2 or \
            dense_preds.shape[1] != pruned_preds.shape[1]:
        raise ValueError(f"dense and pruned predictions must be (K, N) on the same N images, got "
                         f"{dense_preds.shape} and {pruned_preds.shape}")
    d = modal_labels(dense_preds, num_classes)
    p = modal_labels(pruned_preds, num_classes)
    return d != p, d, p


def pie_class_share(is_pie: np.ndarray, y: np.ndarray, num_classes: int) -> np.ndarray:
    """Share of a cell's PIEs whose true class is ``c``, float ``(num_classes,)`` (NaN for every
    class when the cell has no PIE)."""
    n = int(np.count_nonzero(is_pie))
    counts = np.bincount(np.asarray(y)[np.asarray(is_pie, bool)], minlength=num_classes)
    return counts / n if n else np.full(num_classes, np.nan)


def accuracy_on(preds: np.ndarray, y: np.ndarray, subset: np.ndarray) -> np.ndarray:
    """Accuracy of each model on the images of ``subset``.

    Args:
        preds: int ``(K, N)``; y: true labels int ``(N,)``; subset: bool ``(N,)``.

    Returns:
        float ``(K,)`` in [0, 1]; NaN when ``subset`` is empty.
    """
    subset = np.asarray(subset, bool)
    n = int(subset.sum())
    if n == 0:
        return np.full(np.asarray(preds).shape[0], np.nan)
    return (np.asarray(preds)[:, subset] == np.asarray(y)[subset]).mean(axis=1)


__all__ = ["Exemplars", "SLOPE_COLUMNS", "accuracy_on", "count_slopes", "modal_labels",
           "pie_class_share", "pie_mask", "slope_points"]
