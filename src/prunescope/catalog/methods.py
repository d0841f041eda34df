"""The registry of pruning methods: one record per method, read by every layer.

The spec validates method names against it, the plan picks a method's job kinds from its
``kind`` and what it needs (:attr:`Method.needs_gradients`), :func:`prunescope.prune.score` and
:func:`prunescope.prune.structured_scores` call its score function (:meth:`Method.scorer`,
imported on first use), the statistics order method pairs and the report colours and labels
methods from it. No layer tests a method's name: each asks its record. Adding a method is one
score function and one :class:`Method` record (docs/architecture.md, "Add a pruning method").
No torch here: ``stats`` and ``report`` import this module. Every list is derived from
:data:`REGISTRY` when asked for, so a record added to it counts everywhere.
"""
from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

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
        score: ``"module:function"``, the method's score function, imported on first use by
            :meth:`scorer`: for one-shot methods a per-weight criterion
            ``fn(theta, g, eps, gen) -> float64 tensor`` (:mod:`prunescope.prune.scores`); for
            structured ones a per-channel one (:mod:`prunescope.prune.channel_scores`,
            ``fn(model, groups)``, or ``fn(model, images, n_images=, seed=, groups=)`` with
            ``needs_feature_maps``); ``None`` for iterative methods (LTH ranks by magnitude
            per level, :mod:`prunescope.prune.iterative`).
        needs_weight_decay: the score reads the weight decay the model was trained with (UP's
            eps, from the checkpoint's sidecar or given).
        needs_feature_maps: the score reads the dense model's feature maps on training images
            (CHIP): the study gives it ``[structured] chip_images`` images.
        signed_score: ``"module:function"`` of the score used instead of :attr:`score` when a
            cell's ``up_score`` is ``signed-5e-4`` (UP: the authors' code's signed score, SPEC 8).
        quantile_over_biases: with ``keep_rule = "shrinkbench"`` the threshold is the quantile
            of the scores of the prunable layers' weights *and biases*, though only weights are
            masked: what the fork's gradient strategies (``GlobalMagGrad``, ``MixedMagGrad``)
            do; its magnitude strategy drops the biases first (SPEC 8).
        draws: the scores are i.i.d. uniform draws (RP): ``rp_count = "binomial"`` keeps each
            weight whose draw is at most the keep fraction.
        keep_as: keep exactly as many weights as method ``keep_as`` keeps at the same stated
            ratio under the same cell options (one model at a time), so that the two are compared
            at matched achieved ratios; the record then needs what ``keep_as`` needs.
    """

    name: str
    label: str
    colour: str
    kind: Kind
    needs_gradients: bool
    order: int
    score: str | None
    needs_weight_decay: bool = False
    needs_feature_maps: bool = False
    signed_score: str | None = None
    quantile_over_biases: bool = False
    draws: bool = False
    keep_as: str | None = None

    @property
    def iterative(self) -> bool:
        """Whether the method prunes over levels (``rewind`` + ``lth_level`` jobs)."""
        return self.kind == "iterative"

    def scorer(self, signed: bool = False) -> Callable[..., Any]:
        """The score function named by :attr:`score` (by :attr:`signed_score` when ``signed``
        and the record has one), imported now (it needs torch)."""
        name = self.signed_score if signed and self.signed_score is not None else self.score
        if name is None:
            raise ValueError(f"{self.label} has no score function: it is {self.kind}")
        module, _, function = name.partition(":")
        return getattr(importlib.import_module(module), function)


_SCORES = "prunescope.prune.scores"
_STRUCTURED = "prunescope.prune.channel_scores"
#: every method, in the order cells list them (and method pairs compare them)
REGISTRY: tuple[Method, ...] = (
    Method("mp", "MP", "#0072B2", "one-shot", False, 0, f"{_SCORES}:magnitude"),
    Method("gp", "GP", "#009E73", "one-shot", True, 2, f"{_SCORES}:gradient",
           quantile_over_biases=True),
    Method("up", "UP", "#D55E00", "one-shot", True, 1, f"{_SCORES}:undecayed",
           needs_weight_decay=True, signed_score=f"{_SCORES}:undecayed_signed",
           quantile_over_biases=True),
    Method("rp", "RP", "#7F7F7F", "one-shot", False, 3, f"{_SCORES}:random", draws=True),
    Method("lth", "LTH", "#CC79A7", "iterative", False, 4, None),
    Method("l1-filter", "L1-filter", "#56B4E9", "structured", False, 6,
           f"{_STRUCTURED}:l1_filter_scores"),
    Method("chip", "CHIP", "#E69F00", "structured", False, 5, f"{_STRUCTURED}:chip_scores",
           needs_feature_maps=True),
    Method("mp-at-up", "MP@UP", "#117733", "one-shot", True, 7, f"{_SCORES}:magnitude",
           needs_weight_decay=True, keep_as="up"),
)

#: salts of :func:`prunescope.train.derive_seed` for the draws of one pruning: the random
#: scores of a one-shot criterion and the training images a feature-map score reads (the
#: values fix the results of finished jobs, so they stay as first written)
SCORE_SEED_SALT = "rp"
FEATURE_MAP_SEED_SALT = "chip"
#: the pair of SPEC 5's fifth family (magnitude vs undecayed gradient pruning, every arch x ratio)
MP_VS_UP: tuple[str, str] = ("mp", "up")


def names(kind: Kind | None = None, *, needs_gradients: bool | None = None,
          needs_feature_maps: bool | None = None) -> tuple[str, ...]:
    """Names of the methods of ``kind`` (``None``: all) and needs, registry order."""
    return tuple(m.name for m in REGISTRY if (kind is None or m.kind == kind)
                 and (needs_gradients is None or m.needs_gradients == needs_gradients)
                 and (needs_feature_maps is None or m.needs_feature_maps == needs_feature_maps))


def display_order() -> tuple[str, ...]:
    """Every method name by :attr:`Method.order` (tables and figure legends)."""
    return tuple(m.name for m in sorted(REGISTRY, key=lambda m: m.order))


def method(name: str) -> Method:
    """The record of ``name`` (case-insensitive); an unknown name raises ``ValueError``
    listing the known ones."""
    found = [m for m in REGISTRY if m.name == str(name).lower()]
    if not found:
        raise ValueError(f"unknown pruning method {name!r}; choose one of {', '.join(names())}")
    return found[0]
