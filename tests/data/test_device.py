"""Device-resident batches (prunescope.data.device): order, augmentation, normalisation.

SPEC 4: CIFAR augmentation is a random crop with 4-pixel padding plus a horizontal flip, with
per-channel mean/std normalisation; MNIST gets no augmentation.
"""
import numpy as np
import pytest
import torch

from prunescope.data.device import DeviceImages, crop_flip


def make_set(n=50, h=8, w=8, c=3, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.integers(1, 256, (n, h, w, c), dtype=np.uint8)  # no zeros: padding is recognisable
    y = np.arange(n) % 5
    return DeviceImages(x, y, mean=[0.5] * c, std=[0.25] * c), x, y


def gen(seed):
    return torch.Generator().manual_seed(seed)


def collect(ds, seed, **kw):
    return [(xb.clone(), yb.clone()) for xb, yb in ds.batches(16, generator=gen(seed), **kw)]


def test_eval_batches_in_order_and_normalised():
    ds, x, y = make_set()
    got = list(ds.batches(16))
    assert [len(b[1]) for b in got] == [16, 16, 16, 2]
    xs = torch.cat([b[0] for b in got])
    assert xs.shape == (50, 3, 8, 8) and xs.dtype == torch.float32
    expect = (torch.from_numpy(x).float() / 255 - 0.5) / 0.25
    torch.testing.assert_close(xs, expect.permute(0, 3, 1, 2))
    assert torch.equal(torch.cat([b[1] for b in got]), torch.from_numpy(y))


def test_per_channel_normalisation():
    x = np.zeros((2, 2, 2, 3), dtype=np.uint8)
    x[..., 1] = 255
    ds = DeviceImages(x, np.zeros(2, dtype=np.int64), mean=[0.0, 0.5, 1.0], std=[1.0, 0.5, 2.0])
    (xb, _), = ds.batches(2)
    assert torch.allclose(xb[:, 0], torch.tensor(0.0))
    assert torch.allclose(xb[:, 1], torch.tensor(1.0))
    assert torch.allclose(xb[:, 2], torch.tensor(-0.5))


@pytest.mark.parametrize("augment", [False, True])
def test_shuffle_deterministic_for_a_seed_and_different_across_seeds(augment):
    ds, _, y = make_set()
    a = collect(ds, 1, shuffle=True, augment=augment)
    b = collect(ds, 1, shuffle=True, augment=augment)
    c = collect(ds, 2, shuffle=True, augment=augment)
    assert all(torch.equal(p[0], q[0]) and torch.equal(p[1], q[1]) for p, q in zip(a, b))
    assert not all(torch.equal(p[1], q[1]) for p, q in zip(a, c))
    labels = torch.cat([b[1] for b in a])
    assert sorted(labels.tolist()) == sorted(y.tolist()), "an epoch visits every image once"


def test_augmentation_draws_differ_across_seeds_with_same_order():
    ds, _, _ = make_set(n=64)
    # no shuffle: same images in each position, only the crops/flips can differ
    a = collect(ds, 1, augment=True)
    c = collect(ds, 2, augment=True)
    assert not torch.equal(torch.cat([p[0] for p in a]), torch.cat([p[0] for p in c]))


def test_augmented_images_are_shifted_or_flipped_copies():
    """Each augmented image equals its source shifted by (dy, dx) in [-4, 4] with zero fill,
    possibly mirrored: checked by brute force over all 81 shifts x 2 flips."""
    ds, x, _ = make_set(n=64, h=10, w=10, c=1)
    xs = torch.cat([b[0] for b in ds.batches(64, augment=True, generator=gen(0))])
    raw = torch.round((xs.permute(0, 2, 3, 1) * 0.25 + 0.5) * 255).to(torch.uint8)
    src = torch.from_numpy(x)
    flips_seen, shifts_seen = set(), set()
    for i in range(64):
        matches = []
        for flip in (False, True):
            base = src[i].flip(1) if flip else src[i]
            padded = torch.nn.functional.pad(base, (0, 0, 4, 4, 4, 4))
            for oy in range(9):
                for ox in range(9):
                    if torch.equal(padded[oy:oy + 10, ox:ox + 10], raw[i]):
                        matches.append((flip, oy, ox))
        assert len(matches) == 1, f"image {i} is no unique crop/flip of its source: {matches}"
        flips_seen.add(matches[0][0])
        shifts_seen.add(matches[0][1:])
    assert flips_seen == {False, True}
    assert len(shifts_seen) > 20, "offsets should vary per sample"


def test_crop_flip_known_values():
    x = torch.arange(9, dtype=torch.uint8).reshape(1, 3, 3, 1) + 1
    # offset (padding, padding) and no flip = identity
    assert torch.equal(crop_flip(x, torch.tensor([[1, 1]]), torch.tensor([False]), 1), x)
    out = crop_flip(x, torch.tensor([[0, 2]]), torch.tensor([True]), 1)[0, ..., 0]
    # crop rows -1..1, cols 1..3 of the zero-padded image, then mirror
    expect = torch.tensor([[0, 0, 0], [0, 3, 2], [0, 6, 5]], dtype=torch.uint8)
    assert torch.equal(out, expect)


def test_max_steps_subset_and_errors():
    ds, _, _ = make_set()
    assert len(list(ds.batches(16, max_steps=2))) == 2 == ds.num_batches(16, 2)
    sub = ds.subset([3, 1])
    assert len(sub) == 2 and torch.equal(sub.x[0], ds.x[3])
    with pytest.raises(ValueError, match="generator"):
        next(ds.batches(8, shuffle=True))
    with pytest.raises(ValueError, match="uint8 NHWC"):
        DeviceImages(np.zeros((2, 3, 3), np.uint8), np.zeros(2), [0.5], [0.5])
    with pytest.raises(ValueError, match="one value per channel"):
        DeviceImages(np.zeros((2, 3, 3, 3), np.uint8), np.zeros(2, np.int64), [0.5], [0.5])


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_batches_equal_cpu_batches_for_a_seed():
    """The data stream depends on the seed only, not on the device."""
    ds, _, _ = make_set(n=40)
    cuda = ds.to("cuda")
    a = collect(ds, 7, shuffle=True, augment=True)
    b = collect(cuda, 7, shuffle=True, augment=True)
    for (xa, ya), (xb, yb) in zip(a, b):
        assert xb.device.type == "cuda"
        assert torch.equal(ya, yb.cpu())
        torch.testing.assert_close(xa, xb.cpu())
