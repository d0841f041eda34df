"""Small synthetic image sets for the training tests."""
import sys
from pathlib import Path

import pytest

from prunescope.data.device import DeviceImages

sys.path.insert(0, str(Path(__file__).parent))
from synth_images import quadrant_images  # noqa: E402


@pytest.fixture
def quadrants():
    """(train, val) DeviceImages, 4 classes, 28x28x1: 512 training and 256 validation images."""
    x, y = quadrant_images(768, seed=0)
    mean, std = [0.25], [0.15]
    return (DeviceImages(x[:512], y[:512], mean, std), DeviceImages(x[512:], y[512:], mean, std))
