"""Checkpoints: safetensors + JSON sidecar, bit-identical round trip (issue 2)."""
import json

import pytest
import torch

import prunescope
from prunescope.models import build_model
from prunescope.train import Recipe, fit, load_checkpoint, save_checkpoint, sidecar_path


def test_round_trip_bit_identical_with_masks_and_buffers(tmp_path, quadrants):
    train, val = quadrants
    model = build_model("resnet20", 4, 1, seed=2)
    recipe = Recipe(schedule=((1, 0.05),), batch_size=64, max_steps_per_epoch=2)
    res = fit(model, train, val, recipe, seed=0)  # non-trivial BN running statistics
    masks = {"layer1.0.conv1.weight": torch.rand(16, 16, 3, 3) < 0.3}
    meta = {"arch": "resnet20", "num_classes": 4, "in_channels": 1, "recipe": recipe,
            "seed": 0, "epochs": recipe.epochs, "best_epoch": res.best_epoch,
            "metrics": {"val_loss": res.history[0]["val_loss"]}, "dataset": "synthetic"}
    path = save_checkpoint(tmp_path / "sub" / "m.safetensors", model, meta, masks=masks)
    loaded, meta2, masks2 = load_checkpoint(path)
    want = model.state_dict()
    got = loaded.state_dict()
    assert set(got) == set(want)
    for k in want:
        assert got[k].dtype == want[k].dtype and torch.equal(got[k], want[k]), k
    assert torch.equal(masks2["layer1.0.conv1.weight"], masks["layer1.0.conv1.weight"])
    assert meta2["weight_decay"] == recipe.weight_decay  # recorded from the recipe (SPEC 3 UP)
    assert Recipe.from_dict(meta2["recipe"]) == recipe
    assert meta2["prunescope_version"] == prunescope.__version__
    assert meta2["best_epoch"] == res.best_epoch and meta2["dataset"] == "synthetic"
    side = json.loads(sidecar_path(path).read_text())
    assert side == meta2 and sidecar_path(path).name == "m.safetensors.json"
    x = next(val.batches(8))[0]
    assert torch.equal(loaded(x), model.eval()(x))


def test_lenet_without_masks(tmp_path):
    model = build_model("lenet5", 10, 1, seed=1)
    meta = {"arch": "lenet5", "num_classes": 10, "in_channels": 1, "weight_decay": 0.0}
    _, _, masks = load_checkpoint(save_checkpoint(tmp_path / "l.safetensors", model, meta))
    assert masks is None


def test_errors(tmp_path):
    model = build_model("lenet5", 10, 1)
    with pytest.raises(ValueError, match="weight_decay"):
        save_checkpoint(tmp_path / "a.safetensors", model,
                        {"arch": "lenet5", "num_classes": 10, "in_channels": 1})
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        load_checkpoint(tmp_path / "missing.safetensors")
    meta = {"arch": "lenet5", "num_classes": 10, "in_channels": 1, "weight_decay": 1e-4}
    with pytest.raises(ValueError, match="names no parameter"):
        save_checkpoint(tmp_path / "b.safetensors", model, meta, masks={"x": torch.ones(1)})
