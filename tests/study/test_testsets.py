"""Shifted test sets are computed once per artifact root (issue 15, item 7)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from prunescope.data.corruptions import apply_distribution
from prunescope.study import worker
from prunescope.study.artifacts import Artifacts

from .conftest import mnist_available


@pytest.mark.parametrize("root", ["local", "memory://prunescope-testsets"])
def test_a_shifted_test_set_is_computed_once_and_read_back(root, tmp_path, monkeypatch):
    if not mnist_available():
        pytest.skip("MNIST is not cached: run `prunescope data fetch mnist`")
    arts = Artifacts(str(tmp_path) if root == "local" else root)
    calls = []

    def counting(x, name, seed, **kw):
        calls.append(name)
        return apply_distribution(x, name, seed, **kw)

    monkeypatch.setattr(worker, "apply_distribution", counting)
    dists = ["gaussian_noise-3", "contrast-5"]
    first = {d: worker._test_arrays(arts, "mnist", 300, 4, d, 11, None) for d in dists}
    # the jobs of one model cycle through every distribution: each set is computed once
    for _ in range(3):
        for d in dists:
            x, y = worker._test_arrays(arts, "mnist", 300, 4, d, 11, None)
            assert torch.equal(x, first[d][0]) and np.array_equal(y, first[d][1])
    assert calls == dists
    nominal, y = worker._test_arrays(arts, "mnist", 300, 4, "nominal", 11, None)
    assert calls == dists and x.shape == nominal.shape == (300, 28, 28, 1)
    # the saved images are exactly the distribution of the same subset
    assert torch.equal(first["contrast-5"][0], apply_distribution(nominal, "contrast-5", 11))
    assert not torch.equal(first["contrast-5"][0], nominal)
    # another subset, split seed or corruption seed is another set
    worker._test_arrays(arts, "mnist", 300, 4, "contrast-5", 12, None)
    worker._test_arrays(arts, "mnist", 300, 5, "contrast-5", 11, None)
    worker._test_arrays(arts, "mnist", 200, 4, "contrast-5", 11, None)
    assert calls == dists + ["contrast-5"] * 3
    key = worker.test_set_key("mnist", 300, 4, "contrast-5", 11)
    assert arts.exists(arts.url(f"{worker.TEST_SETS}/{key}.npy"))
    assert not arts.exists(arts.url(f"{worker.TEST_SETS}/absent.npy"))


@pytest.mark.parametrize("damage", ["zeroed", "truncated", "no digest"])
def test_a_damaged_or_unchecked_test_set_is_computed_again(damage, tmp_path, monkeypatch):
    """Issue 23 must-fix 2: the cache is checked against the sha256 written beside it. On
    main, a zeroed cache file was read as it was (noise-0.3 accuracy 0.90 -> 0.11, exit 0)."""
    if not mnist_available():
        pytest.skip("MNIST is not cached: run `prunescope data fetch mnist`")
    arts = Artifacts(str(tmp_path))
    first, _ = worker._test_arrays(arts, "mnist", 200, 4, "noise-0.3", 11, None)
    path = tmp_path / worker.TEST_SETS / f"{worker.test_set_key('mnist', 200, 4, 'noise-0.3', 11)}.npy"
    good = path.read_bytes()
    if damage == "zeroed":  # the header kept, the images zeroed: a valid .npy of other pixels
        path.write_bytes(good[:128] + bytes(len(good) - 128))
    elif damage == "truncated":
        path.write_bytes(good[:-5])
    else:  # written by a prunescope that wrote no digest
        Path(f"{path}.sha256").unlink()
    calls = []
    monkeypatch.setattr(worker, "apply_distribution",
                        lambda *a, **kw: calls.append(1) or apply_distribution(*a, **kw))
    again, _ = worker._test_arrays(arts, "mnist", 200, 4, "noise-0.3", 11, None)
    assert calls == [1] and torch.equal(again, first)
    assert path.read_bytes() == good  # written anew, with its digest: read back unchanged
    worker._test_arrays(arts, "mnist", 200, 4, "noise-0.3", 11, None)
    assert calls == [1]
