"""Which epoch's weights a fit keeps (:attr:`prunescope.train.Recipe.select`).

``"val_loss"`` (SPEC 4): the epoch of lowest validation loss over the whole run.

``"val_loss_per_block"``: the rule the authors' ShrinkBench fork ends up applying
(``experiment/train.py``, ``yuxwind/shrinkbench_generate_model``): every schedule block is its
own ``run()``, which resets its best loss (``top_loss = 1``); an epoch whose loss is below the
block's best so far writes the checkpoint, and the checkpoint loaded after the last block is
the last one written. The fork's loss is the mean over batches of each batch's mean
cross-entropy divided by the batch size (128), far below 1 for any trained model, so every
block's first epoch writes and the kept weights are those of the last block's lowest
validation loss (the first such epoch on a tie).
"""
from __future__ import annotations

import math
from collections.abc import Sequence

from prunescope.train.recipe import Recipe


class EpochChoice:
    """Epoch by epoch, which of G models keep their weights under ``recipe.select``.

    Attributes:
        kept_epoch: per model, the 1-based epoch whose weights are kept so far (0: none yet).
    """

    def __init__(self, recipe: Recipe, groups: int) -> None:
        self.restarts = (recipe.block_starts() if recipe.select == "val_loss_per_block"
                         else frozenset())
        self.lowest = [math.inf] * groups
        self.kept_epoch = [0] * groups

    def update(self, epoch: int, val_losses: Sequence[float]) -> list[int]:
        """Record the validation losses (nats, one per model) of 1-based ``epoch``; returns the
        indices of the models that keep this epoch's weights."""
        if epoch in self.restarts:  # a new block under the fork's rule
            self.lowest = [math.inf] * len(self.lowest)
        keep = [i for i, loss in enumerate(val_losses) if loss < self.lowest[i]]
        for i in keep:
            self.lowest[i], self.kept_epoch[i] = val_losses[i], epoch
        return keep
