"""Iterative magnitude pruning with weight rewinding (SPEC 3, last bullet: lottery-ticket style,
20% of the remaining weights per level, rewinding to an early iterate; ratio as defined in SPEC 3
"Pruning ratio")."""
import math

import pytest
import torch

import prunescope.prune.iterative as iterative
from prunescope.data.device import DeviceImages
from prunescope.models import build_model
from prunescope.prune import UnreachableRatioError, count_parameters, make_masks, prunable
from prunescope.prune.iterative import (
    RewindCapture,
    imp_keep_count,
    imp_schedule,
    iterative_magnitude_pruning,
)
from prunescope.train import Recipe, fit

# 2 epochs x 3 steps = 6 optimiser steps per fit; LeNet-5 on 16 images per step
RECIPE = Recipe(schedule=((1, 0.05), (1, 0.02)), momentum=0.9, nesterov=True, weight_decay=5e-3,
                batch_size=16, max_steps_per_epoch=3, val_batch_size=64)
REWIND = 4


def images(n, seed):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 256, (n, 28, 28, 1), generator=gen, dtype=torch.uint8)
    return DeviceImages(x, torch.randint(0, 10, (n,), generator=gen), (0.13,), (0.31,))


TRAIN, VAL = images(64, 1), images(32, 2)


def lenet():
    return build_model("lenet5", 10, 1, seed=3)


@pytest.fixture(scope="module")
def run():
    """Three levels of IMP on LeNet-5, with the model state seen at the start of every full fit
    (the dense run and each level's retraining)."""
    starts = []
    real_fit = iterative.fit

    def spying_fit(model, train, val, recipe, seed, masks=None, progress=None, **kw):
        if "stop_after_step" not in kw:  # the full runs, not the rewind point's partial one
            starts.append(({k: v.clone() for k, v in model.state_dict().items()}, masks))
        return real_fit(model, train, val, recipe, seed, masks=masks, progress=progress, **kw)

    calls = []

    def on_level(level, model, mask_result, fit_result):
        calls.append((level, {k: v.clone() for k, v in model.state_dict().items()}, mask_result,
                      fit_result))

    mp = pytest.MonkeyPatch()
    mp.setattr(iterative, "fit", spying_fit)
    try:
        records = iterative_magnitude_pruning(lenet(), TRAIN, VAL, RECIPE, seed=5,
                                              rewind_steps=REWIND, levels=3, on_level=on_level)
    finally:
        mp.undo()
    return records, starts, calls


def expected_rewind_state():
    """The dense run's state after REWIND steps, from an independent identical fit."""
    model = lenet()
    cap = RewindCapture(model, REWIND)
    fit(model, TRAIN, VAL, RECIPE, seed=5, progress=cap)
    return cap.state


def test_kept_count_and_ratio_follow_point_eight_to_the_level(run):
    records, _, _ = run
    model = lenet()
    n_total = count_parameters(model)
    n_prunable = sum(p.numel() for p in prunable(model).values())
    n_fixed = n_total - n_prunable
    assert [r.level for r in records] == [0, 1, 2, 3]
    assert records[0].achieved_ratio == 1.0 and records[0].mask_result is None
    for r in records[1:]:
        kept = sum(int(m.sum()) for m in r.masks.values())
        assert abs(kept - n_prunable * 0.8 ** r.level) <= 0.5  # within one weight
        assert kept == imp_keep_count(n_prunable, 0.2, r.level)
        assert r.achieved_ratio == n_total / (n_fixed + kept)
        formula = n_total / (n_fixed + n_prunable * 0.8 ** r.level)
        assert r.achieved_ratio == pytest.approx(formula, abs=formula ** 2 / n_total)
        assert r.mask_result.achieved_ratio == r.achieved_ratio
        assert set(r.masks) == set(prunable(model))
        for n, m in r.masks.items():
            assert r.densities[n] == pytest.approx(int(m.sum()) / m.numel())
    # the planner's view, from counts alone, is what the run achieved
    assert imp_schedule(model, levels=3) == [r.achieved_ratio for r in records[1:]]


@pytest.mark.parametrize("arch,in_ch,fraction,scope,classifier,levels", [
    ("lenet5", 1, 0.2, "global", False, 20),
    ("lenet5", 1, 0.5, "layer", True, 6),
    ("lenet5", 1, 0.35, "global", True, 12),
    ("resnet20", 3, 0.2, "global", False, 8),
    ("resnet20", 3, 0.2, "layer", False, 3),
])
def test_level_masks_equal_the_former_keep_count_to_ratio_round_trip(arch, in_ch, fraction,
                                                                     scope, classifier, levels):
    """``imp_level_masks`` keeps ``imp_keep_count`` weights directly (``keep=``); the masks and
    records are bit-identical to the former computation, inlined here: turn the count into the
    ratio ``n_total / (n_fixed + k)`` and ask ``make_masks`` for that ratio. The weights change
    between levels (as retraining would) so each level ranks anew."""
    model = build_model(arch, 10, in_ch, seed=11)
    params = prunable(model, prune_classifier=classifier)
    n_total = count_parameters(model)
    n_prunable = sum(p.numel() for p in params.values())
    gen = torch.Generator().manual_seed(4)
    prev = None
    for level in range(1, levels + 1):
        with torch.no_grad():
            for p in params.values():
                p.add_(0.05 * torch.randn(p.shape, generator=gen))
        new = iterative.imp_level_masks(model, level, prev, prune_fraction=fraction, scope=scope,
                                        prune_classifier=classifier)
        # the former computation
        k = imp_keep_count(n_prunable, fraction, level)
        scores = {n: p.detach().abs().to("cpu", torch.float64) for n, p in params.items()}
        if prev is not None:
            scores = {n: torch.where(prev[n], s, torch.full_like(s, -1.0))
                      for n, s in scores.items()}
        old = make_masks(model, scores, n_total / (n_total - n_prunable + k), scope=scope)
        assert list(new.masks) == list(old.masks)
        for n in old.masks:
            assert new.masks[n].dtype == old.masks[n].dtype == torch.bool
            assert torch.equal(new.masks[n], old.masks[n]), (level, n)
        assert new.summary() == old.summary()
        assert sum(new.kept.values()) == k
        prev = new.masks


def test_masks_are_nested_and_prune_by_magnitude_of_the_previous_level(run):
    records, _, _ = run
    for prev, cur in zip(records[1:], records[2:]):
        for n, m in cur.masks.items():
            assert not bool((m & ~prev.masks[n]).any()), f"level {cur.level} revived {n}"
        assert sum(int(m.sum()) for m in cur.masks.values()) < sum(
            int(m.sum()) for m in prev.masks.values())
    # level L keeps the largest |theta| of level L-1's trained survivors (global scope)
    for prev, cur in zip(records[:-1], records[1:]):
        kept_min = min(prev.state_dict[n][m].abs().min() for n, m in cur.masks.items() if m.any())
        dropped = [prev.state_dict[n][(~m) & (prev.masks[n] if prev.masks else True)]
                   for n, m in cur.masks.items()]
        dropped_max = max(d.abs().max() for d in dropped if d.numel())
        assert dropped_max <= kept_min


def test_every_level_starts_from_the_rewound_weights(run):
    records, starts, _ = run
    rewind = expected_rewind_state()
    assert len(starts) == 4  # dense run + 3 levels
    assert starts[0][1] is None  # the dense run has no masks
    for level, (state, masks) in enumerate(starts[1:], start=1):
        assert masks is records[level].mask_result.masks
        for k, v in rewind.items():  # weights and BN buffers, survivors and all, bit-identical
            assert torch.equal(state[k], v), (level, k)


def test_masks_are_held_during_retraining_and_survivors_train(run):
    records, _, _ = run
    rewind = expected_rewind_state()
    for r in records[1:]:
        for n, m in r.masks.items():
            assert (r.state_dict[n][~m] == 0).all(), (r.level, n)
        moved = [n for n, m in r.masks.items() if not torch.equal(r.state_dict[n][m], rewind[n][m])]
        assert moved, f"level {r.level}: no surviving weight changed in retraining"


def test_on_level_sees_each_level_as_recorded(run):
    records, _, calls = run
    assert [c[0] for c in calls] == [0, 1, 2, 3]
    assert calls[0][2] is None and calls[0][3] is not None
    for (level, state, mask_result, fit_result), r in zip(calls, records):
        assert fit_result.history == r.history and fit_result.best_epoch == r.best_epoch
        assert r.val_loss == fit_result.history[r.best_epoch - 1]["val_loss"]
        for k, v in r.state_dict.items():
            assert torch.equal(state[k], v)
        if level:
            assert mask_result is r.mask_result


def test_target_ratio_stops_at_the_first_level_past_it():
    records = iterative_magnitude_pruning(lenet(), TRAIN, VAL, RECIPE.with_epochs(1), seed=0,
                                          rewind_steps=1, target_ratio=2.0)
    # LeNet-5: 61,706 params, 60,630 prunable: 0.8^3 gives 1.92, 0.8^4 gives 2.38
    assert [r.level for r in records] == [0, 1, 2, 3, 4]
    assert records[-2].achieved_ratio < 2.0 <= records[-1].achieved_ratio
    assert imp_schedule(lenet(), target_ratio=2.0) == [r.achieved_ratio for r in records[1:]]


def test_trained_parent_with_captured_rewind_state_gives_the_same_levels(run):
    records, _, _ = run
    model = lenet()
    cap = RewindCapture(model, REWIND)
    fit(model, TRAIN, VAL, RECIPE, seed=5, progress=cap)
    again = iterative_magnitude_pruning(model, TRAIN, VAL, RECIPE, seed=5, levels=1,
                                        rewind_state=cap.state)
    assert again[0].history == [] and math.isnan(again[0].val_acc)
    for n, m in records[1].masks.items():
        assert torch.equal(again[1].masks[n], m)
    for k, v in records[1].state_dict.items():
        assert torch.equal(again[1].state_dict[k], v)


def test_rewind_to_initialisation():
    init = lenet().state_dict()
    starts = []
    real_fit = iterative.fit

    def spying_fit(model, *args, masks=None, **kw):
        if masks is not None:
            starts.append({k: v.clone() for k, v in model.state_dict().items()})
        return real_fit(model, *args, masks=masks, **kw)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(iterative, "fit", spying_fit)
        iterative_magnitude_pruning(lenet(), TRAIN, VAL, RECIPE.with_epochs(1), seed=0,
                                    rewind_steps=0, levels=1)
    assert len(starts) == 1
    for k, v in init.items():
        assert torch.equal(starts[0][k], v)


def test_rewind_capture_forwards_progress_and_copies_once():
    model = lenet()
    init = {k: v.clone() for k, v in model.state_dict().items()}
    seen = []
    cap = RewindCapture(model, 2, then=lambda s, t, i: seen.append(s))
    fit(model, TRAIN, VAL, RECIPE, seed=0, progress=cap)
    assert seen[:3] == [1, 2, 3] and len(seen) == 6 + 2  # 6 steps + one call per epoch
    assert cap.state is not None and set(cap.state) == set(model.state_dict())
    # mid-epoch, so neither the initialisation nor a kept epoch's end
    assert any(not torch.equal(cap.state[k], v) for k, v in model.state_dict().items())
    assert any(not torch.equal(cap.state[k], v) for k, v in init.items())
    with pytest.raises(ValueError, match="step >= 1"):
        RewindCapture(model, 0)


def test_rewind_capture_with_deferred_loss_checks():
    """SPEC 3 rewinding to an early iterate on the GPU path: ``fit`` reads the loss only every
    ``sync_every`` steps there (25 on CUDA), and the capture must still land on its exact step
    (here step 5 with sync_every=4: neither a sync step nor an epoch end)."""
    caps = []
    for every in (1, 4):
        model = lenet()
        cap = RewindCapture(model, 5)
        fit(model, TRAIN, VAL, RECIPE, seed=5, progress=cap, sync_every=every)
        caps.append(cap.state)
    assert caps[1] is not None
    assert set(caps[0]) == set(caps[1]) and all(torch.equal(caps[0][k], caps[1][k]) for k in caps[0])


def test_bad_arguments_are_refused_with_the_reason():
    with pytest.raises(ValueError, match="levels=.*target_ratio"):
        iterative_magnitude_pruning(lenet(), TRAIN, VAL, RECIPE, seed=0)
    with pytest.raises(ValueError, match="rewind_steps=500 exceeds the 6"):
        iterative_magnitude_pruning(lenet(), TRAIN, VAL, RECIPE, seed=0, levels=1)
    with pytest.raises(ValueError, match="prune_fraction"):
        iterative_magnitude_pruning(lenet(), TRAIN, VAL, RECIPE, seed=0, levels=1,
                                    prune_fraction=1.0)
    with pytest.raises(UnreachableRatioError, match="largest ratio is 57.3"):
        iterative_magnitude_pruning(lenet(), TRAIN, VAL, RECIPE, seed=0, target_ratio=60.0)
    with pytest.raises(ValueError, match="rewind_state lacks"):
        iterative_magnitude_pruning(lenet(), TRAIN, VAL, RECIPE, seed=0, levels=1,
                                    rewind_state={})


def test_a_level_that_would_prune_nothing_is_refused():
    # 2-layer toy: 4 prunable weights; 0.2 of them: 4 -> 3 -> 3 (2.56 rounds to 3)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(1, 4, bias=False),
                                torch.nn.Linear(4, 10))
    tiny = DeviceImages(torch.randint(0, 256, (8, 1, 1, 1), dtype=torch.uint8),
                        torch.arange(8), (0.5,), (0.3,))
    with pytest.raises(ValueError, match="level 2 would prune nothing"):
        iterative_magnitude_pruning(model, tiny, tiny, RECIPE.with_epochs(1), seed=0,
                                    rewind_steps=1, levels=3)


def test_resume_schedule_retrains_from_the_rewinding_step():
    """``resume_schedule=True`` (Frankle et al.): each level trains only steps REWIND+1.. of the
    dense recipe (RECIPE: 2 epochs x 3 steps; REWIND = 4: 2 steps of epoch 2), at epoch 2's rate."""
    records = iterative_magnitude_pruning(lenet(), TRAIN, VAL, RECIPE, seed=5,
                                          rewind_steps=REWIND, levels=2, resume_schedule=True)
    assert [len(r.history) for r in records] == [2, 1, 1]
    for r in records[1:]:
        assert r.history[0]["epoch"] == 2 and r.history[0]["steps"] == 2
        assert r.history[0]["lr"] == 0.02
    with pytest.raises(ValueError, match="retrain_recipe only without"):
        iterative_magnitude_pruning(lenet(), TRAIN, VAL, RECIPE, seed=5, rewind_steps=REWIND,
                                    levels=1, resume_schedule=True, retrain_recipe=RECIPE)
