"""The excess accuracy gap (Hashemizadeh et al. ICLR 2024, "Balancing Act"; docs/metrics.md):
how much more a class lost to pruning than the model as a whole.

Per class c of a pruned model (recall by default; precision or F-score when ``paired`` holds
those):

    EAG_c = (R^c_dense - R^c_pruned) - (A_dense - A_pruned)

A class with EAG_c > 0 lost more than the average loss of accuracy; on a balanced test set the
classes' EAG sum to 0. Per model: ``max_eag`` = max_c EAG_c (the worst-hit class's excess) and
``eag_spread`` = max_c - min_c EAG_c. Fractions, like recall. Pure NumPy/pandas.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = ["EAG_COLUMNS", "class_eag", "eag_summary"]

#: per-model columns :func:`prunescope.metrics.model_alpha` adds beside ``alpha``
EAG_COLUMNS: tuple[str, ...] = ("max_eag", "eag_spread")


def class_eag(paired: pd.DataFrame) -> np.ndarray:
    """EAG_c of every row of a paired frame (:func:`prunescope.metrics.pair_with_dense`), float64
    ``(rows,)``: ``(value_before - value_after) - (accuracy_before - accuracy_after)``; NaN where
    the class value is undefined (no support)."""
    before = paired["value_before"].to_numpy(np.float64)
    after = paired["value_after"].to_numpy(np.float64)
    acc_b = paired["accuracy_before"].to_numpy(np.float64)
    acc_a = paired["accuracy_after"].to_numpy(np.float64)
    return (before - after) - (acc_b - acc_a)


def eag_summary(codes: np.ndarray, g: int, eag: np.ndarray) -> dict[str, np.ndarray]:
    """Per group (``codes``: the group index of each row, ``g`` groups): ``max_eag`` and
    ``eag_spread`` (max - min) over the finite EAG_c, NaN for a group without one."""
    ok = np.isfinite(eag)
    hi = np.full(g, -np.inf)
    lo = np.full(g, np.inf)
    np.maximum.at(hi, codes[ok], eag[ok])
    np.minimum.at(lo, codes[ok], eag[ok])
    seen = np.isfinite(hi)
    return {"max_eag": np.where(seen, hi, np.nan), "eag_spread": np.where(seen, hi - lo, np.nan)}
