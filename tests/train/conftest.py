"""Small synthetic image sets for the training tests."""
import numpy as np
import pytest

from prunescope.data.device import DeviceImages


def quadrant_images(n: int, seed: int, num_classes: int = 4, size: int = 28, channels: int = 1):
    """uint8 NHWC noise images whose class is the brightened quadrant, plus int64 labels."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, num_classes, n)
    x = rng.integers(0, 100, (n, size, size, channels)).astype(np.uint8)
    half = size // 2
    for c in range(num_classes):
        r, q = divmod(c % 4, 2)
        x[y == c, r * half:(r + 1) * half, q * half:(q + 1) * half] += 60
    return x, y.astype(np.int64)


@pytest.fixture
def quadrants():
    """(train, val) DeviceImages, 4 classes, 28x28x1: 512 training and 256 validation images."""
    x, y = quadrant_images(768, seed=0)
    mean, std = [0.25], [0.15]
    return (DeviceImages(x[:512], y[:512], mean, std), DeviceImages(x[512:], y[512:], mean, std))
