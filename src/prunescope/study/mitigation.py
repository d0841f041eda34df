"""What a study worker adds to a ``prune_finetune`` job for its fine-tuning objective
(docs/mitigation.md): the dense parent's reference taken before pruning, the objective's loss
for one model or a pack, packs split by objective, and the training-split class recalls a
``ceag`` job records for the report's "constraint holds" fractions.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import torch
from torch import nn

from prunescope.catalog import objectives as registry
from prunescope.study.packs import Pack
from prunescope.train import evaluate
from prunescope.train.objectives import (DenseReference, StepLoss, build_objective,
                                         class_recall, dense_reference)


def reference(params: Any, dense: nn.Module, train: Any, num_classes: int
              ) -> DenseReference | None:
    """The dense parent's :class:`DenseReference` for the objective of ``params`` (a
    ``PruneFinetuneParams``), taken from ``dense`` before it is pruned; ``None`` for ``ce`` and
    for a job that does not fine-tune."""
    name = getattr(params, "objective", registry.DEFAULT)
    if name == registry.DEFAULT or params.recipe is None:
        return None
    return dense_reference(name, dense, train, num_classes)


def step_loss(params: Sequence[Any], refs: Sequence[DenseReference | None], stacked: bool
              ) -> StepLoss | None:
    """The loss of models fine-tuned together (one objective, the first job's); ``None`` for
    ``ce`` (the loop's own cross-entropy, so that ``ce`` jobs run exactly as before)."""
    first = params[0]
    name = getattr(first, "objective", registry.DEFAULT)
    if name == registry.DEFAULT:
        return None
    return build_objective(name, dict(first.objective_options), refs, stacked=stacked)


def parts(pack: Pack) -> list[Pack]:
    """``pack`` split into packs of one objective and options each (plan order kept within
    each): one stacked network trains with one loss."""
    groups: dict[tuple[str, tuple[Any, ...]], list[Any]] = {}
    for job in pack.jobs:
        p = job.args
        key = (getattr(p, "objective", registry.DEFAULT),
               tuple(tuple(o) for o in getattr(p, "objective_options", ())))
        groups.setdefault(key, []).append(job)
    return [replace(pack, jobs=tuple(jobs)) for jobs in groups.values()]


def train_recalls(ref: DenseReference | None, model: nn.Module, train: Any) -> dict[str, Any]:
    """For an objective that read the dense parent's training accuracy (``ceag``): the job
    info ``{"train_recall": {"dense": [K], "pruned": [K], "dense_accuracy", "accuracy"}}``
    (fractions, the fine-tuned model on the same training split, eval mode); else ``{}``."""
    if ref is None or ref.class_accuracy is None:
        return {}
    with torch.no_grad():
        cm = evaluate(model, train, len(ref.class_accuracy))
    recall, acc = class_recall(cm)
    return {"train_recall": {"dense": [float(v) for v in ref.class_accuracy],
                             "pruned": [float(v) for v in recall],
                             "dense_accuracy": float(ref.accuracy), "accuracy": acc}}
