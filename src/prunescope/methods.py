"""The registry of pruning methods: one record per method, read by every layer.

The spec validates method names against it, the plan picks a method's job kinds from its
``kind``, the worker and :func:`prunescope.prune.score` find its score function by name, the
statistics order method pairs and the report colours and labels methods from it. Adding a method
is one score function and one :class:`Method` record (docs/architecture.md, "Adding a pruning
method"). No torch here: ``stats`` and ``report`` import this module.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Kind = Literal["one-shot", "iterative", "structured"]


@dataclass(frozen=True)
class Method:
    """One pruning method.

    Attributes:
        name: the lower-case name studies, the CLI and result frames use (``"mp"``).
        label: display name in figures and tables (``"MP"``).
        colour: hex colour of the method in every figure (colour-blind-safe Okabe-Ito/Tol).
        kind: ``one-shot`` (a ``prune_finetune`` job: score every prunable weight, keep the
            best, fine-tune with the mask held), ``iterative`` (``rewind`` + ``lth_level``
            jobs) or ``structured`` (a ``structured`` job: channels removed for real).
        needs_gradients: the score reads the dense model's data-loss gradient (a
            ``gradients`` job, shared by every such method of a model).
        order: position in tables and figure legends (0 first).
        score: for one-shot methods, the name of its score function in
            :mod:`prunescope.prune.scores` (``fn(theta, g, eps, gen) -> float64 tensor``);
            ``None`` for iterative methods (LTH ranks by magnitude per level,
            :mod:`prunescope.prune.iterative`) and structured ones (channel scores,
            :func:`prunescope.prune.structured.structured_scores`).
    """

    name: str
    label: str
    colour: str
    kind: Kind
    needs_gradients: bool
    order: int
    score: str | None


#: every method, in the order cells list them (and method pairs compare them)
REGISTRY: tuple[Method, ...] = (
    Method("mp", "MP", "#0072B2", "one-shot", False, 0, "magnitude"),
    Method("gp", "GP", "#009E73", "one-shot", True, 2, "gradient"),
    Method("up", "UP", "#D55E00", "one-shot", True, 1, "undecayed"),
    Method("rp", "RP", "#7F7F7F", "one-shot", False, 3, "random"),
    Method("lth", "LTH", "#CC79A7", "iterative", False, 4, None),
    Method("l1-filter", "L1-filter", "#56B4E9", "structured", False, 6, None),
    Method("chip", "CHIP", "#E69F00", "structured", False, 5, None),
)
#: ``{name: Method}``
BY_NAME: dict[str, Method] = {m.name: m for m in REGISTRY}


def names(kind: Kind | None = None, *, needs_gradients: bool | None = None) -> tuple[str, ...]:
    """Names of the methods of ``kind`` (``None``: all) and gradient need, registry order."""
    return tuple(m.name for m in REGISTRY if (kind is None or m.kind == kind)
                 and (needs_gradients is None or m.needs_gradients == needs_gradients))


def display_order() -> tuple[str, ...]:
    """Every method name by :attr:`Method.order` (tables and figure legends)."""
    return tuple(m.name for m in sorted(REGISTRY, key=lambda m: m.order))


def method(name: str) -> Method:
    """The record of ``name`` (case-insensitive); an unknown name raises ``ValueError``
    listing the known ones."""
    try:
        return BY_NAME[name.lower()]
    except KeyError:
        raise ValueError(f"unknown pruning method {name!r}; choose one of "
                         f"{', '.join(BY_NAME)}") from None
