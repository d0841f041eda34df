"""Synthetic image sets for the training tests (imported by conftest.py and test modules)."""
import numpy as np


def quadrant_images(n: int, seed: int, num_classes: int = 4, size: int = 28, channels: int = 1,
                    boost: int | tuple[int, ...] = 60):
    """uint8 NHWC noise images (0..99) whose class is the quadrant brightened by ``boost``, plus
    int64 labels ``(n,)``. A small ``boost`` makes a class hard; one value per class gives
    classes of unequal difficulty."""
    boosts = (boost,) * num_classes if isinstance(boost, int) else boost
    rng = np.random.default_rng(seed)
    y = rng.integers(0, num_classes, n)
    x = rng.integers(0, 100, (n, size, size, channels)).astype(np.uint8)
    half = size // 2
    for c in range(num_classes):
        r, q = divmod(c % 4, 2)
        x[y == c, r * half:(r + 1) * half, q * half:(q + 1) * half] += boosts[c]
    return x, y.astype(np.int64)
