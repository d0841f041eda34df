"""Statistics of one dense/pruned model pair on one test set (issue 27; no seeds needed).

The across-seed t-tests of :mod:`prunescope.stats.families` need several models per cell; a user
with one dense and one pruned model can still ask whether pruning changed a class beyond the
noise of *test-set sampling*:

* :func:`mcnemar_by_class`: per class, the exact McNemar test (statsmodels) on the paired
  right/wrong outcomes of the two models on that class's images, Holm-corrected across classes;
* :func:`pair_bootstrap`: a stratified bootstrap over test images (each class's images drawn
  with replacement within the class, so supports stay fixed) giving percentile intervals of
  alpha (SPEC 2), of each class's recall change and of the largest excess accuracy gap
  ``max_c EAG_c``, ``EAG_c = (R^c_dense - R^c_pruned) - (A_dense - A_pruned)``.

Both hold the two models fixed: the uncertainty is that of the test images
(:data:`PAIR_UNCERTAINTY`), not seed-to-seed variation. All rates are fractions in [0, 1].
Pure NumPy/pandas/statsmodels (no torch).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from statsmodels.stats.contingency_tables import mcnemar

from prunescope.stats.tests import Correction, correct

#: what the single-pair intervals and tests measure, stated beside every result that has them
PAIR_UNCERTAINTY = ("test-set sampling: the two models are held fixed and only the test images "
                    "vary (exact McNemar per class; stratified bootstrap over test images); this "
                    "is not seed-to-seed variation, which needs several trained seeds")
#: columns of :func:`mcnemar_by_class`
MCNEMAR_COLUMNS = ("cls", "n", "both_right", "dense_only", "pruned_only", "both_wrong",
                   "p_raw", "p_corrected", "correction")


def _check(y: np.ndarray, dense: np.ndarray, pruned: np.ndarray, num_classes: int
           ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    y, dense, pruned = (np.asarray(a, dtype=np.int64) for a in (y, dense, pruned))
    if not (y.ndim == dense.ndim == pruned.ndim == 1 and len(y) == len(dense) == len(pruned)):
        raise ValueError(f"labels and both predictions must be (N,) on the same images, got "
                         f"{y.shape}, {dense.shape}, {pruned.shape}")
    for a in (y, dense, pruned):
        if len(a) and (a.min() < 0 or a.max() >= num_classes):
            raise ValueError(f"labels and predictions must lie in 0..{num_classes - 1}")
    return y, dense == y, pruned == y


def mcnemar_by_class(y: np.ndarray, pred_dense: np.ndarray, pred_pruned: np.ndarray,
                     num_classes: int, correction: Correction = "holm") -> pd.DataFrame:
    """Exact McNemar test per class on paired predictions, corrected across classes.

    Args:
        y: true labels, int ``(N,)``.
        pred_dense, pred_pruned: predicted classes of the two models on the same images, int
            ``(N,)``.
        num_classes: C.
        correction: ``"holm"`` (default) or ``"bonferroni"`` across the classes that have
            images (:func:`prunescope.stats.correct`).

    Returns:
        One row per class (C rows): ``cls``, ``n`` (its images), ``both_right``, ``dense_only``
        (right before pruning, wrong after), ``pruned_only``, ``both_wrong``, ``p_raw``
        (``statsmodels.stats.contingency_tables.mcnemar(table, exact=True)``: two-sided binomial
        test of ``dense_only`` vs ``pruned_only``; 1 when no image changed; NaN for a class
        without images), ``p_corrected``, ``correction``.
    """
    y, right_d, right_p = _check(y, pred_dense, pred_pruned, num_classes)
    rows = []
    for c in range(num_classes):
        on = y == c
        a, b = right_d[on], right_p[on]
        table = np.array([[np.sum(a & b), np.sum(a & ~b)], [np.sum(~a & b), np.sum(~a & ~b)]])
        p = float(mcnemar(table, exact=True).pvalue) if on.any() else np.nan
        rows.append((c, int(on.sum()), *(int(v) for v in table.ravel()), p))
    out = pd.DataFrame(rows, columns=list(MCNEMAR_COLUMNS[:7]))
    out["p_corrected"] = correct(out["p_raw"].to_numpy(), correction)
    out["correction"] = correction
    return out


@dataclass(frozen=True)
class PairBootstrap:
    """Percentile intervals of one model pair's statistics over test-set resamples.

    Attributes:
        summary: one row per statistic (``alpha``, ``max_eag``): ``statistic``, ``estimate``
            (on the test set itself), ``ci_low``, ``ci_high``, ``level``.
        classes: one row per class: ``cls``, ``recall_dense``, ``recall_pruned``,
            ``recall_change`` (pruned - dense), ``eag``, ``ci_low``, ``ci_high`` (of
            ``recall_change``), ``level``.
        n_resamples, seed: the bootstrap's resamples and its generator's seed.
        uncertainty: :data:`PAIR_UNCERTAINTY`.
    """

    summary: pd.DataFrame
    classes: pd.DataFrame
    n_resamples: int
    seed: int
    uncertainty: str = PAIR_UNCERTAINTY


def pair_statistics(right_dense: np.ndarray, right_pruned: np.ndarray, support: np.ndarray
                    ) -> dict[str, np.ndarray]:
    """Per-class recalls, alpha and max EAG from correct counts.

    Args:
        right_dense, right_pruned: correct predictions per class, ``(..., C)`` (any leading
            axes, e.g. resamples).
        support: images per class, ``(C,)``.

    Returns:
        ``recall_dense``, ``recall_pruned`` (``(..., C)``), ``alpha`` (``(...)``: SPEC 2's
        ``sum_c Bn_d Bn_p / sum_c Bn_d^2`` over classes with images, ``Bn = R / A - 1``),
        ``eag`` (``(..., C)``) and ``max_eag`` (``(...)``).
    """
    support = np.asarray(support, np.float64)
    has = support > 0
    n = support.sum()
    with np.errstate(divide="ignore", invalid="ignore"):
        r_d = np.where(has, right_dense / support, np.nan)
        r_p = np.where(has, right_pruned / support, np.nan)
        a_d = np.sum(right_dense, -1, keepdims=True) / n
        a_p = np.sum(right_pruned, -1, keepdims=True) / n
        bn_d = np.where(has, r_d / a_d - 1.0, 0.0)
        bn_p = np.where(has, r_p / a_p - 1.0, 0.0)
        sxx = np.sum(bn_d * bn_d, -1)
        alpha = np.where(sxx > 0, np.sum(bn_d * bn_p, -1) / sxx, np.nan)
    eag = (r_d - r_p) - (a_d - a_p)
    return {"recall_dense": r_d, "recall_pruned": r_p, "alpha": alpha, "eag": eag,
            "max_eag": np.nanmax(eag, -1)}


def pair_bootstrap(y: np.ndarray, pred_dense: np.ndarray, pred_pruned: np.ndarray,
                   num_classes: int, *, n_resamples: int = 2000, level: float = 0.99,
                   seed: int = 0) -> PairBootstrap:
    """Stratified bootstrap over test images of alpha, each class's recall change and max EAG.

    Resample b draws, for each class c in order, ``rng.integers(0, n_c, size=n_c)``-style
    indices (all resamples of a class in one ``(n_resamples, n_c)`` draw) from
    ``numpy.random.default_rng(seed)``: the same images for both models (the pair stays
    paired), class supports fixed. Intervals are the ``(1 - level) / 2`` and
    ``(1 + level) / 2`` quantiles of the resampled statistic (percentile method); a resample
    whose statistic is undefined (alpha when every class has the dense accuracy) is left out.

    Args:
        y, pred_dense, pred_pruned: int ``(N,)`` labels and the two models' predictions.
        num_classes: C.
        n_resamples: bootstrap resamples (default 2000).
        level: interval level (default 0.99, as the study's intervals).
        seed: the generator's seed.
    """
    if not (0 < level < 1) or n_resamples < 1:
        raise ValueError(f"level must lie in (0, 1) and n_resamples >= 1, got {level}, "
                         f"{n_resamples}")
    y, right_d, right_p = _check(y, pred_dense, pred_pruned, num_classes)
    rng = np.random.default_rng(seed)
    support = np.bincount(y, minlength=num_classes)
    boot_d = np.zeros((n_resamples, num_classes))
    boot_p = np.zeros((n_resamples, num_classes))
    for c in range(num_classes):
        if support[c]:
            idx = rng.integers(0, support[c], size=(n_resamples, support[c]))
            boot_d[:, c] = right_d[y == c][idx].sum(1)
            boot_p[:, c] = right_p[y == c][idx].sum(1)
    full = pair_statistics(np.bincount(y, right_d, num_classes),
                           np.bincount(y, right_p, num_classes), support)
    boot = pair_statistics(boot_d, boot_p, support)
    q = [(1 - level) / 2, (1 + level) / 2]
    summary = pd.DataFrame(
        [(s, float(full[s]), *np.nanquantile(boot[s], q)) for s in ("alpha", "max_eag")],
        columns=["statistic", "estimate", "ci_low", "ci_high"])
    summary["level"] = level
    change = boot["recall_pruned"] - boot["recall_dense"]
    lo, hi = np.nanquantile(change, q, axis=0) if num_classes else ([], [])
    classes = pd.DataFrame({"cls": np.arange(num_classes), "recall_dense": full["recall_dense"],
                            "recall_pruned": full["recall_pruned"],
                            "recall_change": full["recall_pruned"] - full["recall_dense"],
                            "eag": full["eag"], "ci_low": lo, "ci_high": hi, "level": level})
    return PairBootstrap(summary, classes, n_resamples, seed)


__all__ = ["MCNEMAR_COLUMNS", "PAIR_UNCERTAINTY", "PairBootstrap", "mcnemar_by_class",
           "pair_bootstrap", "pair_statistics"]
