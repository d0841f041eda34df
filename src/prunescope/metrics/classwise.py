"""Per-class metrics, balances and intensification ratios (SPEC 2).

All quantities are fractions in [0, 1] (not percent) unless stated otherwise.
"""
from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Literal

import numpy as np
import pandas as pd

from prunescope.metrics._groups import gsum
from prunescope.metrics.tidy import DENSE_METHOD, PARENT_KEYS, check_and_group, key_columns, validate_counts

Metric = Literal["recall", "precision", "f1"]
METRICS: tuple[str, ...] = ("recall", "precision", "f1")

#: Columns :func:`per_class` adds to a tidy frame.
CLASSWISE_COLUMNS: tuple[str, ...] = ("metric", "value", "accuracy", "B", "Bn", "balanced")
#: Columns :func:`pair_with_dense` produces besides the pruned row's keys.
PAIRED_COLUMNS: tuple[str, ...] = (
    "metric", "value_before", "value_after", "accuracy_before", "accuracy_after",
    "B_before", "B_after", "Bn_before", "Bn_after", "I", "balanced",
)


class ImbalanceWarning(UserWarning):
    """A test set has unequal class supports: sum_c B = 0 and sum_c Bn = 0 (SPEC 2) do not hold."""


def per_class(frame: pd.DataFrame, metric: Metric = "recall") -> pd.DataFrame:
    """Per-class metric value, accuracy, balance and normalized balance (SPEC 2).

    Parameters
    ----------
    frame:
        Tidy count frame (docs/architecture.md), N rows.
    metric:
        ``"recall"`` (primary): R^c = correct / support; ``"precision"``: P^c = correct /
        predicted (NaN for a class never predicted); ``"f1"``: F^c = 2 P R / (P + R) computed by
        the identity F^c = 2 correct / (support + predicted) wherever the class is present
        (support > 0), NaN where it is absent (recall undefined). A present class that is never
        predicted has R = 0 and P = 0/0; it gets F = 0, the limit of 2PR/(P + R) at R = 0 for
        any P, so the most collapsed class stays in the F-score slope instead of dropping out.

    Returns
    -------
    The input rows (all key and count columns, same order) plus

    * ``metric`` (str), ``value`` -- the per-class metric, fraction;
    * ``accuracy`` -- A = sum_c correct / sum_c support of the same evaluation (model, method,
      ratio, distribution and extra keys), fraction;
    * ``B`` = value - A and ``Bn`` = B / A (NaN when A = 0);
    * ``balanced`` (bool) -- all class supports of the evaluation are equal. For recall on a
      balanced set sum_c B = sum_c Bn = 0 exactly; when any evaluation is unbalanced an
      :class:`ImbalanceWarning` is emitted and ``balanced`` is False on its rows.
    """
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {METRICS}, got {metric!r}")
    validate_counts(frame)
    codes, groups = check_and_group(frame)
    g = len(groups)
    support = frame["support"].to_numpy(np.float64)
    predicted = frame["predicted"].to_numpy(np.float64)
    correct = frame["correct"].to_numpy(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        acc_g = gsum(codes, correct, g) / gsum(codes, support, g)
        if metric == "recall":
            value = correct / support
        elif metric == "precision":
            value = correct / predicted
        else:
            value = np.where(support > 0, 2.0 * correct / (support + predicted), np.nan)
    value = np.where(np.isfinite(value), value, np.nan)
    acc_g = np.where(np.isfinite(acc_g), acc_g, np.nan)
    acc = acc_g[codes]
    smax = np.full(g, -np.inf)
    smin = np.full(g, np.inf)
    np.maximum.at(smax, codes, support)
    np.minimum.at(smin, codes, support)
    balanced = (smax == smin)[codes]
    if not balanced.all():
        n_bad = int((smax != smin).sum())
        warnings.warn(
            f"{n_bad} of {g} evaluations have unequal class supports: sum_c B = 0 and "
            "sum_c Bn = 0 do not hold for them (SPEC 2); see the 'balanced' column and "
            "consider model_alpha(..., intercept=True)",
            ImbalanceWarning, stacklevel=2,
        )
    b = value - acc
    with np.errstate(divide="ignore", invalid="ignore"):
        bn = np.where(acc > 0, b / acc, np.nan)
    out = frame.copy()
    out["metric"] = metric
    out["value"] = value
    out["accuracy"] = acc
    out["B"] = b
    out["Bn"] = bn
    out["balanced"] = balanced
    return out


def pair_with_dense(classwise: pd.DataFrame, parent_keys: Sequence[str] = PARENT_KEYS) -> pd.DataFrame:
    """Pair each pruned row with its dense parent and compute the intensification ratio I (SPEC 2).

    Parameters
    ----------
    classwise:
        Output of :func:`per_class` (dense rows have ``method == "dense"``).
    parent_keys:
        Columns that identify the dense parent of a pruned row (default: dataset, arch, model,
        distribution, cls). Add extra keys that the dense row shares (e.g. ``seed``); keys the
        dense row lacks (e.g. ``level``) must not be listed.

    Returns
    -------
    One row per pruned row (same key columns, in the same order; extra keys pass through) plus
    ``metric``, ``value_before``, ``value_after``, ``accuracy_before``, ``accuracy_after``,
    ``B_before``, ``B_after``, ``Bn_before``, ``Bn_after``,
    ``I`` = Bn_after / Bn_before (NaN where Bn_before is 0 or undefined -- never dropped; counted
    per model by :func:`prunescope.metrics.model_alpha` as ``n_undefined_I``), and ``balanced``
    (both evaluations balanced). Raises ``ValueError`` if a pruned row has no dense parent or a
    parent is not unique.
    """
    missing = [c for c in (*parent_keys, "method", *CLASSWISE_COLUMNS) if c not in classwise.columns]
    if missing:
        raise ValueError(f"classwise frame lacks {missing}; build it with per_class(tidy)")
    is_dense = (classwise["method"] == DENSE_METHOD).to_numpy()
    keys = [c for c in key_columns(classwise) if c not in CLASSWISE_COLUMNS]
    codes = classwise.groupby(list(parent_keys), sort=False, dropna=False).ngroup().to_numpy()
    dense_rows = np.flatnonzero(is_dense)
    dense_codes = codes[dense_rows]
    if dense_codes.size and np.bincount(dense_codes).max() > 1:
        dup = pd.Series(dense_codes).duplicated().to_numpy()
        row = classwise.iloc[dense_rows[dup][:1]][list(parent_keys)].iloc[0].to_dict()
        raise ValueError(f"more than one dense row for parent {row}; add the distinguishing key "
                         "(e.g. 'seed') to parent_keys")
    parent_of = np.full(int(codes.max(initial=-1)) + 1, -1, dtype=np.int64)
    parent_of[dense_codes] = dense_rows
    pruned_rows = np.flatnonzero(~is_dense)
    parent = parent_of[codes[pruned_rows]]
    orphan = parent < 0
    if orphan.any():
        row = classwise.iloc[pruned_rows[orphan][:1]][list(parent_keys)].iloc[0].to_dict()
        raise ValueError(f"{int(orphan.sum())} pruned rows have no dense parent, e.g. {row}: "
                         "evaluate the dense model (method='dense', ratio=1.0) on the same "
                         "distribution")
    out = classwise.iloc[pruned_rows][keys].reset_index(drop=True)
    out["metric"] = classwise["metric"].to_numpy()[pruned_rows]
    for name in ("value", "accuracy", "B", "Bn"):
        col = classwise[name].to_numpy(np.float64)
        out[f"{name}_before"] = col[parent]
        out[f"{name}_after"] = col[pruned_rows]
    before = out["Bn_before"].to_numpy()
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio_i = np.where(before != 0, out["Bn_after"].to_numpy() / before, np.nan)
    out["I"] = np.where(np.isfinite(ratio_i), ratio_i, np.nan)
    bal = classwise["balanced"].to_numpy(bool)
    out["balanced"] = bal[parent] & bal[pruned_rows]
    return out[[*keys, *PAIRED_COLUMNS]]


def intensification(frame: pd.DataFrame, metric: Metric = "recall",
                    parent_keys: Sequence[str] = PARENT_KEYS) -> pd.DataFrame:
    """``pair_with_dense(per_class(frame, metric), parent_keys)``: tidy counts -> paired frame."""
    return pair_with_dense(per_class(frame, metric), parent_keys)


def correct_share_variance(frame: pd.DataFrame, per: float = 1000.0) -> pd.DataFrame:
    """The "recall variance" of the paper's Table 11 as the authors' code computes it (SPEC 8):
    per evaluation, the sample variance (ddof 1) over classes of ``correct_c / per``, i.e. of
    the correct counts over 1,000. It equals the variance of recall (up to the ddof) only when
    every class holds ``per`` test images (Fashion-MNIST, CIFAR-10); on MNIST (892 to 1,135 per
    class) it is about 100 times larger.

    Parameters
    ----------
    frame:
        A tidy count frame (one row per class of each evaluation).
    per:
        The divisor (the code's assumed images per class).

    Returns
    -------
    One row per evaluation (every key column but ``cls``) with ``table11_var``.
    """
    validate_counts(frame)
    keys = [c for c in key_columns(frame) if c != "cls"]
    share = frame[keys].assign(table11_var=frame["correct"].to_numpy(np.float64) / per)
    return share.groupby(keys, sort=False, dropna=False)["table11_var"].var(ddof=1).reset_index()


__all__ = [
    "CLASSWISE_COLUMNS", "ImbalanceWarning", "METRICS", "PAIRED_COLUMNS",
    "correct_share_variance", "intensification", "pair_with_dense", "per_class",
]
