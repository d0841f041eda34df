"""The paper-code protocol's schedule blocks (SPEC 8, ``experiment/train.py`` and
``update_optim`` of the authors' ShrinkBench fork): the kept epoch under
``select = "val_loss_per_block"`` against a plain re-expression of the fork's loop, and
``restart_momentum`` against a run resumed with fresh momentum at the block boundary."""
import random

import numpy as np
import pytest
import torch

from prunescope.data.device import DeviceImages
from prunescope.models import build_model
from prunescope.train import Recipe, fit
from prunescope.train.select import EpochChoice


def fork_kept_epoch(val_losses, schedule):
    """The fork, re-expressed: each block is one ``run()`` setting ``top_loss = 1``; an epoch
    whose loss is below ``top_loss`` writes the checkpoint; the last one written is loaded.
    Where none was written (the fork would fail), prunescope's fallback: the run's lowest."""
    written, epoch = None, 0
    for block_epochs, _lr in schedule:
        top_loss = 1
        for _ in range(block_epochs):
            epoch += 1
            loss = val_losses[epoch - 1]
            if loss < top_loss:
                top_loss = loss
                written = epoch
    return written if written is not None else 1 + int(np.argmin(val_losses))


def kept_by_choice(losses, recipe):
    choice = EpochChoice(recipe, 1)
    for epoch, loss in enumerate(losses, 1):
        choice.update(epoch, [loss])
    return choice.kept_epoch[0]


def test_per_block_choice_is_the_forks_last_checkpoint():
    """Random loss curves around 1 (some blocks never below it, some runs never) over random
    schedules: the kept epoch is the fork's, and differs from the run's lowest loss often."""
    rng = random.Random(0)
    differs = fallback = 0
    for _ in range(2000):
        schedule = tuple((rng.randint(1, 4), 0.1) for _ in range(rng.randint(1, 4)))
        recipe = Recipe(schedule=schedule, select="val_loss_per_block")
        n = recipe.epochs
        losses = [rng.uniform(0.5, 1.6) if rng.random() < 0.7 else rng.uniform(1.0, 2.0)
                  for _ in range(n)]
        assert kept_by_choice(losses, recipe) == fork_kept_epoch(losses, schedule), (
            schedule, losses)
        differs += fork_kept_epoch(losses, schedule) != 1 + int(np.argmin(losses))
        fallback += min(losses) >= 1
    assert differs > 200 and fallback > 5


def test_per_block_choice_hand_example():
    # blocks (2, 2, 1): block 1 writes epoch 2, block 2 writes epochs 3 and 4 (0.9 < 1, then
    # 0.7), block 3 (1.2) writes nothing: the fork loads epoch 4, the run's lowest is epoch 2
    losses = [0.8, 0.4, 0.9, 0.7, 1.2]
    recipe = Recipe(schedule=((2, 0.1), (2, 0.1), (1, 0.1)), select="val_loss_per_block")
    assert kept_by_choice(losses, recipe) == 4
    assert kept_by_choice(losses, Recipe(schedule=recipe.schedule)) == 2
    assert kept_by_choice([1.5, 1.2, 1.3, 1.1, 1.4], recipe) == 4  # never below 1: the lowest


def test_fit_keeps_the_per_block_epoch_and_its_weights(quadrants):
    """A 3-block fit whose validation labels are 5 % wrong (its loss falls below 1, then rises as
    the model grows confident): best_epoch is the fork's kept epoch of the history, not the
    run's lowest, and the model holds that epoch's weights."""
    train, val = quadrants
    y = val.y.clone()
    y[:len(y) // 20] = (y[:len(y) // 20] + 1) % 4
    noisy = DeviceImages(val.x, y, val.mean, val.std)
    schedule = ((2, 0.02), (1, 0.05), (2, 0.005))
    recipe = Recipe(schedule=schedule, batch_size=64, max_steps_per_epoch=5,
                    select="val_loss_per_block")
    model = build_model("lenet5", 4, 1, seed=0)
    snapshots = {}

    def snap(step, total, info):
        if "val_loss" in info:
            snapshots[info["epoch"]] = {k: v.clone() for k, v in model.state_dict().items()}

    res = fit(model, train, noisy, recipe, seed=0, progress=snap)
    losses = [h["val_loss"] for h in res.history]
    assert res.best_epoch == fork_kept_epoch(losses, schedule)
    assert res.best_epoch != 1 + int(np.argmin(losses)), losses  # the rule made a difference
    assert all(torch.equal(model.state_dict()[k], v)
               for k, v in snapshots[res.best_epoch].items())


def test_restart_momentum_is_a_fresh_optimiser_at_every_block(quadrants):
    """Two blocks with ``restart_momentum``: the second block's epochs are bitwise those of a
    run stopped at the boundary and resumed there with fresh momentum (the fork's new SGD),
    and differ from the run that keeps its momentum (so the reset happened)."""
    train, val = quadrants
    base = Recipe(schedule=((1, 0.05), (2, 0.02)), batch_size=64, max_steps_per_epoch=4)
    restarted = Recipe(schedule=base.schedule, batch_size=64, max_steps_per_epoch=4,
                       restart_momentum=True)
    full = fit(build_model("lenet5", 4, 1, seed=2), train, val, restarted, seed=4)
    kept = fit(build_model("lenet5", 4, 1, seed=2), train, val, base, seed=4)
    model = build_model("lenet5", 4, 1, seed=2)
    fit(model, train, val, base, seed=4, stop_after_step=4)
    rest = fit(model, train, val, base, seed=4, start_step=4)  # no optimizer_state: fresh
    assert full.history[0]["train_loss"] == kept.history[0]["train_loss"]
    for key in ("train_loss", "val_loss"):
        assert [h[key] for h in full.history[1:]] == [h[key] for h in rest.history]
        assert [h[key] for h in full.history[1:]] != [h[key] for h in kept.history[1:]]


def test_recipe_block_starts_and_rules():
    r = Recipe(schedule=((10, 0.01), (20, 0.1), (10, 0.01)))
    assert r.block_starts() == {1, 11, 31}
    with pytest.raises(ValueError, match="select must be one of"):
        Recipe(schedule=((1, 0.1),), select="val_acc")
