"""The losses of the fine-tuning objectives (:mod:`prunescope.catalog.objectives`).

Each objective's record names a factory here, ``fn(options, refs, stacked) -> StepLoss``:
``options`` its resolved options (:meth:`~prunescope.catalog.objectives.Objective.resolve`),
``refs`` one :class:`DenseReference` per model being fine-tuned (what it reads of the model's
dense parent), ``stacked`` whether the G models train as one stacked pack. A
:class:`StepLoss` is called once per optimiser step by the training loop
(:func:`prunescope.train.loop.train_net`) on the step's logits ``(G, b, K)`` float32, labels
``(G, b)`` int64 and inputs ``(G, b, C, H, W)``, and returns the scalar to minimise: the sum over
the G models of each model's own objective, so that, as with cross-entropy, no model's
gradient depends on another's.

The constrained objectives follow Hashemizadeh et al. (ICLR 2024, "Balancing Act") and the
alternating dual-primal update of the cooper library their code uses: per step, the multipliers
first move by ``dual_lr`` times the constraint's violation measured on the batch (projected to
>= 0 for inequalities), then the primal loss ``L + sum_c lambda_c (L_c - L)`` (cross-entropy
surrogate) is minimised with the updated multipliers. A class absent from a batch keeps its
multiplier and adds no term (cooper's "indexed" multipliers). The multipliers live here
(``StepLoss.multipliers``, ``(G, K)``) rather than in cooper: cooper's optimiser owns the
forward, backward and primal step, while prunescope's one loop must mask gradients between
backward and step and trains G stacked models with one loss; the dual step is three lines.
"""
from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from prunescope.catalog import objectives as registry
from prunescope.data.device import DeviceImages
from prunescope.train.loop import _forward, evaluate

__all__ = ["DenseReference", "StepLoss", "build_objective", "ceag", "cross_entropy",
           "dense_reference", "distillation", "equalized_loss"]


@dataclass
class DenseReference:
    """What an objective reads of one model's dense parent.

    Attributes:
        teacher: a frozen copy of the dense parent in eval mode (``needs_teacher``), else None.
        class_accuracy: float64 ``(K,)``, the dense parent's recall of each class on the
            training split, fractions (``needs_dense_accuracy``), else None.
        accuracy: the dense parent's accuracy on the training split (fraction), else None.
    """

    teacher: nn.Module | None = None
    class_accuracy: np.ndarray | None = None
    accuracy: float | None = None


def dense_reference(name: str, dense: nn.Module, train: DeviceImages, num_classes: int
                    ) -> DenseReference:
    """The :class:`DenseReference` objective ``name`` needs, taken from ``dense`` before it is
    pruned: a frozen copy for a teacher, one pass over ``train`` (eval mode) for the per-class
    training accuracy; nothing for cross-entropy."""
    rec = registry.objective(name)
    ref = DenseReference()
    if rec.needs_teacher:
        ref.teacher = copy.deepcopy(dense).eval().requires_grad_(False)
    if rec.needs_dense_accuracy:
        cm = evaluate(dense, train, num_classes)
        ref.class_accuracy, ref.accuracy = class_recall(cm)
    return ref


def class_recall(confusion: np.ndarray) -> tuple[np.ndarray, float]:
    """``(recall per class float64 (K,), accuracy)`` of a ``(K, K)`` confusion matrix (rows
    true); a class without samples has recall NaN."""
    cm = np.asarray(confusion, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        recall = np.diag(cm) / cm.sum(1)
    return recall, float(np.trace(cm) / max(1.0, cm.sum()))


class StepLoss:
    """One step's loss of G models: ``loss(logits (G, b, K) float32, y (G, b) int64, x (G, b,
    C, H, W)) -> scalar`` (the sum over models of each model's objective, nats)."""

    multipliers: torch.Tensor | None = None

    def __call__(self, logits: torch.Tensor, y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


def _ce(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Sum over the G models of each model's mean cross-entropy, as the loop computes it."""
    g = logits.shape[0]
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1)) * g


class _CrossEntropy(StepLoss):
    def __call__(self, logits: torch.Tensor, y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return _ce(logits, y)


def cross_entropy(options: Mapping[str, float], refs: Sequence[DenseReference],
                  stacked: bool) -> StepLoss:
    """``ce``: the mean cross-entropy of SPEC 4 (what the loop minimises without an
    objective, bitwise)."""
    return _CrossEntropy()


class _Distillation(StepLoss):
    def __init__(self, teacher: nn.Module, stacked: bool, temperature: float, weight: float):
        self.teacher, self.stacked = teacher, stacked
        self.t, self.w = temperature, weight

    def __call__(self, logits: torch.Tensor, y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        g, b, k = logits.shape
        with torch.no_grad():
            target = _forward(self.teacher, x, self.stacked).float()
        student = F.log_softmax(logits.reshape(-1, k) / self.t, dim=-1)
        teacher = F.log_softmax(target.reshape(-1, k) / self.t, dim=-1)
        # sum over models of each model's batch-mean KL(teacher || student)
        kl = F.kl_div(student, teacher, log_target=True, reduction="sum") / b
        return (1.0 - self.w) * _ce(logits, y) + self.w * self.t * self.t * kl


def distillation(options: Mapping[str, float], refs: Sequence[DenseReference],
                 stacked: bool) -> StepLoss:
    """``kd``: ``(1 - weight) * CE + weight * T^2 * KL(softmax(t/T) || softmax(s/T))`` with
    ``t`` the dense parent's logits on the same (augmented) batch, ``s`` the pruned model's
    (Hinton et al. 2015; the T^2 keeps the soft term's gradient scale as T changes). ``weight
    = 0`` is cross-entropy bitwise."""
    teachers = [r.teacher for r in refs]
    if any(t is None for t in teachers):
        raise ValueError("kd needs each model's dense parent: build its references with "
                         "dense_reference('kd', ...)")
    if stacked:
        from prunescope.models.stacked import stack

        teacher = stack(teachers).eval().requires_grad_(False)
    else:
        teacher = teachers[0]
    return _Distillation(teacher, stacked, options["temperature"], options["weight"])


class _Lagrangian(StepLoss):
    """``sum_g [L_g + sum_c lambda_gc (L_gc - L_g)]`` with the multipliers moved first by
    ``dual_lr * violation`` (projected to >= 0 when ``inequality``)."""

    def __init__(self, dual_lr: float, inequality: bool, dense: torch.Tensor | None = None,
                 dense_acc: torch.Tensor | None = None, tolerance: float = 0.0):
        self.dual_lr, self.inequality = dual_lr, inequality
        self.dense, self.dense_acc, self.tolerance = dense, dense_acc, tolerance

    def violation(self, logits: torch.Tensor, y: torch.Tensor, class_loss: torch.Tensor,
                  avg: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
        """The constraint function per (model, class), ``(G, K)``; holds where <= 0 (== 0 for
        equalities). Equalized loss: ``L_c - L`` (nats)."""
        return class_loss - avg[:, None]

    def __call__(self, logits: torch.Tensor, y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        g, b, k = logits.shape
        per = F.cross_entropy(logits.reshape(-1, k), y.reshape(-1), reduction="none").view(g, b)
        counts = torch.zeros(g, k, dtype=per.dtype, device=per.device).scatter_add_(
            1, y, torch.ones_like(per))
        seen = counts > 0
        class_loss = torch.zeros_like(counts).scatter_add(1, y, per) / counts.clamp_min(1)
        avg = per.mean(1)
        if self.multipliers is None:
            self.multipliers = torch.zeros(g, k, dtype=torch.float32, device=per.device)
        with torch.no_grad():  # dual step first (alternating dual-primal), observed classes
            v = self.violation(logits.detach(), y, class_loss.detach(), avg.detach(), counts)
            self.multipliers += torch.where(seen, self.dual_lr * v, 0.0)
            if self.inequality:
                self.multipliers.clamp_(min=0.0)
        surrogate = torch.where(seen, class_loss - avg[:, None], 0.0)
        return avg.sum() + (self.multipliers * surrogate).sum()


class _AccuracyGap(_Lagrangian):
    def violation(self, logits: torch.Tensor, y: torch.Tensor, class_loss: torch.Tensor,
                  avg: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
        """CEAG: ``(A_dense^c - A^c) - (A_dense - A) - tolerance`` on the batch (fractions)."""
        right = (logits.argmax(-1) == y).to(counts.dtype)
        acc_c = torch.zeros_like(counts).scatter_add_(1, y, right) / counts.clamp_min(1)
        acc = right.mean(1)
        dense, dense_acc = self.dense.to(acc.device), self.dense_acc.to(acc.device)
        return (dense - acc_c) - (dense_acc - acc)[:, None] - self.tolerance


def equalized_loss(options: Mapping[str, float], refs: Sequence[DenseReference],
                   stacked: bool) -> StepLoss:
    """``equalized-loss``: per class ``L_c(theta) - L(theta) = 0`` (mean cross-entropy of the
    batch's class-c images vs of the batch), signed multipliers by dual ascent with
    ``dual_lr``; the Lagrangian ``L + sum_c lambda_c (L_c - L)`` is minimised."""
    return _Lagrangian(options["dual_lr"], inequality=False)


def ceag(options: Mapping[str, float], refs: Sequence[DenseReference],
         stacked: bool) -> StepLoss:
    """``ceag``: per class ``(A_dense^c - A^c) - (A_dense - A) <= tolerance``, accuracies of the
    pruned model on the batch, the dense parent's on the whole training split (precomputed,
    :func:`dense_reference`); multipliers >= 0 by projected dual ascent on the accuracy
    violation, the cross-entropy ``L_c - L`` as the differentiable surrogate (the dense terms
    are constants and carry no gradient)."""
    if any(r.class_accuracy is None or r.accuracy is None for r in refs):
        raise ValueError("ceag needs each dense parent's per-class training accuracy: build its "
                         "references with dense_reference('ceag', ...)")
    dense = torch.tensor(np.stack([r.class_accuracy for r in refs]), dtype=torch.float32)
    dense_acc = torch.tensor([r.accuracy for r in refs], dtype=torch.float32)
    return _AccuracyGap(options["dual_lr"], inequality=True, dense=dense, dense_acc=dense_acc,
                        tolerance=options["tolerance"])


def build_objective(name: str, options: Mapping[str, float] | None,
                    refs: Sequence[DenseReference], stacked: bool = False) -> StepLoss:
    """The :class:`StepLoss` of objective ``name`` with ``options`` (defaults filled in) for
    the models whose dense parents ``refs`` describe (one per model, in pack order)."""
    rec = registry.objective(name)
    return rec.builder()(rec.resolve(options), list(refs), stacked)
