"""Masks saved beside the weights and torch.nn.utils.prune interop (issue 3)."""
import pytest
import torch
from torch.nn.utils import prune as torch_prune

from prunescope.models import build_model
from prunescope.prune import (
    from_torch_prune,
    load_masks,
    prunable,
    prune_model,
    save_masks,
    to_torch_prune,
)


@pytest.fixture
def pruned():
    model = build_model("resnet20", 10, 3, seed=2)
    res = prune_model(model, "mp", 10)
    return model, res.masks


def test_masks_reload_bit_identically(tmp_path, pruned):
    _, masks = pruned
    save_masks(tmp_path / "m.safetensors", masks)
    back = load_masks(tmp_path / "m.safetensors")
    assert set(back) == set(masks)
    for n, m in masks.items():
        assert back[n].dtype == torch.bool and torch.equal(back[n], m)
    save_masks(tmp_path / "again.safetensors", back)
    assert (tmp_path / "m.safetensors").read_bytes() == (tmp_path / "again.safetensors").read_bytes()


def test_export_to_torch_prune(pruned):
    model, masks = pruned
    x = torch.randn(2, 3, 32, 32)
    model.eval()
    dense_out = model(x)
    effective = {n: p.detach().clone() for n, p in model.named_parameters()}
    with torch.no_grad():  # give pruned weights a nonzero value underneath the mask
        for n, p in model.named_parameters():
            if n in masks:
                p.add_(~masks[n] * 1.0)
    to_torch_prune(model, masks)
    assert torch_prune.is_pruned(model)
    for n, m in masks.items():
        mod, attr = n.rsplit(".", 1)
        module = model.get_submodule(mod)
        assert torch.equal(getattr(module, attr), effective[n])
        assert torch.equal(getattr(module, attr + "_mask").bool(), m)
    torch.testing.assert_close(model(x), dense_out)


def test_round_trip_through_torch_prune(pruned):
    model, masks = pruned
    to_torch_prune(model, masks)
    back = from_torch_prune(model)
    assert not torch_prune.is_pruned(model)
    assert set(back) == set(masks) and all(torch.equal(back[n], masks[n]) for n in masks)
    assert set(dict(model.named_parameters())) == set(dict(build_model("resnet20", 10, 3).named_parameters()))


def test_import_from_a_model_pruned_by_torch():
    model = build_model("lenet5", 10, 1, seed=0)
    torch_prune.l1_unstructured(model.conv2, "weight", amount=0.5)
    torch_prune.random_unstructured(model.fc1, "weight", amount=0.3)
    torch_prune.l1_unstructured(model.fc1, "weight", amount=0.2)  # a PruningContainer
    expected = {"conv2.weight": model.conv2.weight_mask.bool().clone(),
                "fc1.weight": model.fc1.weight_mask.bool().clone()}
    effective = {"conv2.weight": model.conv2.weight.detach().clone(),
                 "fc1.weight": model.fc1.weight.detach().clone()}
    masks = from_torch_prune(model)
    assert set(masks) == set(expected)
    for n in masks:
        assert torch.equal(masks[n], expected[n])
        assert torch.equal(dict(model.named_parameters())[n], effective[n])
    assert "fc1.weight" in prunable(model)


def test_export_rejects_unknown_names(pruned):
    model, masks = pruned
    with pytest.raises(KeyError, match="names no plain parameter"):
        to_torch_prune(model, {"nope.weight": masks["conv1.weight"]})
