"""The official CIFAR archive path (issue 2; SPEC 4 datasets), exercised on small synthetic archives in
the official python-pickle format: over HTTP from 127.0.0.1 (the real urllib download code) and from a
directory. The real archives' md5 values stay in force unless a test passes its own via ``checks``."""
from __future__ import annotations

import hashlib

import numpy as np
import pytest

import prunescope.data as D
from prunescope.data.verify import array_sha256, labels_sha256

pytestmark = pytest.mark.network_free


def _checks(name, syn, order):
    """Expected values for the synthetic archive, built from its own rows (order: split -> row order)."""
    sha = {}
    for split, rows in syn.rows.items():
        x = rows.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)[order[split]]
        sha[split] = {"x": array_sha256(x), "y": labels_sha256(syn.labels[split][order[split]])}
    n_classes = D.info(name).num_classes
    counts = {s: tuple(np.bincount(y, minlength=n_classes).tolist()) for s, y in syn.labels.items()}
    return D.Expected(counts=counts, sha256=sha, files_md5={syn.path.name: syn.md5})


def test_cifar100_archive_over_http(http_dir, tmp_path, make_cifar_archive):
    www, url = http_dir
    syn = make_cifar_archive(www, "cifar100", {"train": 2, "test": 1})
    identity = {s: np.arange(len(y)) for s, y in syn.labels.items()}
    seen = []
    progress = D.Progress(bytes=lambda label, done, total: seen.append((label, done, total)))
    row = D.fetch("cifar100", tmp_path / "cache", url, checks=_checks("cifar100", syn, identity), progress=progress)
    assert row.cached and row.source == url
    # the download reported its progress up to the full Content-Length
    assert seen[-1] == (syn.path.name, syn.path.stat().st_size, syn.path.stat().st_size)

    train = D.load("cifar100", "train", tmp_path / "cache")
    assert train.x.shape == (200, 32, 32, 3) and train.x.dtype == np.uint8 and train.y.dtype == np.int64
    assert train.classes == D.info("cifar100").classes and len(train.classes) == 100
    np.testing.assert_array_equal(train.y, syn.labels["train"])  # CIFAR-100 keeps the official order
    rows = syn.rows["train"]
    # official layout: bytes 0..1023 red plane, 1024.. green, 2048.. blue, each row-major 32x32
    np.testing.assert_array_equal(train.x[:, 0, 0], rows[:, [0, 1024, 2048]])
    np.testing.assert_array_equal(train.x[:, 1, 2, 0], rows[:, 32 + 2])
    np.testing.assert_array_equal(train.x[:, 31, 31, 2], rows[:, 3071])
    test = D.load("cifar100", "test", tmp_path / "cache")
    assert test.x.shape == (100, 32, 32, 3)


def test_archive_md5_is_checked_against_the_published_value(http_dir, tmp_path, make_cifar_archive):
    www, url = http_dir
    syn = make_cifar_archive(www, "cifar100", {"train": 1, "test": 1})
    with pytest.raises(D.FetchError) as err:
        D.fetch("cifar100", tmp_path / "cache", url)
    msg = str(err.value)
    assert "cifar-100-python.tar.gz" in msg
    assert "eb9058c3a382ffc7106e4002c42a8d85" in msg and syn.md5 in msg
    assert not (tmp_path / "cache" / "cifar100").exists()


def test_counts_are_checked_even_with_custom_checksums(http_dir, tmp_path, make_cifar_archive):
    www, url = http_dir
    syn = make_cifar_archive(www, "cifar100", {"train": 1, "test": 1})
    identity = {s: np.arange(len(y)) for s, y in syn.labels.items()}
    checks = _checks("cifar100", syn, identity)
    wrong = D.Expected(counts={**checks.counts, "test": (2, 0) * 50}, sha256=checks.sha256, files_md5=checks.files_md5)
    with pytest.raises(D.FetchError, match=r"images per class: expected \(2, 0, 2, .*found \(1, 1, 1, "):
        D.fetch("cifar100", tmp_path / "cache", url, checks=wrong)


def test_missing_server_file_is_a_clear_error(http_dir, tmp_path):
    _, url = http_dir
    with pytest.raises(D.FetchError, match="cannot download .*cifar-100-python.tar.gz.*404"):
        D.fetch("cifar100", tmp_path / "cache", url)


def test_cifar10_archive_from_directory_is_put_in_the_shared_copys_order(tmp_path, make_cifar_archive):
    syn = make_cifar_archive(tmp_path, "cifar10", {"train": 3, "test": 2}, seed=1)
    order = {s: np.array(sorted(range(len(y)), key=lambda i: (y[i], syn.filenames[s][i])))
             for s, y in syn.labels.items()}
    D.fetch("cifar10", tmp_path / "cache", str(tmp_path), checks=_checks("cifar10", syn, order))
    train = D.load("cifar10", "train", tmp_path / "cache")
    assert np.all(np.diff(train.y) >= 0), "rows must be sorted by class (SOURCE.md order)"
    by_name = dict(zip(syn.filenames["train"], syn.rows["train"]))
    names = [syn.filenames["train"][i] for i in order["train"]]
    assert names == sorted(names, key=lambda f: (D.info("cifar10").classes.index(f.split(b"_s_")[0].decode()), f))
    for i, f in enumerate(names):  # every image travelled with its own file name
        assert hashlib.sha256(train.x[i].transpose(2, 0, 1).tobytes()).digest() == hashlib.sha256(by_name[f]).digest()


def test_archive_pickles_may_not_run_code(tmp_path):
    import io
    import pickle
    import tarfile

    class Boom:
        def __reduce__(self):
            return (print, ("pwned",))

    blob = pickle.dumps({b"label_names": Boom()})
    archive = tmp_path / "cifar-10-python.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        info = tarfile.TarInfo("cifar-10-batches-py/batches.meta")
        info.size = len(blob)
        tar.addfile(info, io.BytesIO(blob))
    md5 = hashlib.md5(archive.read_bytes()).hexdigest()
    checks = D.Expected(counts=D.expected("cifar10").counts, files_md5={archive.name: md5})
    with pytest.raises(D.FetchError, match="builtins.print: refusing to load it"):
        D.fetch("cifar10", tmp_path / "cache", str(archive), checks=checks)


def test_archive_missing_a_member_names_it(tmp_path):
    import io
    import tarfile

    archive = tmp_path / "cifar-100-python.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        info = tarfile.TarInfo("cifar-100-python/README")
        info.size = 2
        tar.addfile(info, io.BytesIO(b"hi"))
    md5 = hashlib.md5(archive.read_bytes()).hexdigest()
    checks = D.Expected(counts=D.expected("cifar100").counts, files_md5={archive.name: md5})
    with pytest.raises(D.FetchError, match="member cifar-100-python/meta missing"):
        D.fetch("cifar100", tmp_path / "cache", str(tmp_path), checks=checks)
