"""Verification before caching (issue 2): a corrupted array or file is rejected with a message that
names the file, the expected and the found value; nothing reaches the cache."""
from __future__ import annotations

import hashlib

import numpy as np
import pytest

import prunescope.data as D
from prunescope.data.sources import parse_idx
from prunescope.data.verify import array_sha256, labels_sha256, verify_split

SHAPE = (28, 28, 1)


def _tiny(per_class=(3, 2, 1, 0, 0, 0, 0, 0, 0, 4), seed=0):
    rng = np.random.default_rng(seed)
    y = rng.permutation(np.repeat(np.arange(10), per_class)).astype(np.int64)
    x = rng.integers(0, 256, size=(len(y), *SHAPE), dtype=np.uint8)
    return x, y


def _expected(x, y, split="train"):
    counts = tuple(np.bincount(y, minlength=10).tolist())
    return D.Expected(counts={split: counts}, sha256={split: {"x": array_sha256(x), "y": labels_sha256(y)}})


def test_verify_split_accepts_the_true_arrays():
    x, y = _tiny()
    verify_split("mnist", "train", x, y, SHAPE, _expected(x, y), "file.idx")


def test_one_changed_pixel_is_rejected_naming_file_expected_found():
    x, y = _tiny()
    want = _expected(x, y)
    bad = x.copy()
    bad[3, 10, 10, 0] ^= 1
    with pytest.raises(D.VerificationError) as err:
        verify_split("mnist", "train", bad, y, SHAPE, want, "some/dir/train-images-idx3-ubyte")
    msg = str(err.value)
    assert "some/dir/train-images-idx3-ubyte" in msg
    assert want.sha256["train"]["x"] in msg and array_sha256(bad) in msg


def test_swapped_labels_are_rejected_even_when_counts_match():
    x, y = _tiny()
    want = _expected(x, y)
    i, j = np.flatnonzero(y == 0)[0], np.flatnonzero(y == 9)[0]
    bad = y.copy()
    bad[[i, j]] = bad[[j, i]]
    with pytest.raises(D.VerificationError, match=f"labels y: sha256 mismatch: expected {want.sha256['train']['y']}"):
        verify_split("mnist", "train", x, bad, SHAPE, want, "labels-file")


@pytest.mark.parametrize(
    ("mutate", "pattern"),
    [
        (lambda x, y: (x[:-1], y[:-1]), r"images: expected uint8 \(10, 28, 28, 1\), found uint8 \(9, 28, 28, 1\)"),
        (lambda x, y: (x.astype(np.float32), y), r"images: expected uint8 .* found float32"),
        (lambda x, y: (x, y.astype(np.int32)), r"labels: expected int64 \(10,\), found int32"),
        (lambda x, y: (x, np.where(y == 9, 10, y)), r"expected values in 0\.\.9, found 0\.\.10"),
        (lambda x, y: (x, np.where(y == 9, 0, y)), r"images per class: expected \(3, 2, 1, 0, 0, 0, 0, 0, 0, 4\), "
                                                   r"found \(7, 2, 1, 0, 0, 0, 0, 0, 0, 0\)"),
    ],
)
def test_shape_dtype_range_and_counts_are_checked(mutate, pattern):
    x, y = _tiny()
    want = _expected(x, y)
    bx, by = mutate(x, y)
    with pytest.raises(D.VerificationError, match=pattern):
        verify_split("mnist", "train", bx, by, SHAPE, want, "origin")


@pytest.mark.parametrize("compress", [False, True])
def test_idx_directory_source_round_trip(tmp_path, compress, write_idx_dir):
    splits = {"train": _tiny(seed=1), "test": _tiny(per_class=(1,) * 10, seed=2)}
    md5 = write_idx_dir(tmp_path, splits, compress)
    counts = {s: tuple(np.bincount(y, minlength=10).tolist()) for s, (_, y) in splits.items()}
    checks = D.Expected(counts=counts, files_md5=md5)
    row = D.fetch("mnist", tmp_path / "cache", str(tmp_path), checks=checks)
    assert row.cached and row.source == str(tmp_path)
    for split, (x, y) in splits.items():
        got = D.load("mnist", split, tmp_path / "cache")
        np.testing.assert_array_equal(got.x, x)
        np.testing.assert_array_equal(got.y, y)


def test_corrupted_idx_file_is_rejected_and_nothing_is_cached(tmp_path, write_idx_dir):
    splits = {"train": _tiny(seed=1), "test": _tiny(per_class=(1,) * 10, seed=2)}
    md5 = write_idx_dir(tmp_path, splits, compress=False)
    counts = {s: tuple(np.bincount(y, minlength=10).tolist()) for s, (_, y) in splits.items()}
    path = tmp_path / "t10k-images-idx3-ubyte"
    raw = bytearray(path.read_bytes())
    raw[-1] ^= 0xFF
    path.write_bytes(bytes(raw))
    with pytest.raises(D.FetchError) as err:
        D.fetch("mnist", tmp_path / "cache", str(tmp_path), checks=D.Expected(counts=counts, files_md5=md5))
    msg = str(err.value)
    assert "t10k-images-idx3-ubyte" in msg
    assert f"expected {md5['t10k-images-idx3-ubyte']}, found {hashlib.md5(raw).hexdigest()}" in msg
    assert not (tmp_path / "cache" / "mnist").exists()
    assert [r.cached for r in D.list_datasets(tmp_path / "cache")] == [False] * 4


def test_official_md5_applies_unless_overridden(tmp_path, write_idx_dir):
    splits = {"train": _tiny(seed=1), "test": _tiny(per_class=(1,) * 10, seed=2)}
    write_idx_dir(tmp_path, splits, compress=True)
    with pytest.raises(D.FetchError, match="expected 6bbc9ace898e44ae57da46a324031adb"):
        D.fetch("mnist", tmp_path / "cache", str(tmp_path))


def test_parse_idx_rejects_bad_magic_and_truncation(idx_bytes):
    good = idx_bytes(np.zeros((2, 3), dtype=np.uint8))
    np.testing.assert_array_equal(parse_idx(good, "f"), np.zeros((2, 3), dtype=np.uint8))
    with pytest.raises(D.VerificationError, match="f: not an idx ubyte file"):
        parse_idx(b"\x00\x00\x0d\x02" + good[4:], "f")
    with pytest.raises(D.VerificationError, match=r"f: header says \(2, 3\) = 6 bytes, found 5"):
        parse_idx(good[:-1], "f")


def test_damaged_gzip_is_a_failed_source_not_a_crash(tmp_path, write_idx_dir):
    splits = {"train": _tiny(seed=1), "test": _tiny(per_class=(1,) * 10, seed=2)}
    md5 = write_idx_dir(tmp_path, splits, compress=True)
    counts = {s: tuple(np.bincount(y, minlength=10).tolist()) for s, (_, y) in splits.items()}
    path = tmp_path / "train-labels-idx1-ubyte.gz"
    path.write_bytes(path.read_bytes()[:-12])  # truncated download
    with pytest.raises(D.FetchError, match=r"train-labels-idx1-ubyte.gz: damaged gzip data"):
        D.fetch("mnist", tmp_path / "cache", str(tmp_path), checks=D.Expected(counts=counts, files_md5=md5))
