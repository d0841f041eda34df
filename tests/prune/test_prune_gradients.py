"""The data-loss gradient of SPEC 3 ("g ... accumulated over the training split") in its three modes."""
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from prunescope.data.device import DeviceImages
from prunescope.prune import data_gradients

N = 37


def images(n=N, seed=0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 256, (n, 6, 6, 3), generator=gen, dtype=torch.uint8)
    y = torch.randint(0, 4, (n,), generator=gen)
    return DeviceImages(x, y, mean=(0.5, 0.4, 0.3), std=(0.2, 0.25, 0.3))


def net(seed=0):
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Conv2d(3, 5, 3), nn.BatchNorm2d(5), nn.ReLU(),
                          nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(5, 4))
    model[1].running_mean.uniform_(-0.5, 0.5)
    model[1].running_var.uniform_(0.5, 2.0)
    return model


def close(a, b):
    assert a.keys() == b.keys()
    for n in a:
        torch.testing.assert_close(a[n], b[n], rtol=1e-5, atol=1e-7, msg=n)


def reference(model, xs, ys, train_mode):
    """Gradient of the mean cross-entropy over xs in one forward pass (no decay term)."""
    model.train(train_mode)
    model.zero_grad()
    F.cross_entropy(model(xs), ys).backward()
    return {n: p.grad.clone() for n, p in model.named_parameters()}


def all_of(imgs):
    return next(imgs.batches(len(imgs)))


def test_full_pass_is_the_gradient_of_the_mean_loss_in_eval_mode():
    model, imgs = net(), images()
    g = data_gradients(model, imgs, batch_size=8)
    assert model.training  # flag restored (nets are built in train mode)
    assert all(p.grad is None for p in model.parameters())  # .grad untouched
    close(g, reference(net(), *all_of(imgs), train_mode=False))


def test_full_pass_does_not_depend_on_batch_size():
    model, imgs = net(), images()
    close(data_gradients(model, imgs, batch_size=5), data_gradients(model, imgs, batch_size=N))


def test_batches_covering_everything_equal_the_full_pass():
    model, imgs = net(), images()
    full = data_gradients(model, imgs, batch_size=10)
    close(data_gradients(model, imgs, mode="batches", n_batches=math.ceil(N / 10), batch_size=10),
          full)
    part = data_gradients(model, imgs, mode="batches", n_batches=1, batch_size=10)
    assert any(not torch.allclose(part[n], full[n]) for n in full)


def test_batches_use_the_first_batches_of_the_seeded_shuffle():
    model, imgs = net(), images()
    order = torch.randperm(N, generator=torch.Generator().manual_seed(3))[:20]
    sub = imgs.subset(order.numpy())
    expected = reference(net(), *all_of(sub), train_mode=False)
    close(data_gradients(model, imgs, mode="batches", n_batches=2, batch_size=10, seed=3), expected)


def test_shrinkbench_is_one_train_mode_batch_and_restores_bn_stats():
    model, imgs = net(), images(n=300)
    model.eval()
    before = {n: b.clone() for n, b in model.named_buffers()}
    g = data_gradients(model, imgs, mode="shrinkbench", seed=4)
    for n, b in model.named_buffers():
        assert torch.equal(b, before[n]), f"buffer {n} changed"
    assert not model.training and not model[1].training
    order = torch.randperm(300, generator=torch.Generator().manual_seed(4))[:128]
    expected = reference(net(), *all_of(imgs.subset(order.numpy())), train_mode=True)
    close(g, expected)
    eval_g = data_gradients(model, imgs.subset(order.numpy()), mode="full")
    assert any(not torch.allclose(g[n], eval_g[n]) for n in g)  # train-mode BN really was used


def test_shrinkbench_augmented_is_the_forks_training_loader_batch():
    """``augment=True`` (the paper-code protocol on augmenting recipes): the same 128 images of
    the seeded shuffle, each zero-padded by 4, cropped at the offsets and flipped as drawn after
    the shuffle (re-expressed here in NumPy), the gradient taken in train mode."""
    model, imgs = net(), images(n=300)
    g = data_gradients(model, imgs, mode="shrinkbench", seed=4, augment=True)
    gen = torch.Generator().manual_seed(4)
    order = torch.randperm(300, generator=gen)[:128]
    offsets = torch.randint(0, 9, (128, 2), generator=gen).numpy()
    flips = (torch.rand(128, generator=gen) < 0.5).numpy()
    raw = imgs.subset(order.numpy())
    x = raw.x.cpu().numpy()  # (128, 6, 6, 3) uint8
    padded = np.pad(x, ((0, 0), (4, 4), (4, 4), (0, 0)))
    crops = np.stack([padded[b, oy:oy + 6, ox:ox + 6] for b, (oy, ox) in enumerate(offsets)])
    crops = np.where(flips[:, None, None, None], crops[:, :, ::-1], crops)
    xs = imgs.normalize(torch.from_numpy(crops.copy()))
    close(g, reference(net(), xs, raw.y, train_mode=True))
    plain = data_gradients(model, imgs, mode="shrinkbench", seed=4)
    assert any(not torch.allclose(g[n], plain[n]) for n in g)
    with pytest.raises(ValueError, match="augment is only used with mode='shrinkbench'"):
        data_gradients(model, imgs, mode="full", augment=True)


def test_bad_arguments_are_explained():
    model, imgs = net(), images()
    with pytest.raises(ValueError, match="n_batches >= 1"):
        data_gradients(model, imgs, mode="batches")
    with pytest.raises(ValueError, match="unknown gradient mode"):
        data_gradients(model, imgs, mode="all")
    with pytest.raises(ValueError, match="only used with mode='batches'"):
        data_gradients(model, imgs, n_batches=2)
