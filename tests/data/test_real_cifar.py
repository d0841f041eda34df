"""Real CIFAR-10 from the verified shared copy (SPEC 4; shared/data/cifar10/SOURCE.md) and, where a
user supplies it, the real CIFAR-100 archive. Skipped with the reason when the data are absent."""
from __future__ import annotations

import os

import numpy as np
import pytest

import prunescope.data as D
from prunescope.data.sources import find_shared_cifar10

_SHARED = find_shared_cifar10()


@pytest.mark.skipif(_SHARED is None or not (_SHARED / "train.npz").is_file(),
                    reason="no shared/data/cifar10 copy here (set PRUNESCOPE_CIFAR10_DIR to use one)")
def test_cifar10_from_shared_copy(fetch_real, real_cache, check_split, check_stats):
    assert fetch_real("cifar10", "shared").source == "shared"
    for split, k in (("train", 5000), ("test", 1000)):
        ds = D.load("cifar10", split, real_cache)
        check_split(ds, (k,) * 10, (32, 32, 3))
    assert ds.classes == ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
    check_stats(D.load("cifar10", "train", real_cache))
    # SOURCE.md: the published 0..255 statistics of the official training data
    np.testing.assert_allclose(np.array(D.info("cifar10").mean) * 255, (125.307, 122.950, 113.865), atol=5e-4)
    np.testing.assert_allclose(np.array(D.info("cifar10").std) * 255, (62.993, 62.089, 66.705), atol=5e-4)


def test_cifar100_real_archive(real_cache, check_stats):
    location = os.environ.get("PRUNESCOPE_CIFAR100_ARCHIVE")
    if not location:
        pytest.skip("the real CIFAR-100 is not on this machine: set PRUNESCOPE_CIFAR100_ARCHIVE to "
                    "cifar-100-python.tar.gz (or its directory) to run this test")
    D.fetch("cifar100", real_cache, location)
    train, test = D.load("cifar100", "train", real_cache), D.load("cifar100", "test", real_cache)
    assert train.x.shape == (50000, 32, 32, 3) and test.x.shape == (10000, 32, 32, 3)
    assert tuple(np.bincount(train.y)) == (500,) * 100 and tuple(np.bincount(test.y)) == (100,) * 100
    check_stats(train)
