"""Paired tests of fine-tuning objectives against cross-entropy (docs/mitigation.md).

A pruned model fine-tuned with objective o and the one fine-tuned with ``ce`` at the same
(method, ratio) share their dense parent, so the two per-model values pair by ``model``: one
two-sided paired t-test per (cell, ratio, objective) (:func:`scipy.stats.ttest_rel`, through
:func:`prunescope.stats.ttest`), corrected within one family per ratio column as SPEC 5's
method pairs are (Bonferroni or Holm over the column's rows: every objective compared with
``ce`` at that ratio, an undefined row included). No torch.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from prunescope.stats.tests import correct, ttest

__all__ = ["OBJECTIVE_TEST_COLUMNS", "objective_tests"]

#: columns of :func:`objective_tests` after the cell keys
OBJECTIVE_TEST_COLUMNS = ("value", "ratio", "objective", "reference", "n", "mean1", "mean2",
                          "mean_diff", "t", "df", "p_raw", "family_size", "correction",
                          "p_corrected")


def objective_tests(models: pd.DataFrame, value: str, cell: Sequence[str] = (
                    "dataset", "arch", "method", "distribution"), reference: str = "ce",
                    correction: str = "bonferroni") -> pd.DataFrame:
    """Two-sided paired t-tests of ``value`` (e.g. ``alpha``, ``max_eag``, ``accuracy_after``)
    of every objective against ``reference``, per (cell, ratio).

    Args:
        models: one row per pruned model: ``cell`` keys, ``ratio``, ``objective``, ``model``
            and ``value`` (e.g. :func:`prunescope.metrics.model_alpha`'s output).
        value: the column compared.
        cell, reference, correction: the fixed keys, the objective compared against, and
            ``bonferroni`` or ``holm``.

    Returns:
        One row per (cell, ratio, objective other than ``reference``): the cell keys and
        :data:`OBJECTIVE_TEST_COLUMNS`: ``n`` models paired, means of the objective (``mean1``)
        and of ``reference`` (``mean2``), their difference, ``t``, ``df``, raw p and p corrected
        over the family (the rows of one (cell, ratio) column; NaN where fewer than 2 pairs).
    """
    keys = [*cell, "ratio"]
    rows = []
    for key, group in models.groupby(keys, sort=True, dropna=False):
        ref = group[group["objective"] == reference].set_index("model")[value]
        family = []
        for obj, sub in group[group["objective"] != reference].groupby("objective", sort=False):
            both = sub.set_index("model")[value].to_frame("a").join(ref.rename("b"), how="inner")
            both = both.dropna()
            row = dict(zip(keys, key)) | {"value": value, "objective": obj,
                                          "reference": reference, "n": len(both)}
            if len(both) >= 2:
                res = ttest(both["a"].to_numpy(), both["b"].to_numpy(), paired=True,
                            alternative="two-sided")
                row |= {k: res[k] for k in ("mean1", "mean2", "mean_diff", "t", "df", "p_raw")}
            else:
                row |= {"mean1": both["a"].mean(), "mean2": both["b"].mean(),
                        "mean_diff": (both["a"] - both["b"]).mean(), "t": np.nan,
                        "df": np.nan, "p_raw": np.nan}
            family.append(row)
        p = correct(np.array([r["p_raw"] for r in family], dtype=np.float64), correction,
                    count_undefined=True)
        for r, pc in zip(family, p):
            rows.append(r | {"family_size": len(family), "correction": correction,
                             "p_corrected": pc})
    return pd.DataFrame(rows, columns=[*cell, *OBJECTIVE_TEST_COLUMNS])
