"""The paper-code protocol's training options (SPEC 8) against NumPy re-expressions of the
authors' loaders: Fashion-MNIST normalised with ``Normalize((0.5), (0.5))`` on ``ToTensor()``
pixels, and the "validation" loader being the test split with training on all 60,000 images.
Skipped with a reason when Fashion-MNIST cannot be loaded."""
import numpy as np
import pytest
import torch

from prunescope import data as D
from prunescope.catalog.protocol import TrainOptions
from prunescope.study.worker import _train_val
from prunescope.train import device_splits
from prunescope.train.run import dense_meta
from prunescope.train.recipe import Recipe

FORK = TrainOptions(validation="test", normalisation="fork")


@pytest.fixture(scope="module")
def fashion():
    try:
        return D.load("fashion-mnist", "train"), D.load("fashion-mnist", "test")
    except (D.FetchError, OSError) as e:
        pytest.skip(f"Fashion-MNIST is not cached and could not be fetched: {e}")


def _fork_pixels(x_uint8):
    """torchvision's ``ToTensor()`` then ``Normalize((0.5), (0.5))``, NCHW float32."""
    x = x_uint8.astype(np.float32).transpose(0, 3, 1, 2) / 255.0
    return (x - 0.5) / 0.5


def test_fork_normalisation_and_test_split_selection(fashion):
    train_set, test_set = fashion
    _, train, val, test = device_splits("fashion-mnist", 0, 0, training=FORK)
    assert len(train) == 60000 and len(val) == len(test) == 10000
    assert torch.equal(val.y, torch.as_tensor(test_set.y))
    xb, _ = next(val.batches(256))
    np.testing.assert_allclose(xb.numpy(), _fork_pixels(test_set.x[:256]), rtol=0, atol=1e-6)
    # a study's train job reads the same sets from its params
    params = dict(dataset="fashion-mnist", n_val=0, split_seed=0, **FORK.non_default())
    tr, va = _train_val(params, None, "cpu")
    assert len(tr) == 60000 and torch.equal(va.y, torch.as_tensor(test_set.y))
    xt, _ = next(tr.batches(64))
    np.testing.assert_allclose(xt.numpy(), _fork_pixels(train_set.x[:64]), rtol=0, atol=1e-6)


def test_the_sidecar_carries_the_options_to_later_jobs():
    meta = dense_meta("fashion-mnist", "lenet5-shrinkbench", 0, Recipe.paper_lenet(), 0, 0,
                      training=FORK)
    assert (meta["validation"], meta["normalisation"], meta["mean"], meta["std"]) == (
        "test", "fork", [0.5], [0.5])
    assert TrainOptions.of(meta) == FORK
    plain = dense_meta("fashion-mnist", "lenet5-shrinkbench", 0, Recipe.paper_lenet(), 5000, 0)
    assert not {"validation", "normalisation", "mean"} & set(plain)


def test_audit_of_a_paper_code_checkpoint_uses_its_sets_and_normalisation(fashion, tmp_path):
    from prunescope.audit.run import checkpoint_arguments
    from prunescope.models import build_model
    from prunescope.train import save_checkpoint

    _, test_set = fashion
    model = build_model("lenet5-shrinkbench", 10, 1, seed=0, image_size=28)
    meta = dense_meta("fashion-mnist", "lenet5-shrinkbench", 0, Recipe.paper_lenet(), 0, 0,
                      training=FORK)
    path = save_checkpoint(tmp_path / "dense.safetensors", model, meta)
    args = checkpoint_arguments(path)
    assert (list(args["mean"]), list(args["std"])) == ([0.5], [0.5])
    assert np.array_equal(args["val_data"][1], test_set.y)
    assert len(args["train_data"][1]) == 60000
