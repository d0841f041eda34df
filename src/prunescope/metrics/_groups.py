"""Fast grouped sums (integer group codes + ``numpy.bincount``); internal to metrics."""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd


def group_codes(frame: pd.DataFrame, keys: Sequence[str]) -> tuple[np.ndarray, pd.DataFrame]:
    """Integer group code per row ``(N,)`` and the key frame of the groups ``(G, len(keys))``.

    Groups are numbered in order of first appearance; NaN keys form their own group.
    """
    codes = frame.groupby(list(keys), sort=False, dropna=False).ngroup().to_numpy()
    # groups are numbered by first appearance, so the running maximum steps up exactly there
    first = np.flatnonzero(np.diff(np.maximum.accumulate(codes), prepend=-1) > 0)
    key_frame = frame.iloc[first][list(keys)].reset_index(drop=True)
    return codes, key_frame


def gsum(codes: np.ndarray, values: np.ndarray, n_groups: int) -> np.ndarray:
    """Sum of ``values`` ``(N,)`` per group, float64 ``(G,)``."""
    return np.bincount(codes, weights=np.asarray(values, dtype=np.float64), minlength=n_groups)
