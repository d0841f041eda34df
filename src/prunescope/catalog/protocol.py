"""The protocol options of a pruning study (SPEC 3, SPEC 8), without torch: what a cell prunes
and by which mask rule (:class:`PruneOptions`), and how its dense models are trained and
selected (:class:`TrainOptions`).

Each option's default is SPEC's corrected protocol; the other value of each is one quirk of the
authors' own code (the ShrinkBench fork ``yuxwind/shrinkbench_generate_model``, SPEC 8), so a
study can reproduce what the paper ran ("paper-code") and switch the quirks off one at a time.
The study spec declares them as keys (``study/spec.py``), the planner copies them into job
params (in a job's id only when not the default, so the ids of studies without them stay),
``prune`` and the worker read them. docs/pruning.md, "The paper-code protocol", says what each
does and why it exists.
"""
from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, Literal

__all__ = ["FORK_NORMALISATION", "FORK_UP_EPS", "KEEP_RULES", "NORMALISATIONS", "PruneOptions",
           "RP_COUNTS", "TrainOptions", "UP_SCORES", "VALIDATIONS"]

#: ``keep_rule``: ``exact`` (SPEC 3: the largest ``k`` whose achieved ratio meets the stated
#: one, top-k scores kept) or ``shrinkbench`` (ShrinkBench's ``fraction_to_keep`` counts the
#: biases of prunable layers as prunable though they are never masked; the mask keeps the
#: weights whose score is outside ``(-q, q)``, ``q`` the linear-interpolation quantile of the
#: scores at ``1 - fraction``)
KEEP_RULES = ("exact", "shrinkbench")
#: ``up_score``: ``absolute`` (SPEC 3: ``|-theta*g + eps*theta^2|``, eps the training decay) or
#: ``signed-5e-4`` (the fork's ``MixedMagGrad``: ``-theta*g + 5e-4*theta^2``, no absolute value,
#: 5e-4 whatever the model was trained with)
UP_SCORES = ("absolute", "signed-5e-4")
#: ``rp_count``: ``exact`` (RP keeps the rule's count of the top uniform draws) or ``binomial``
#: (ShrinkBench's ``random_mask``: each weight kept when its draw is at most the keep fraction)
RP_COUNTS = ("exact", "binomial")
#: ``validation``: ``held-out`` (SPEC 4: checkpoints chosen on ``n_val`` images held out of the
#: training split) or ``test`` (the fork: trained on the whole training split, the epoch of
#: lowest loss on the test split kept, for training and fine-tuning alike)
VALIDATIONS = ("held-out", "test")
#: ``normalisation``: ``dataset`` (the registry's per-channel training-set mean and std) or
#: ``fork`` (the constants of the fork's data loaders, :data:`FORK_NORMALISATION`)
NORMALISATIONS = ("dataset", "fork")

#: the fixed decay of the fork's signed UP score (``strategies/magnitude.py``)
FORK_UP_EPS = 5e-4
#: ``{dataset: (mean, std)}`` per channel on the 0..1 scale, as the fork's loaders normalise
#: (``datasets/datasets.py``: Fashion-MNIST ``Normalize((0.5), (0.5))``)
FORK_NORMALISATION: dict[str, tuple[tuple[float, ...], tuple[float, ...]]] = {
    "mnist": ((0.1307,), (0.3081,)),
    "fashion-mnist": ((0.5,), (0.5,)),
    "cifar10": ((0.491, 0.482, 0.447), (0.247, 0.243, 0.262)),
    "cifar100": ((0.507, 0.487, 0.441), (0.267, 0.256, 0.276)),
}


@dataclass(frozen=True)
class _Options:
    """Options that go into job params field by field (a field only when not its default)."""

    def non_default(self) -> dict[str, Any]:
        """``{field: value}`` of the fields that differ from their defaults."""
        return {f.name: getattr(self, f.name) for f in fields(self)
                if getattr(self, f.name) != f.default}

    def describe(self) -> str:
        """``"key=value, ..."`` of the non-default fields, ``"defaults"`` when none."""
        return ", ".join(f"{k}={v}" for k, v in self.non_default().items()) or "defaults"


@dataclass(frozen=True)
class PruneOptions(_Options):
    """What one-shot pruning may remove and how it counts (SPEC 3; SPEC 8 for the non-defaults).

    Attributes:
        prune_classifier: the final classifier's weight is prunable (the fork marks the LeNet's
            and the ResNets' as classifier: not prunable).
        prune_biases: the Conv/Linear biases are prunable (never with ``keep_rule =
            "shrinkbench"``: the fork never masks a bias).
        keep_rule: one of :data:`KEEP_RULES`.
        up_score: one of :data:`UP_SCORES` (read by UP and by methods keeping UP's count).
        rp_count: one of :data:`RP_COUNTS` (read by methods whose scores are uniform draws).
    """

    prune_classifier: bool = False
    prune_biases: bool = False
    keep_rule: Literal["exact", "shrinkbench"] = "exact"
    up_score: Literal["absolute", "signed-5e-4"] = "absolute"
    rp_count: Literal["exact", "binomial"] = "exact"

    def __post_init__(self) -> None:
        for name, allowed in (("keep_rule", KEEP_RULES), ("up_score", UP_SCORES),
                              ("rp_count", RP_COUNTS)):
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {', '.join(allowed)}, got "
                                 f"{getattr(self, name)!r}")
        if self.keep_rule == "shrinkbench" and self.prune_biases:
            raise ValueError("keep_rule = 'shrinkbench' never masks a bias (it counts them as "
                             "prunable instead); set prune_biases = false or keep_rule = 'exact'")


@dataclass(frozen=True)
class TrainOptions(_Options):
    """How a cell's dense models are trained and their checkpoints chosen (SPEC 4; SPEC 8).

    Attributes:
        validation: one of :data:`VALIDATIONS`.
        normalisation: one of :data:`NORMALISATIONS`.
    """

    validation: Literal["held-out", "test"] = "held-out"
    normalisation: Literal["dataset", "fork"] = "dataset"

    def __post_init__(self) -> None:
        for name, allowed in (("validation", VALIDATIONS), ("normalisation", NORMALISATIONS)):
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {', '.join(allowed)}, got "
                                 f"{getattr(self, name)!r}")

    @classmethod
    def of(cls, meta: Any) -> TrainOptions:
        """The options a checkpoint sidecar ``meta`` (a mapping) records; defaults for keys it
        lacks."""
        return cls(**{k: meta[k] for k in cls.__dataclass_fields__ if k in meta})

    def mean_std(self, dataset: str, own: tuple[Any, Any]) -> tuple[Any, Any]:
        """The per-channel ``(mean, std)`` to normalise ``dataset`` with: ``own`` (the
        registry's) unless ``normalisation`` is ``fork``; ``ValueError`` for a dataset the
        fork's loaders do not know."""
        if self.normalisation == "dataset":
            return own
        if dataset not in FORK_NORMALISATION:
            raise ValueError(f"the fork normalises only {', '.join(FORK_NORMALISATION)}; use "
                             f"normalisation = 'dataset' for {dataset}")
        return FORK_NORMALISATION[dataset]
