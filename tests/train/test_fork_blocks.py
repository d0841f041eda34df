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


def fork_kept_epoch(val_losses, schedule, batch_size=128):
    """The fork, re-expressed: each block is one ``run()`` setting ``top_loss = 1``; the
    epoch's loss is recorded as the mean cross-entropy divided by the batch size
    (``total_loss.add(loss.item() / dl.batch_size)``); an epoch whose recorded loss is below
    ``top_loss`` lowers it and writes the checkpoint; the last one written is loaded."""
    written, epoch = None, 0
    for block_epochs, _lr in schedule:
        top_loss = 1
        for _ in range(block_epochs):
            epoch += 1
            recorded = val_losses[epoch - 1] / batch_size
            if recorded < top_loss:
                top_loss = recorded
                written = epoch
    return written


def kept_by_choice(losses, recipe):
    choice = EpochChoice(recipe, 1)
    for epoch, loss in enumerate(losses, 1):
        choice.update(epoch, [loss])
    return choice.kept_epoch[0]


def test_per_block_choice_is_the_forks_last_checkpoint():
    """Random loss curves (0.05 to 20 nats, ties included) over random schedules: the kept
    epoch is the fork's, and differs from the run's lowest loss often."""
    rng = random.Random(0)
    differs = ties = 0
    for _ in range(2000):
        schedule = tuple((rng.randint(1, 4), 0.1) for _ in range(rng.randint(1, 4)))
        recipe = Recipe(schedule=schedule, select="val_loss_per_block")
        losses = [round(rng.uniform(0.05, 20.0), 1) for _ in range(recipe.epochs)]
        assert kept_by_choice(losses, recipe) == fork_kept_epoch(losses, schedule), (
            schedule, losses)
        differs += fork_kept_epoch(losses, schedule) != 1 + int(np.argmin(losses))
        ties += len(set(losses)) < len(losses)
    assert differs > 200 and ties > 100


def test_per_block_choice_hand_example():
    # blocks (2, 2, 1): the last block is epoch 5 alone, so the fork keeps epoch 5 although
    # epoch 2 is the run's lowest; with blocks (2, 3) it keeps epoch 4, the lowest of 3-5
    losses = [0.8, 0.4, 0.9, 0.7, 1.2]
    recipe = Recipe(schedule=((2, 0.1), (2, 0.1), (1, 0.1)), select="val_loss_per_block")
    assert kept_by_choice(losses, recipe) == 5
    assert kept_by_choice(losses, Recipe(schedule=((2, 0.1), (3, 0.1)),
                                         select="val_loss_per_block")) == 4
    assert kept_by_choice(losses, Recipe(schedule=recipe.schedule)) == 2


def test_fit_keeps_the_per_block_epoch_and_its_weights(quadrants):
    """A 3-block fit whose validation labels are 5 % wrong (its loss falls, then rises as the
    model grows confident): best_epoch is the fork's kept epoch of the history, not the run's
    lowest, and the model holds that epoch's weights."""
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


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_restart_momentum_with_the_fused_cuda_optimiser(quadrants):
    """On CUDA with the fused SGD (the GPU profile's optimiser) clearing the state at a block
    start is a fresh optimiser too: the second block matches the run resumed there with fresh
    momentum (up to GPU rounding) and not the run that keeps its momentum."""
    from prunescope.train.options import PackOptions

    train, val = (s.to("cuda") for s in quadrants)
    opts = PackOptions(fused_optimizer=True)
    base = Recipe(schedule=((1, 0.05), (2, 0.02)), batch_size=64, max_steps_per_epoch=4)
    restarted = Recipe(schedule=base.schedule, batch_size=64, max_steps_per_epoch=4,
                       restart_momentum=True)

    def run(recipe, **kw):
        return fit(build_model("lenet5", 4, 1, seed=2).cuda(), train, val, recipe, seed=4,
                   options=opts, **kw)

    full, kept = run(restarted), run(base)
    model = build_model("lenet5", 4, 1, seed=2).cuda()
    fit(model, train, val, base, seed=4, options=opts, stop_after_step=4)
    rest = fit(model, train, val, base, seed=4, options=opts, start_step=4)
    got = np.array([h["train_loss"] for h in full.history[1:]])
    fresh = np.array([h["train_loss"] for h in rest.history])
    carried = np.array([h["train_loss"] for h in kept.history[1:]])
    np.testing.assert_allclose(got, fresh, rtol=1e-4)
    assert np.abs(got - carried).max() > 100 * np.abs(got - fresh).max()
