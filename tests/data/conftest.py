"""Fixtures for the dataset tests: a local HTTP server, synthetic archives in the official CIFAR
format, and a per-session cache holding the real datasets."""
from __future__ import annotations

import functools
import gzip
import hashlib
import http.server
import io
import pickle
import struct
import tarfile
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

import prunescope.data as D
from prunescope.data.verify import array_sha256, labels_sha256


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002  (stdlib signature)
        del format, args


@pytest.fixture
def http_dir(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """``(directory, base URL)``: files put in the directory are served at ``base URL/name``
    by a threaded ``http.server`` on 127.0.0.1 (never the internet)."""
    root = tmp_path / "www"
    root.mkdir()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_QuietHandler, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield root, f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def _add(tar: tarfile.TarFile, name: str, obj: object) -> None:
    blob = pickle.dumps(obj, protocol=2)
    member = tarfile.TarInfo(name)
    member.size = len(blob)
    tar.addfile(member, io.BytesIO(blob))


@dataclass(frozen=True)
class SyntheticCifar:
    """A small archive in the official CIFAR python-pickle format.

    Attributes:
        path: the ``.tar.gz`` file (official file name).
        rows: split -> official rows ``(N, 3072)`` uint8 (R plane, G plane, B plane, row-major).
        labels: split -> labels ``(N,)`` in archive order.
        filenames: split -> original file names (bytes) in archive order.
        md5: md5 of the archive file.
    """

    path: Path
    rows: dict[str, np.ndarray]
    labels: dict[str, np.ndarray]
    filenames: dict[str, list[bytes]]
    md5: str


def make_cifar_archive(folder: Path, name: str, per_class: dict[str, int], seed: int = 0) -> SyntheticCifar:
    """Write a synthetic ``cifar-10-python.tar.gz`` / ``cifar-100-python.tar.gz`` into ``folder``.

    Labels are shuffled (as in the official batches); CIFAR-10 training rows are spread over the
    five ``data_batch_*`` members, CIFAR-100 uses ``train``/``test``/``meta`` with fine and coarse labels.
    """
    rng = np.random.default_rng(seed)
    classes = D.info(name).classes
    rows, labels, filenames = {}, {}, {}
    for split, k in per_class.items():
        y = rng.permutation(np.repeat(np.arange(len(classes)), k))
        rows[split] = rng.integers(0, 256, size=(len(y), 3072), dtype=np.uint8)
        labels[split] = y
        filenames[split] = [f"{classes[c]}_s_{rng.integers(10**6):06d}_{i}.png".encode() for i, c in enumerate(y)]
    archive = folder / ("cifar-10-python.tar.gz" if name == "cifar10" else "cifar-100-python.tar.gz")
    with tarfile.open(archive, "w:gz") as tar:
        if name == "cifar10":
            top = "cifar-10-batches-py"
            _add(tar, f"{top}/batches.meta", {b"label_names": [c.encode() for c in classes], b"num_vis": 3072})
            for i, part in enumerate(np.array_split(np.arange(len(labels["train"])), 5), start=1):
                _add(tar, f"{top}/data_batch_{i}", {
                    b"batch_label": f"training batch {i} of 5".encode(), b"data": rows["train"][part],
                    b"labels": labels["train"][part].tolist(), b"filenames": [filenames["train"][j] for j in part]})
            _add(tar, f"{top}/test_batch", {b"batch_label": b"testing batch 1 of 1", b"data": rows["test"],
                                            b"labels": labels["test"].tolist(), b"filenames": filenames["test"]})
        else:
            top = "cifar-100-python"
            _add(tar, f"{top}/meta", {b"fine_label_names": [c.encode() for c in classes],
                                      b"coarse_label_names": [f"super{i}".encode() for i in range(20)]})
            for split in ("train", "test"):
                _add(tar, f"{top}/{split}", {
                    b"filenames": filenames[split], b"batch_label": split.encode(),
                    b"fine_labels": labels[split].tolist(), b"coarse_labels": (labels[split] // 5).tolist(),
                    b"data": rows[split]})
    md5 = hashlib.md5(archive.read_bytes()).hexdigest()
    return SyntheticCifar(archive, rows, labels, filenames, md5)


@pytest.fixture(name="make_cifar_archive")
def make_cifar_archive_fixture() -> Callable[..., SyntheticCifar]:
    """The :func:`make_cifar_archive` helper, as a fixture."""
    return make_cifar_archive


def _idx_bytes(a: np.ndarray) -> bytes:
    """Official idx encoding, written independently of the decoder: 0,0,0x08,ndim then big-endian dims."""
    return bytes([0, 0, 8, a.ndim]) + struct.pack(f">{a.ndim}I", *a.shape) + a.tobytes()


def write_idx_dir(folder: Path, splits: dict[str, tuple[np.ndarray, np.ndarray]], compress: bool) -> dict[str, str]:
    """Write ``{split: (x (N, 28, 28, 1) uint8, y (N,))}`` as the four official idx files (``.gz`` when
    ``compress``) into ``folder``; returns the md5 of each file's uncompressed content by stem."""
    names = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
             "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}
    md5 = {}
    for split, (x, y) in splits.items():
        for stem, arr in zip(names[split], (x[..., 0], y.astype(np.uint8))):
            raw = _idx_bytes(arr)
            md5[stem] = hashlib.md5(raw).hexdigest()
            (folder / (stem + ".gz" if compress else stem)).write_bytes(gzip.compress(raw, compresslevel=1) if compress else raw)
    return md5


@pytest.fixture(name="write_idx_dir")
def write_idx_dir_fixture() -> Callable[..., dict[str, str]]:
    """The :func:`write_idx_dir` helper, as a fixture."""
    return write_idx_dir


@pytest.fixture(name="idx_bytes")
def idx_bytes_fixture() -> Callable[[np.ndarray], bytes]:
    """The :func:`_idx_bytes` encoder, as a fixture."""
    return _idx_bytes


@pytest.fixture(scope="session")
def real_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A cache directory shared by the tests that fetch the real datasets in this session."""
    return tmp_path_factory.mktemp("real-cache")


@pytest.fixture(scope="session")
def fetch_real(real_cache: Path) -> Callable[..., D.DatasetStatus]:
    """``fetch_real(name, source=None, data_dir=real_cache)``: fetch a real dataset, or skip (with the
    reason) when no source is reachable from this machine. A verification failure is never a skip."""

    def fetch(name: str, source: str | None = None, data_dir: Path = real_cache) -> D.DatasetStatus:
        try:
            return D.fetch(name, data_dir, source)
        except D.FetchError as e:
            if "VerificationError" in str(e):
                raise
            pytest.skip(f"no source for {name} reachable here: {e}")

    return fetch


def _check_split(ds: D.ImageSet, counts: tuple[int, ...], shape_hwc: tuple[int, int, int]) -> None:
    """Assert a real split's shape, dtypes, per-class counts and the registry's array checksums."""
    n = sum(counts)
    assert ds.x.shape == (n, *shape_hwc) and ds.x.dtype == np.uint8
    assert ds.y.shape == (n,) and ds.y.dtype == np.int64
    assert tuple(np.bincount(ds.y, minlength=len(counts))) == counts
    want = D.expected(ds.name).sha256[ds.split]
    assert array_sha256(ds.x) == want["x"] and labels_sha256(ds.y) == want["y"]


def _check_stats(ds: D.ImageSet) -> None:
    """Assert ``info(name).mean/std`` equal the per-channel statistics of ``ds`` (0..1 scale)."""
    c = ds.x.shape[-1]
    total = np.zeros(c)
    squares = np.zeros(c)
    for start in range(0, len(ds.x), 2000):  # chunks keep the float64 copy small
        block = ds.x[start:start + 2000].reshape(-1, c).astype(np.float64) / 255.0
        total += block.sum(axis=0)
        squares += (block * block).sum(axis=0)
    count = ds.x.size // c
    mean = total / count
    std = np.sqrt(squares / count - mean * mean)
    meta = D.info(ds.name)
    np.testing.assert_allclose(mean, meta.mean, rtol=0, atol=1e-7)
    np.testing.assert_allclose(std, meta.std, rtol=0, atol=1e-7)


@pytest.fixture(name="check_split")
def check_split_fixture() -> Callable[..., None]:
    """The real-split assertions (shape, dtype, counts, checksums), as a fixture."""
    return _check_split


@pytest.fixture(name="check_stats")
def check_stats_fixture() -> Callable[[D.ImageSet], None]:
    """The normalisation-constant assertions, as a fixture."""
    return _check_stats
