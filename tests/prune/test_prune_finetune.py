"""Fine-tuning with the mask held (SPEC 3): pruned weights stay exactly zero through real SGD steps
with Nesterov momentum and weight decay, in prunescope.train.fit."""
import torch

from prunescope.data.device import DeviceImages
from prunescope.models import build_model
from prunescope.prune import load_masks, prune_model, save_masks
from prunescope.train import Recipe, fit, load_checkpoint, save_checkpoint

RECIPE = Recipe(schedule=((1, 0.05), (1, 0.01)), momentum=0.9, nesterov=True, weight_decay=5e-3,
                batch_size=16, max_steps_per_epoch=4, val_batch_size=64)


def images(n, seed):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 256, (n, 28, 28, 1), generator=gen, dtype=torch.uint8)
    return DeviceImages(x, torch.randint(0, 10, (n,), generator=gen), (0.13,), (0.31,))


def pruned_lenet():
    model = build_model("lenet5", 10, 1, seed=0)
    res = prune_model(model, "mp", 10, scope="layer")  # every layer keeps and prunes some weights
    return model, res


def test_masked_weights_stay_zero_after_every_step():
    model, res = pruned_lenet()
    start = {n: p.detach().clone() for n, p in model.named_parameters()}
    params = dict(model.named_parameters())
    checked = []

    def after_step(step, total, info):
        for n, m in res.masks.items():
            assert torch.equal(params[n][~m], torch.zeros(int((~m).sum()))), (step, n)
        checked.append(step)

    fit(model, images(96, 1), images(32, 2), RECIPE, seed=0, masks=res.masks, progress=after_step)
    assert len(checked) >= 8  # 8 steps plus one call per epoch
    for n, m in res.masks.items():
        assert (params[n][~m] == 0).all()
        assert not torch.equal(params[n][m], start[n][m]), f"{n}: kept weights did not train"


def test_without_masks_the_same_steps_revive_pruned_weights():
    """Control: momentum and weight decay would move the pruned weights if the mask were not held."""
    model, res = pruned_lenet()
    fit(model, images(96, 1), images(32, 2), RECIPE, seed=0)
    params = dict(model.named_parameters())
    assert any((params[n][~m] != 0).any() for n, m in res.masks.items())


def test_pruned_checkpoint_round_trip_is_bit_identical(tmp_path):
    model, res = pruned_lenet()
    meta = {"arch": "lenet5", "num_classes": 10, "in_channels": 1, "weight_decay": 5e-4,
            "pruning": res.summary()}
    save_checkpoint(tmp_path / "p.safetensors", model, meta, masks=res.masks)
    back, back_meta, back_masks = load_checkpoint(tmp_path / "p.safetensors")
    assert back_meta["pruning"]["achieved_ratio"] == res.achieved_ratio
    assert back_meta["pruning"]["densities"] == res.densities
    for n, m in res.masks.items():
        assert torch.equal(back_masks[n], m)
    for n, v in model.state_dict().items():
        assert torch.equal(back.state_dict()[n], v)
    save_masks(tmp_path / "m.safetensors", back_masks)
    assert all(torch.equal(load_masks(tmp_path / "m.safetensors")[n], m) for n, m in res.masks.items())
