"""The training loop (SPEC 4): masks held through SGD, best-val-loss reload, divergence,
determinism, and the confusion matrix evaluate() returns."""
import numpy as np
import pytest
import torch
from torch import nn

from prunescope.data.device import DeviceImages
from prunescope.models import build_model
from prunescope.train import Recipe, TrainingDiverged, evaluate, fit, predict

QUICK = Recipe(schedule=((2, 0.02),), batch_size=64)


def state(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_fit_learns_and_reports_history(quadrants):
    train, val = quadrants
    model = build_model("lenet5", 4, 1, seed=0)
    calls = []
    res = fit(model, train, val, QUICK, seed=0, progress=lambda s, t, i: calls.append((s, t, i)))
    assert len(res.history) == 2
    h = res.history[-1]
    assert set(h) == {"epoch", "lr", "steps", "train_loss", "val_loss", "val_acc", "seconds",
                      "images_per_s"}
    assert h["steps"] == 8 and h["lr"] == 0.02 and h["images_per_s"] > 0
    assert max(r["val_acc"] for r in res.history) > 0.9  # chance is 0.25
    step_calls = [c for c in calls if "loss" in c[2]]
    assert [c[0] for c in step_calls] == list(range(1, 17)) and step_calls[0][1] == 16
    assert [c[2]["epoch"] for c in calls if "val_loss" in c[2]] == [1, 2]
    assert not model.training


def test_masks_stay_exactly_zero_with_momentum_and_decay(quadrants):
    """SPEC 3: pruned weights stay exactly zero through momentum and weight decay."""
    train, val = quadrants
    model = build_model("resnet20", 4, 1, seed=1)
    gen = torch.Generator().manual_seed(0)
    names = ["conv1.weight", "layer1.0.conv1.weight", "layer3.2.conv2.weight", "classifier.weight"]
    params = dict(model.named_parameters())
    masks = {n: torch.rand(params[n].shape, generator=gen) < 0.5 for n in names}
    before = state(model)
    recipe = Recipe(schedule=((1, 0.05), (1, 0.01)), momentum=0.9, weight_decay=5e-3,
                    batch_size=64, max_steps_per_epoch=3)
    fit(model, train, val, recipe, seed=0, masks=masks)
    params = dict(model.named_parameters())
    for n, m in masks.items():
        assert torch.count_nonzero(params[n][~m]) == 0, n
        kept = params[n][m]
        assert not torch.equal(kept, before[n][m]), f"unmasked weights of {n} must train"
    assert not torch.equal(params["layer2.0.conv1.weight"], before["layer2.0.conv1.weight"])


def test_foreach_masking_equals_the_per_parameter_loop_bitwise(quadrants, monkeypatch):
    """fit masks gradients and weights with one ``torch._foreach_mul_`` each; the result is
    bit-identical to the former parameter-by-parameter ``mul_`` (written here as the reference),
    and a masked parameter without a gradient (unused by the loss) is skipped as before."""
    import prunescope.train.loop as loop

    class WithSpare(nn.Module):
        def __init__(self):
            super().__init__()
            self.net = build_model("resnet20", 4, 1, seed=3)
            self.spare = nn.Parameter(torch.randn(7, generator=torch.Generator().manual_seed(1)))

        def forward(self, x):
            return self.net(x)

    train, val = quadrants
    gen = torch.Generator().manual_seed(2)
    recipe = Recipe(schedule=((1, 0.05), (1, 0.01)), momentum=0.9, weight_decay=5e-3,
                    batch_size=64, max_steps_per_epoch=3)

    def masks_for(model):
        return {n: torch.rand(p.shape, generator=gen) < 0.6 for n, p in model.named_parameters()
                if n.endswith("weight") or n == "spare"}

    def run(model, masks):
        res = fit(model, train, val, recipe, seed=4, masks=masks)
        return state(model), res.history

    model = WithSpare()
    masks = masks_for(model)
    got = run(model, masks)

    def per_param_params(params, ms):
        with torch.no_grad():
            for p, m in zip(params, ms):
                p.mul_(m)

    def per_param_grads(params, ms):
        with torch.no_grad():
            for p, m in zip(params, ms):
                if p.grad is not None:
                    p.grad.mul_(m)

    monkeypatch.setattr(loop, "_mask_params", per_param_params)
    monkeypatch.setattr(loop, "_mask_grads", per_param_grads)
    want = run(WithSpare(), masks)
    assert set(got[0]) == set(want[0])
    for k in want[0]:
        assert torch.equal(got[0][k], want[0][k]), k
    assert [h["val_loss"] for h in got[1]] == [h["val_loss"] for h in want[1]]
    assert torch.count_nonzero(got[0]["spare"][~masks["spare"]]) == 0


def test_mask_errors(quadrants):
    train, val = quadrants
    model = build_model("lenet5", 4, 1)
    with pytest.raises(ValueError, match="names no parameter"):
        fit(model, train, val, QUICK, 0, masks={"conv9.weight": torch.ones(1)})
    with pytest.raises(ValueError, match="shape"):
        fit(model, train, val, QUICK, 0, masks={"conv1.weight": torch.ones(3)})


def test_keeps_and_reloads_best_val_loss_epoch(quadrants):
    """SPEC 4: keep the weights of the epoch with the lowest validation loss. The validation
    labels are shifted by one class, so learning the training task makes val loss worse after
    the first epoch and the kept epoch is not the last."""
    train, val = quadrants
    bad_val = DeviceImages(val.x, (val.y + 1) % 4, val.mean, val.std)
    model = build_model("lenet5", 4, 1, seed=0)
    snapshots = {}

    def snap(step, total, info):
        if "val_loss" in info:
            snapshots[info["epoch"]] = state(model)

    res = fit(model, train, bad_val, Recipe(schedule=((4, 0.02),), batch_size=64), 0,
              progress=snap)
    losses = [h["val_loss"] for h in res.history]
    assert res.best_epoch == 1 + int(np.argmin(losses))
    assert res.best_epoch < 4
    kept = snapshots[res.best_epoch]
    now = model.state_dict()
    assert all(torch.equal(now[k], kept[k]) for k in kept)
    assert not torch.equal(now["fc1.weight"], snapshots[4]["fc1.weight"])
    assert all(torch.equal(res.state_dict[k], kept[k]) for k in kept)


def test_nan_loss_raises_with_epoch_and_step(quadrants):
    train, val = quadrants
    model = build_model("lenet5", 4, 1)
    with torch.no_grad():
        model.fc2.weight[0, 0] = float("nan")
    with pytest.raises(TrainingDiverged, match="epoch 1, step 1") as err:
        fit(model, train, val, QUICK, 0)
    assert err.value.epoch == 1 and err.value.step == 1


def test_exploding_lr_raises(quadrants):
    train, val = quadrants
    model = build_model("lenet5", 4, 1)
    with pytest.raises(TrainingDiverged, match="diverged"):
        fit(model, train, val, Recipe(schedule=((3, 1e6),), batch_size=64), 0)


def test_same_seed_identical_weights_different_seed_differs(quadrants):
    train, val = quadrants
    recipe = Recipe(schedule=((1, 0.05),), batch_size=64, augment=True, max_steps_per_epoch=4)
    runs = []
    for seed in (5, 5, 6):
        model = build_model("resnet20", 4, 1, seed=0)  # same init: only data order differs
        fit(model, train, val, recipe, seed=seed)
        runs.append(state(model))
    assert all(torch.equal(runs[0][k], runs[1][k]) for k in runs[0])
    assert not torch.equal(runs[0]["conv1.weight"], runs[2]["conv1.weight"])


def test_evaluate_confusion_rows_true_cols_predicted():
    class Fixed(nn.Module):
        """Predicts class (first pixel value) % 3 regardless of the label."""

        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.zeros(1))

        def forward(self, x):
            k = torch.round(x[:, 0, 0, 0] * 255).long() % 3
            return nn.functional.one_hot(k, 3).float() + self.w

    x = np.zeros((7, 2, 2, 1), np.uint8)
    x[:, 0, 0, 0] = [0, 1, 2, 0, 1, 1, 2]
    y = np.array([0, 0, 2, 1, 1, 1, 2])
    images = DeviceImages(x, y, [0.0], [1.0])
    assert predict(Fixed(), images, batch_size=3).tolist() == [0, 1, 2, 0, 1, 1, 2]
    cm = evaluate(Fixed(), images, 3, batch_size=3)
    assert cm.dtype == np.int64
    assert cm.tolist() == [[1, 1, 0], [1, 2, 0], [0, 0, 2]]
    assert cm.sum(1).tolist() == np.bincount(y).tolist()
    with pytest.raises(ValueError, match="num_classes"):
        evaluate(Fixed(), images, 2)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA to have two devices")
def test_device_mismatch_error(quadrants):
    train, val = quadrants
    model = build_model("lenet5", 4, 1).cuda()
    with pytest.raises(ValueError, match="DeviceImages"):
        fit(model, train, val, QUICK, 0)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_fit_on_cuda_holds_masks(quadrants):
    train, val = (s.to("cuda") for s in quadrants)
    model = build_model("resnet20", 4, 1, seed=0).cuda()
    mask = torch.rand(model.conv1.weight.shape, generator=torch.Generator().manual_seed(0)) < 0.5
    res = fit(model, train, val, Recipe(schedule=((2, 0.05),), batch_size=64, augment=True), 0,
              masks={"conv1.weight": mask.cuda()})
    assert torch.count_nonzero(model.conv1.weight[~mask.cuda()]) == 0
    assert max(h["val_acc"] for h in res.history) > 0.5
    assert evaluate(model, val, 4).sum() == len(val)


def test_deferred_loss_checks_change_nothing_but_sync_points(quadrants):
    """sync_every > 1 (the GPU default) trains identically and still names the first bad step."""
    train, val = quadrants
    recipe = Recipe(schedule=((1, 0.05),), batch_size=64, max_steps_per_epoch=6)
    states, calls = [], []
    for every in (1, 4):
        model = build_model("lenet5", 4, 1, seed=0)
        res = fit(model, train, val, recipe, 0, sync_every=every,
                  progress=lambda s, t, i: calls.append((every, s, "loss" in i)))
        states.append((state(model), res.history[0]["train_loss"]))
    assert all(torch.equal(states[0][0][k], states[1][0][k]) for k in states[0][0])
    assert states[0][1] == states[1][1]
    steps = [(s, has_loss) for e, s, has_loss in calls if e == 4]
    # every step is reported (a rewind capture needs its exact step); the loss only where read
    assert steps == [(1, False), (2, False), (3, False), (4, True), (5, False), (6, False),
                     (6, False)]
    model = build_model("lenet5", 4, 1)
    with torch.no_grad():
        model.fc1.bias[0] = float("inf")
    with pytest.raises(TrainingDiverged, match="epoch 1, step 1"):
        fit(model, train, val, recipe, 0, sync_every=4)
    with pytest.raises(ValueError, match="sync_every"):
        fit(model, train, val, recipe, 0, sync_every=0)


def test_stop_after_step_is_the_full_runs_state_at_that_step(quadrants):
    """``stop_after_step=k`` ends the run right after optimiser step k (across an epoch
    boundary too): its state is bitwise the state a full run has after step k (LTH rewinding
    no longer stops fit by raising from a progress callback)."""
    from prunescope.prune import RewindCapture

    train, val = quadrants
    for k in (3, 11):  # 8 steps per epoch: inside epoch 1, inside epoch 2
        full = build_model("lenet5", 4, 1, seed=2)
        cap = RewindCapture(full, k)
        fit(full, train, val, QUICK, seed=4, progress=cap)
        model = build_model("lenet5", 4, 1, seed=2)
        steps = []
        res = fit(model, train, val, QUICK, seed=4, stop_after_step=k,
                  progress=lambda s, t, i: steps.append(s))
        assert max(steps) == k and res.best_epoch == 0 and len(res.history) == k // 8
        for n, v in cap.state.items():
            assert torch.equal(res.state_dict[n].cpu(), v), (k, n)
            assert torch.equal(model.state_dict()[n].cpu(), v), (k, n)
    with pytest.raises(ValueError, match="outside the run's 1..16"):
        fit(build_model("lenet5", 4, 1, seed=2), train, val, QUICK, seed=4, stop_after_step=17)


def test_stopping_and_resuming_is_the_uninterrupted_run(quadrants):
    """``fit(stop_after_step=k)`` then ``fit(start_step=k, optimizer_state=...)`` (inside an epoch
    and at an epoch boundary) ends bitwise where one uninterrupted run ends: same schedule
    position, data stream and momentum; the resumed history holds the epochs from k on."""
    train, val = quadrants
    recipe = Recipe(schedule=((1, 0.05), (2, 0.01)), batch_size=64, max_steps_per_epoch=4)
    full = build_model("lenet5", 4, 1, seed=2)
    ref = fit(full, train, val, recipe, seed=4, stop_after_step=12)  # the run's last step
    for k in (3, 4, 6):
        model = build_model("lenet5", 4, 1, seed=2)
        first = fit(model, train, val, recipe, seed=4, stop_after_step=k)
        steps = []
        rest = fit(model, train, val, recipe, seed=4, start_step=k, stop_after_step=12,
                   optimizer_state=first.optimizer_state, progress=lambda s, t, i: steps.append(s))
        assert steps[0] == k + 1 and steps[-1] == 12
        for n, v in ref.state_dict.items():
            assert torch.equal(rest.state_dict[n], v), (k, n)
        assert [h["epoch"] for h in rest.history] == list(range(k // 4 + 1, 3))
        assert rest.history[0]["steps"] == 4 - k % 4
    # fresh momentum (LTH retraining from its rewinding step): a different, valid run
    model = build_model("lenet5", 4, 1, seed=2)
    first = fit(model, train, val, recipe, seed=4, stop_after_step=6)
    fresh = fit(model, train, val, recipe, seed=4, start_step=6)
    assert fresh.best_epoch in (2, 3) and len(fresh.history) == 2
    with pytest.raises(ValueError, match="start_step=12 is outside the run's 0..11"):
        fit(build_model("lenet5", 4, 1), train, val, recipe, seed=4, start_step=12)
