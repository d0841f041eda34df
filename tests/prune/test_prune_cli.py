"""`prunescope prune` and the API behind it (prune, fine-tune with the mask held, save)."""
import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from prunescope import data as D
from prunescope.cli import app
from prunescope.data.device import DeviceImages
from prunescope.models import build_model
from prunescope.prune.finetune import finetune_recipe, prune_and_finetune
from prunescope.train import Recipe, evaluate, load_checkpoint, save_checkpoint

META = {"arch": "lenet5", "num_classes": 10, "in_channels": 1, "image_size": 28,
        "weight_decay": 5e-4, "dataset": "mnist", "n_val": 5000, "split_seed": 0, "seed": 0}


def images(n, seed):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 256, (n, 28, 28, 1), generator=gen, dtype=torch.uint8)
    return DeviceImages(x, torch.randint(0, 10, (n,), generator=gen), (0.13,), (0.31,))


def test_finetune_recipe_is_the_spec_schedule_scaled():
    assert finetune_recipe("resnet56").schedule == ((10, 0.1), (5, 0.01), (5, 0.001), (5, 0.0001))
    assert finetune_recipe("resnet56", 5).schedule == ((2, 0.1), (1, 0.01), (1, 0.001), (1, 0.0001))
    assert finetune_recipe("lenet5", 3, 7) == Recipe(schedule=((3, 0.01),), max_steps_per_epoch=7)


def test_prune_and_finetune_records_ratio_accuracies_and_holds_masks():
    model = build_model("lenet5", 10, 1, seed=0)
    train, val, test = images(64, 1), images(32, 2), images(48, 3)
    recipe = finetune_recipe("lenet5", 2, 2)
    run = prune_and_finetune(model, META, train, val, test, "up", 4.0, recipe=recipe,
                             grad_mode="batches", grad_batches=1, seed=5)
    res = run.result
    assert abs(res.n_total / 4.0 - res.n_nonzero) <= 0.5
    named = dict(model.named_parameters())
    assert all((named[n][~m] == 0).all() for n, m in res.masks.items())
    assert run.acc_finetuned == np.trace(evaluate(model, test, 10)) / 48
    assert run.meta["pruning"]["achieved_ratio"] == res.achieved_ratio
    assert run.meta["parent_weight_decay"] == 5e-4 and run.meta["method"] == "up"
    assert run.meta["epochs"] == 2 and run.fit is not None
    json.dumps(run.meta)  # the sidecar must be JSON


def test_prune_without_finetuning_keeps_pruned_weights_and_parent_decay():
    model = build_model("lenet5", 10, 1, seed=0)
    run = prune_and_finetune(model, META, images(64, 1), images(32, 2), images(48, 3), "rp", 2.0,
                             finetune=False, seed=1)
    assert run.fit is None and run.acc_finetuned == run.acc_pruned
    assert run.meta["weight_decay"] == 5e-4 and "recipe" not in run.meta


def _mnist_available():
    try:
        D.load("mnist", "test")
    except Exception:  # noqa: BLE001  (any failure means: not in the local cache)
        return False
    return True


@pytest.mark.slow  # real MNIST: 55k-image split, 10k test images evaluated three times
@pytest.mark.skipif(not _mnist_available(), reason="MNIST is not cached: run `prunescope data fetch mnist`")
def test_cli_prunes_finetunes_and_writes_checkpoint(tmp_path):
    dense = tmp_path / "dense.safetensors"
    save_checkpoint(dense, build_model("lenet5", 10, 1, seed=0), META)
    out = tmp_path / "pruned.safetensors"
    result = CliRunner().invoke(app, [
        "prune", str(dense), "--method", "up", "--ratio", "20", "--scope", "layer",
        "--finetune-epochs", "1", "--max-steps-per-epoch", "3", "--grad-mode", "batches",
        "--grad-batches", "2", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "achieved ratio" in result.output and "test accuracy: dense" in result.output
    model, meta, masks = load_checkpoint(out)
    assert meta["pruning"]["requested_ratio"] == 20.0 and meta["pruning"]["scope"] == "layer"
    assert abs(meta["pruning"]["n_total"] / 20 - meta["pruning"]["n_nonzero"]) <= 0.5
    assert f"{meta['pruning']['achieved_ratio']:.4f}" in result.output
    assert f"fine-tuned {meta['metrics']['test_acc']:.4f}" in result.output
    assert set(masks) == {"conv1.weight", "conv2.weight", "fc1.weight", "fc2.weight"}
    named = dict(model.named_parameters())
    assert all((named[n][~m] == 0).all() for n, m in masks.items())


def test_cli_rejects_bad_input_clearly(tmp_path):
    dense = tmp_path / "dense.safetensors"
    save_checkpoint(dense, build_model("lenet5", 10, 1, seed=0), META)
    runner = CliRunner()
    bad = runner.invoke(app, ["prune", str(dense), "--method", "xp"])
    assert bad.exit_code != 0 and "one of mp, gp, up, rp" in bad.output
    bad = runner.invoke(app, ["prune", str(dense), "--method", "mp", "--grad-mode", "batches"])
    assert bad.exit_code != 0 and "only apply to methods that read" in bad.output
    bad = runner.invoke(app, ["prune", str(dense), "--method", "gp", "--grad-mode", "batches"])
    assert bad.exit_code != 0 and "--grad-batches None is invalid" in bad.output
    missing = runner.invoke(app, ["prune", str(tmp_path / "nope.safetensors")])
    assert missing.exit_code == 1 and "no checkpoint" in missing.output


@pytest.mark.parametrize("damage", ["truncated", "sidecar not json"])
def test_prune_cli_on_a_damaged_checkpoint_is_one_line(tmp_path, damage):
    """Issue 23: `prunescope prune` on a truncated .safetensors (on main: a SafetensorError
    traceback) or beside a sidecar that is not JSON (JSONDecodeError) prints one line."""
    path = save_checkpoint(tmp_path / "m.safetensors", build_model("lenet5", 10, 1, seed=0), META)
    if damage == "truncated":
        path.write_bytes(path.read_bytes()[:1000])
    else:
        (tmp_path / "m.safetensors.json").write_bytes(b"\xff{not json")
    result = CliRunner().invoke(app, ["prune", str(path), "--device", "cpu"])
    assert result.exit_code == 1, result.output
    lines = [ln for ln in result.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and "m.safetensors" in lines[0], result.output
    assert "Traceback" not in result.output
