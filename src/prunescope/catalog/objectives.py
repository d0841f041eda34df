"""The registry of fine-tuning objectives: what a pruned model minimises while it is
fine-tuned with its mask held (docs/mitigation.md).

One record per objective, read by every layer: the spec validates ``finetune_objectives``
against it, the plan puts a non-default objective and its options into the ``prune_finetune``
job's id, the worker and ``prunescope prune`` build its loss (:meth:`Objective.builder`,
imported on first use: it needs torch), the report colours and labels it. Adding an objective
is one loss factory (e.g. in :mod:`prunescope.train.objectives`) and one :class:`Objective`
record here (docs/architecture.md, "Add a fine-tuning objective"). No torch here.
"""
from __future__ import annotations

import importlib
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

#: the objective every study and command uses unless told otherwise (job ids unchanged)
DEFAULT = "ce"


@dataclass(frozen=True)
class Objective:
    """One fine-tuning objective.

    Attributes:
        name: the lower-case name studies, the CLI and result frames use (``"kd"``).
        label: display name in figures and tables (``"KD"``).
        colour: hex colour in every figure (Okabe-Ito / Tol).
        order: position in tables and legends (0 first).
        function: ``"module:function"`` of its loss factory ``fn(options, refs, stacked) ->
            loss`` (:mod:`prunescope.train.objectives`), imported on first use by
            :meth:`builder`.
        options: ``((name, default), ...)``: the numeric options a study
            (``[objective_options.<name>]``), ``prunescope prune --objective-option`` or the API
            may set; every value is a finite float.
        needs_teacher: the loss reads the dense parent's logits on the same batch.
        needs_dense_accuracy: the loss reads the dense parent's per-class accuracy on the
            training split (precomputed once before fine-tuning).
        reference: where the objective comes from (shown in docs and the report).
    """

    name: str
    label: str
    colour: str
    order: int
    function: str
    options: tuple[tuple[str, float], ...] = ()
    needs_teacher: bool = False
    needs_dense_accuracy: bool = False
    reference: str = ""

    def builder(self) -> Callable[..., Any]:
        """The loss factory named by :attr:`function`, imported now (it needs torch)."""
        module, _, function = self.function.partition(":")
        return getattr(importlib.import_module(module), function)

    def resolve(self, given: Mapping[str, Any] | None = None) -> dict[str, float]:
        """Every option of this objective: the defaults updated by ``given``.

        Raises:
            ValueError: an unknown option name, or a value that is not a finite number (one
                line naming the objective, the option and what is allowed).
        """
        out = dict(self.options)
        for k, v in (given or {}).items():
            if k not in out:
                raise ValueError(f"objective {self.name!r} has no option {k!r}; its options: "
                                 f"{', '.join(out) or 'none'}")
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                raise ValueError(f"option {k!r} of objective {self.name!r} must be a finite "
                                 f"number, got {v!r}")
            out[k] = float(v)
        return out


_LOSSES = "prunescope.train.objectives"
#: every objective, in the order cells list them (and comparisons against ``ce`` are made)
REGISTRY: tuple[Objective, ...] = (
    Objective("ce", "CE", "#000000", 0, f"{_LOSSES}:cross_entropy",
              reference="cross-entropy, the fine-tuning of SPEC 4"),
    Objective("kd", "KD", "#0072B2", 1, f"{_LOSSES}:distillation",
              (("temperature", 4.0), ("weight", 0.9)), needs_teacher=True,
              reference="Hinton, Vinyals, Dean 2015, 'Distilling the knowledge in a neural "
              "network' (T^2-scaled KL); defaults T = 4, weight 0.9 as RepDistiller (Tian et al. "
              "ICLR 2020)"),
    Objective("equalized-loss", "EL", "#009E73", 2, f"{_LOSSES}:equalized_loss",
              (("dual_lr", 0.01),),
              reference="per-class loss = overall loss (equality constraints, signed "
              "multipliers), the equalized-loss baseline of Hashemizadeh et al. ICLR 2024 "
              "(merajhashemi/balancing-act, src/cmp/equalized_loss.py); dual lr 0.01 as its "
              "configs"),
    Objective("ceag", "CEAG", "#D55E00", 3, f"{_LOSSES}:ceag",
              (("tolerance", 0.01), ("dual_lr", 0.01)), needs_dense_accuracy=True,
              reference="constrained excess accuracy gap, Hashemizadeh et al. ICLR 2024 "
              "('Balancing Act'; src/cmp/uniform_accuracy_gap.py); tolerance 0.01 as its "
              "UTKFace/FairFace configs, dual lr 0.01 as its CIFAR configs"),
)


def names() -> tuple[str, ...]:
    """Every objective name, registry order."""
    return tuple(o.name for o in REGISTRY)


def display_order() -> tuple[str, ...]:
    """Every objective name by :attr:`Objective.order` (tables and legends)."""
    return tuple(o.name for o in sorted(REGISTRY, key=lambda o: o.order))


def objective(name: str) -> Objective:
    """The record of ``name`` (case-insensitive); an unknown name raises ``ValueError`` listing
    the known ones."""
    found = [o for o in REGISTRY if o.name == str(name).lower()]
    if not found:
        raise ValueError(f"unknown fine-tuning objective {name!r}; choose one of "
                         f"{', '.join(names())}")
    return found[0]
