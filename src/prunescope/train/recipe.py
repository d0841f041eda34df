"""Training recipes (SPEC 4): SGD hyper-parameters and step learning-rate schedules."""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

from prunescope.catalog import architectures
from prunescope.identity import ALWAYS

#: the rules choosing the kept epoch (:attr:`Recipe.select`)
SELECT_RULES = ("val_loss", "val_loss_per_block")


@dataclass(frozen=True)
class Recipe:
    """How to train or fine-tune one model.

    Attributes:
        schedule: ``((epochs, lr), ...)`` blocks run in order; e.g. ``((10, 0.01), (20, 0.1))``
            is 10 epochs at lr 0.01 then 20 at 0.1. Total epochs = sum of the block lengths.
        momentum: SGD momentum.
        nesterov: Nesterov momentum (needs ``momentum > 0``).
        weight_decay: L2 coefficient (SGD ``weight_decay``), applied to every parameter; it is
            the ``eps`` of Undecayed Pruning (SPEC 3) and is recorded in every checkpoint.
        batch_size: training images per step.
        augment: random crop (4-pixel zero padding) + horizontal flip on the training set.
        max_steps_per_epoch: cap on optimiser steps per epoch (``None`` = full epochs), to
            shorten quick studies and tests.
        val_batch_size: images per batch when computing the validation loss.
        select: which epoch's weights to keep. ``"val_loss"``: the lowest validation loss of
            the run (SPEC 4). ``"val_loss_per_block"``: the authors' ShrinkBench fork, which
            runs every schedule block as its own ``run()`` with its best loss reset
            (``experiment/train.py``) and keeps the last checkpoint written: the lowest
            validation loss of the *last block* (:mod:`prunescope.train.select`).
        restart_momentum: start every schedule block with fresh momentum (the fork builds a
            new optimiser per block, ``update_optim``); ``False``: one optimiser for the run.
    """

    # Job ids hash prunescope.identity.identity(recipe): these fields always, a field added
    # from now on (with a default, without ALWAYS) only when it differs from its default.
    schedule: tuple[tuple[int, float], ...]
    momentum: float = field(default=0.9, metadata=ALWAYS)
    nesterov: bool = field(default=True, metadata=ALWAYS)
    weight_decay: float = field(default=5e-4, metadata=ALWAYS)
    batch_size: int = field(default=128, metadata=ALWAYS)
    augment: bool = field(default=False, metadata=ALWAYS)
    max_steps_per_epoch: int | None = field(default=None, metadata=ALWAYS)
    val_batch_size: int = field(default=1000, metadata=ALWAYS)
    select: str = field(default="val_loss", metadata=ALWAYS)
    restart_momentum: bool = False

    def __post_init__(self) -> None:
        sched = tuple((int(e), float(lr)) for e, lr in self.schedule)
        object.__setattr__(self, "schedule", sched)
        if not sched:
            raise ValueError("Recipe.schedule is empty; give at least one (epochs, lr) block")
        for e, lr in sched:
            if e < 1 or not (lr > 0 and math.isfinite(lr)):
                raise ValueError(
                    f"schedule block ({e}, {lr}) is invalid: epochs must be >= 1 and lr a "
                    "positive finite number"
                )
        if not 0 <= self.momentum < 1:
            raise ValueError(f"momentum must be in [0, 1), got {self.momentum}")
        if self.nesterov and self.momentum == 0:
            raise ValueError("nesterov=True needs momentum > 0; set nesterov=False or a momentum")
        if self.weight_decay < 0:
            raise ValueError(f"weight_decay must be >= 0, got {self.weight_decay}")
        if self.batch_size < 1 or self.val_batch_size < 1:
            raise ValueError(
                f"batch sizes must be >= 1, got batch_size={self.batch_size}, "
                f"val_batch_size={self.val_batch_size}"
            )
        if self.max_steps_per_epoch is not None and self.max_steps_per_epoch < 1:
            raise ValueError(
                f"max_steps_per_epoch must be None or >= 1, got {self.max_steps_per_epoch}"
            )
        if self.select not in SELECT_RULES:
            raise ValueError(f"select must be one of {SELECT_RULES}, got {self.select!r}")

    @property
    def epochs(self) -> int:
        """Total number of epochs of the schedule."""
        return sum(e for e, _ in self.schedule)

    def lr_at(self, epoch: int) -> float:
        """Learning rate of 0-based ``epoch``."""
        if not 0 <= epoch < self.epochs:
            raise ValueError(f"epoch {epoch} is outside the schedule's 0..{self.epochs - 1}")
        for e, lr in self.schedule:
            if epoch < e:
                return lr
            epoch -= e
        raise AssertionError("unreachable")

    def block_starts(self) -> frozenset[int]:
        """The 1-based epochs that begin a schedule block (the first epoch included)."""
        starts, epoch = set(), 1
        for e, _ in self.schedule:
            starts.add(epoch)
            epoch += e
        return frozenset(starts)

    def with_epochs(self, epochs: int) -> Recipe:
        """The same recipe with the schedule scaled proportionally to ``epochs`` in total.

        Block lengths are ``epochs * e_i / total`` rounded by largest remainder (so they sum
        to ``epochs``); blocks that round to zero are dropped. E.g. the 60-epoch ResNet
        schedule scaled to 6 is ``((1, .01), (2, .1), (1, .01), (1, .001), (1, .0001))``.
        """
        if epochs < 1:
            raise ValueError(f"epochs must be >= 1, got {epochs}")
        total = self.epochs
        exact = [e * epochs / total for e, _ in self.schedule]
        lengths = [math.floor(v) for v in exact]
        short = epochs - sum(lengths)
        by_remainder = sorted(range(len(exact)), key=lambda i: (-(exact[i] - lengths[i]), i))
        for i in by_remainder[:short]:
            lengths[i] += 1
        sched = tuple((n, lr) for n, (_, lr) in zip(lengths, self.schedule) if n > 0)
        return dataclasses.replace(self, schedule=sched)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict (schedule as a list of ``[epochs, lr]`` lists); stable for hashing."""
        d = dataclasses.asdict(self)
        d["schedule"] = [[e, lr] for e, lr in self.schedule]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Recipe:
        """Inverse of :meth:`to_dict`; unknown keys are an error naming them."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"unknown Recipe keys {unknown}; allowed: {sorted(names)}")
        if "schedule" not in d:
            raise ValueError("a Recipe dict needs a 'schedule' of [epochs, lr] blocks")
        kw = dict(d)
        kw["schedule"] = tuple((int(e), float(lr)) for e, lr in d["schedule"])
        return cls(**kw)

    # ---- the recipes of SPEC 4 -------------------------------------------------------------
    @classmethod
    def paper_resnet(cls) -> Recipe:
        """ResNet training: 60 epochs, 10 @0.01 (warm-up), 20 @0.1, 10 each @0.01/0.001/0.0001;
        SGD Nesterov 0.9, batch 128, weight decay 5e-4, crop+flip augmentation."""
        return cls(
            schedule=((10, 0.01), (20, 0.1), (10, 0.01), (10, 0.001), (10, 0.0001)),
            augment=True,
        )

    @classmethod
    def paper_resnet_finetune(cls) -> Recipe:
        """ResNet fine-tuning after pruning: 25 epochs, 10 @0.1, 5 each @0.01/0.001/0.0001."""
        return cls(schedule=((10, 0.1), (5, 0.01), (5, 0.001), (5, 0.0001)), augment=True)

    @classmethod
    def paper_lenet(cls) -> Recipe:
        """LeNet-5 training: lr 0.01, batch 128, 30 epochs (SPEC 4). SPEC is silent on momentum
        and decay; we use Nesterov 0.9 and weight decay 5e-4 as for the ResNets. No
        augmentation (MNIST-like data)."""
        return cls(schedule=((30, 0.01),), augment=False)

    @classmethod
    def paper_lenet_finetune(cls) -> Recipe:
        """LeNet-5 fine-tuning: 15 epochs at lr 0.01 (same optimiser as training)."""
        return cls(schedule=((15, 0.01),), augment=False)

    @classmethod
    def paper(cls, arch: str, finetune: bool = False) -> Recipe:
        """The SPEC 4 recipe for ``arch``, training or fine-tuning: ``paper_<r>()`` or
        ``paper_<r>_finetune()`` with ``r`` its record's ``recipe``
        (:mod:`prunescope.catalog.architectures`)."""
        try:
            family = architectures.architecture(arch).recipe
        except ValueError as e:
            raise ValueError(f"no paper recipe for architecture {arch!r}: {e}") from None
        return getattr(cls, f"paper_{family}{'_finetune' if finetune else ''}")()
