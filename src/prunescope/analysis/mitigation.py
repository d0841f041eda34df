"""The mitigation comparison (docs/mitigation.md): fine-tuning objectives side by side.

From a study's tidy frame with an ``objective`` column: per (cell, objective, ratio) the 99 %
intervals of accuracy after pruning, alpha and the largest excess accuracy gap (``max_eag``);
two-sided paired t-tests of each objective against ``ce`` (pairs share the dense model, one
family per ratio column, :func:`prunescope.stats.objectives.objective_tests`); and for ``ceag``
the fraction of classes whose constraint ``EAG_c <= tolerance`` holds on the training split
(recorded by its jobs) and on the test split. Pure pandas; no torch.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd

from prunescope import metrics
from prunescope.analysis.cells import cell_ci, drop_orphans, model_alphas
from prunescope.catalog import objectives as registry
from prunescope.metrics.eag import class_eag
from prunescope.stats.objectives import objective_tests

__all__ = ["MITIGATION_VALUES", "Mitigation", "ce_only", "constraint_holds", "has_objectives",
           "mitigation"]

#: the per-model values compared: accuracy after pruning (fraction), alpha, max EAG (fraction)
MITIGATION_VALUES = ("accuracy_after", "alpha", "max_eag")
#: the keys of one comparison row
_CELL = ["dataset", "arch", "method", "distribution"]


@dataclass
class Mitigation:
    """What the report's "Mitigation" section shows.

    Attributes:
        models: one row per pruned model (``model_alpha``'s columns with ``objective``), only
            the (cell, method) pairs that have an objective other than ``ce``.
        summary: per (cell, objective, ratio, value in :data:`MITIGATION_VALUES`): ``n``,
            ``mean``, ``ci_low``, ``ci_high`` (99 %, t), ``value``.
        tests: :func:`~prunescope.stats.objectives.objective_tests` of every value, stacked.
        holds: per (cell, ratio, split ``train``/``test``) of ``ceag`` models: the mean fraction
            of classes with ``EAG_c <= tolerance`` and its 99 % interval; ``None`` without
            ``ceag`` rows.
    """

    models: pd.DataFrame
    summary: pd.DataFrame
    tests: pd.DataFrame
    holds: pd.DataFrame | None


def has_objectives(frame: pd.DataFrame) -> bool:
    """Whether ``frame`` holds models fine-tuned with an objective other than ``ce``."""
    return "objective" in frame.columns and bool((frame["objective"] != registry.DEFAULT).any())


def ce_only(frame: pd.DataFrame) -> pd.DataFrame:
    """The rows of ``frame`` fine-tuned with ``ce`` (and the dense ones): what the sections
    before "Mitigation" analyse, so that no cell pools two objectives. A frame without a
    pruned ``ce`` row (an audit run with one other objective) is returned whole."""
    if "objective" not in frame.columns:
        return frame
    pruned = frame["method"] != metrics.DENSE_METHOD
    if not (pruned & (frame["objective"] == registry.DEFAULT)).any():
        return frame
    return frame[frame["objective"] == registry.DEFAULT].reset_index(drop=True)


def constraint_holds(paired: pd.DataFrame, tolerance: float | pd.Series) -> pd.DataFrame:
    """Per pruned model of a paired frame: ``holds``, the fraction of classes with finite
    EAG_c whose ``EAG_c <= tolerance`` (CEAG's constraint; fractions)."""
    eag = class_eag(paired)
    keys = [c for c in ("dataset", "arch", "method", "ratio", "model", "distribution",
                        "objective", "level") if c in paired.columns]
    ok = np.isfinite(eag)
    tol = np.asarray(tolerance, dtype=np.float64)
    frame = paired[keys].assign(_held=(eag <= tol) & ok, _ok=ok)
    out = frame.groupby(keys, sort=False, dropna=False)[["_held", "_ok"]].sum().reset_index()
    out["holds"] = out["_held"] / out["_ok"].where(out["_ok"] > 0)
    return out.drop(columns=["_held", "_ok"])


def mitigation(frame: pd.DataFrame, nominal: str = "nominal", correction: str = "bonferroni",
               train_recall: pd.DataFrame | None = None) -> Mitigation | None:
    """The mitigation comparison of the ``nominal`` test set of a tidy frame; ``None`` when
    no model was fine-tuned with an objective other than ``ce``.

    Args:
        frame: a study's tidy count frame with an ``objective`` column.
        nominal, correction: the test distribution used, and ``bonferroni`` or ``holm``.
        train_recall: ``ceag`` jobs' training-split recalls, a paired frame (one row per
            (model, class): keys, ``value_before``/``value_after`` (dense/pruned recall),
            ``accuracy_before``/``accuracy_after``, ``tolerance``), e.g.
            :func:`prunescope.study.results.train_recalls`; ``None``: no training-split row.
    """
    if not has_objectives(frame):
        return None
    nom = drop_orphans(frame[frame["distribution"] == nominal].reset_index(drop=True), [])
    mitigated = nom.loc[nom["objective"] != registry.DEFAULT, ["dataset", "arch", "method"]]
    cells = mitigated.drop_duplicates()
    keep = nom.merge(cells.assign(_m=True), on=["dataset", "arch", "method"], how="left")["_m"]
    nom = nom[(nom["method"] == metrics.DENSE_METHOD).to_numpy() | keep.notna().to_numpy()]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", metrics.ImbalanceWarning)
        paired, models = model_alphas(nom.reset_index(drop=True))
    by = [*_CELL, "objective", "ratio"]
    summary = pd.concat([cell_ci(models, v, by, null=np.nan).assign(value=v)
                         for v in MITIGATION_VALUES], ignore_index=True)
    tests = pd.concat([objective_tests(models, v, correction=correction)
                       for v in MITIGATION_VALUES], ignore_index=True)
    return Mitigation(models, summary, tests, _holds(paired, train_recall))


def _holds(paired: pd.DataFrame, train_recall: pd.DataFrame | None) -> pd.DataFrame | None:
    """The ``ceag`` constraint's fractions held per model on each split, their intervals."""
    name = "ceag"
    test = paired[paired["objective"] == name]
    if test.empty:
        return None
    default = registry.objective(name).resolve(None)["tolerance"]
    tol = default
    if train_recall is not None and not train_recall.empty:
        tol = float(train_recall["tolerance"].iloc[0])
    parts = [constraint_holds(test, tol).assign(split="test")]
    if train_recall is not None and not train_recall.empty:
        parts.append(constraint_holds(train_recall, train_recall["tolerance"].to_numpy())
                     .assign(split="train", distribution=test["distribution"].iloc[0]))
    held = pd.concat(parts, ignore_index=True)
    return cell_ci(held, "holds", [*_CELL, "ratio", "split"], null=np.nan)
