"""Which epoch's weights a fit keeps (:attr:`prunescope.train.Recipe.select`).

``"val_loss"`` (SPEC 4): the epoch of lowest validation loss over the whole run.

``"val_loss_per_block"``: the rule the authors' ShrinkBench fork ends up applying
(``experiment/train.py``, ``yuxwind/shrinkbench_generate_model``): every schedule block is its
own ``run()``, which resets its best loss to :data:`FORK_START_LOSS`; an epoch whose validation
loss is below the block's best so far writes the checkpoint, and the checkpoint loaded after the
last block is the last one written. Where no epoch of the run goes below
:data:`FORK_START_LOSS` (the fork would find no checkpoint to load) the lowest validation loss
of the run is kept instead.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

from prunescope.train.recipe import Recipe

#: the fork's ``self.top_loss = 1`` at the start of every block (nats)
FORK_START_LOSS = 1.0


class EpochChoice:
    """Epoch by epoch, which of G models keep their weights under ``recipe.select``.

    Attributes:
        kept_epoch: per model, the 1-based epoch whose weights are kept so far (0: none yet).
    """

    def __init__(self, recipe: Recipe, groups: int) -> None:
        self.rule = recipe.select
        self.starts = recipe.block_starts()
        self.lowest = [math.inf] * groups
        self.block_lowest = [FORK_START_LOSS] * groups
        self.written = [False] * groups
        self.kept_epoch = [0] * groups

    def update(self, epoch: int, val_losses: Sequence[float]) -> list[int]:
        """Record the validation losses (nats, one per model) of 1-based ``epoch``; returns the
        indices of the models that keep this epoch's weights."""
        keep = []
        for i, loss in enumerate(val_losses):
            if self.rule == "val_loss":
                kept = loss < self.lowest[i]
            else:
                if epoch in self.starts:
                    self.block_lowest[i] = FORK_START_LOSS
                if loss < self.block_lowest[i]:
                    self.block_lowest[i], self.written[i], kept = loss, True, True
                else:  # the run's lowest, until the fork's rule writes once
                    kept = not self.written[i] and loss < self.lowest[i]
            self.lowest[i] = min(self.lowest[i], loss)
            if kept:
                self.kept_epoch[i] = epoch
                keep.append(i)
        return keep
