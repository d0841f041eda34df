"""Short real trainings on MNIST (issue 2): the loop learns real data, and `prunescope train`
works end to end. Skipped with a reason when the MNIST cache cannot be filled."""
import numpy as np
import pytest
from typer.testing import CliRunner

from prunescope import data as D
from prunescope.cli import app
from prunescope.data.device import DeviceImages
from prunescope.models import build_model
from prunescope.train import Recipe, evaluate, fit, load_checkpoint


@pytest.fixture(scope="module")
def mnist():
    try:
        return D.load("mnist", "train"), D.load("mnist", "test")
    except (D.FetchError, OSError) as e:
        pytest.skip(f"MNIST is not cached and could not be fetched: {e}")


def test_lenet5_few_thousand_mnist_images_beats_chance_by_far(mnist):
    train_set, test_set = mnist
    info = D.info("mnist")
    tr_idx, val_idx = D.train_val_indices(train_set.y, n_val=1000, seed=0)
    full = DeviceImages(train_set.x, train_set.y, info.mean, info.std)
    train = full.subset(tr_idx[:4000])
    val = full.subset(val_idx)
    test = DeviceImages(test_set.x[:2000], test_set.y[:2000], info.mean, info.std)
    model = build_model("lenet5", 10, 1, seed=0)
    res = fit(model, train, val, Recipe(schedule=((3, 0.05),)), seed=0)
    cm = evaluate(model, test, 10)
    acc = np.trace(cm) / cm.sum()
    assert cm.sum() == 2000
    assert acc > 0.85, f"test accuracy {acc:.3f} (chance 0.10); history {res.history}"


def test_train_command_end_to_end(mnist, tmp_path):
    out = tmp_path / "m.safetensors"
    result = CliRunner().invoke(app, [
        "train", "--dataset", "mnist", "--arch", "lenet5", "--seed", "3", "--epochs", "2",
        "--max-steps-per-epoch", "20", "--n-val", "1000", "--threads", "1", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "test accuracy" in result.output and "recall" in result.output
    model, meta, masks = load_checkpoint(out)
    assert masks is None
    assert (meta["arch"], meta["dataset"], meta["seed"], meta["epochs"]) == ("lenet5", "mnist", 3, 2)
    assert meta["recipe"]["max_steps_per_epoch"] == 20 and meta["weight_decay"] == 5e-4
    assert len(meta["history"]) == 2 and meta["best_epoch"] in (1, 2)
    cm = np.array(meta["metrics"]["test_confusion"])
    assert cm.shape == (10, 10) and cm.sum() == 10_000
    assert meta["metrics"]["test_acc"] == pytest.approx(np.trace(cm) / 1e4)


def test_train_command_rejects_unknown_arch():
    result = CliRunner().invoke(app, ["train", "--dataset", "mnist", "--arch", "vgg"])
    assert result.exit_code != 0
    assert "resnet20" in result.output
