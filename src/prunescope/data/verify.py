"""Checksums and the checks every dataset passes before it is cached.

Array checksums are sha256 over raw bytes in a fixed layout:

* images ``x``: ``uint8`` NHWC, C-contiguous, exactly as :class:`prunescope.data.ImageSet` holds them;
* labels ``y``: the labels as ``uint8`` (every supported dataset has at most 256 classes), which is
  the layout of ``shared/data/cifar10/SOURCE.md``, so its published values apply unchanged.
"""
from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

_CHUNK = 1 << 20


class VerificationError(ValueError):
    """A file or array does not match its expected checksum, shape or class counts."""


@dataclass(frozen=True)
class Expected:
    """What a verified copy of a dataset must match.

    Attributes:
        counts: split (``"train"``/``"test"``) -> images per class, index = label id.
        sha256: split -> ``{"x": hex, "y": hex}`` array checksums (module docstring); a split
            missing here (no trustworthy value known) is checked by shape and counts only.
        files_md5: official file name -> md5 hex of that file's content (for idx files: of the
            uncompressed content, since re-compressed copies keep it); checked by the sources.
    """

    counts: Mapping[str, tuple[int, ...]]
    sha256: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    files_md5: Mapping[str, str] = field(default_factory=dict)


def array_sha256(a: np.ndarray) -> str:
    """sha256 hex of ``a``'s bytes in C order (no header, no dtype: callers fix the dtype)."""
    return hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()


def labels_sha256(y: np.ndarray) -> str:
    """sha256 hex of labels ``y`` (shape ``(N,)``, values 0..255) stored as ``uint8``."""
    if y.size and (y.min() < 0 or y.max() > 255):
        raise VerificationError(f"labels outside 0..255 (min {y.min()}, max {y.max()}): cannot hash as uint8")
    return array_sha256(y.astype(np.uint8))


def file_digest(path: Path, algorithm: str = "md5") -> str:
    """Hex digest of a file's bytes, read in 1 MiB chunks."""
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def check_digest(what: str, found: str, expected: str | None, algorithm: str = "md5") -> None:
    """Raise :class:`VerificationError` naming ``what`` unless ``found == expected``.

    ``expected=None`` means no published value exists and nothing is checked.
    """
    if expected is not None and found != expected:
        raise VerificationError(
            f"{what}: {algorithm} mismatch: expected {expected}, found {found}. The file is corrupt, "
            "truncated or a different version; delete it and fetch again, or use another source."
        )


def verify_split(
    name: str,
    split: str,
    x: np.ndarray,
    y: np.ndarray,
    shape_hwc: tuple[int, int, int],
    expected: Expected,
    origin: str,
) -> dict[str, str]:
    """Check one decoded split before it is cached.

    Args:
        name, split: dataset and split, for messages.
        x: images, must be ``uint8`` ``(N, H, W, C)`` with ``(H, W, C) == shape_hwc``.
        y: labels, must be ``int64`` ``(N,)``.
        expected: counts per class and (if known) array sha256 values for ``split``.
        origin: the file or source the arrays were decoded from, named in every error.

    Returns:
        ``{"x": sha256, "y": sha256}`` of the arrays (module docstring), for the cache's record.

    Raises:
        VerificationError: naming ``origin``, the expected and the found value.
    """
    where = f"{name}/{split} from {origin}"
    counts = tuple(expected.counts[split])
    n = sum(counts)
    if x.dtype != np.uint8 or x.shape != (n, *shape_hwc):
        raise VerificationError(f"{where}: images: expected uint8 {(n, *shape_hwc)}, found {x.dtype} {x.shape}")
    if y.dtype != np.int64 or y.shape != (n,):
        raise VerificationError(f"{where}: labels: expected int64 {(n,)}, found {y.dtype} {y.shape}")
    if y.min() < 0 or y.max() >= len(counts):
        raise VerificationError(
            f"{where}: labels: expected values in 0..{len(counts) - 1}, found {y.min()}..{y.max()}"
        )
    found_counts = tuple(int(c) for c in np.bincount(y, minlength=len(counts)))
    if found_counts != counts:
        raise VerificationError(f"{where}: images per class: expected {counts}, found {found_counts}")
    found = {"x": array_sha256(x), "y": labels_sha256(y)}
    sums = expected.sha256.get(split)
    if sums is not None:
        check_digest(f"{where}: images x", found["x"], sums["x"], "sha256")
        check_digest(f"{where}: labels y", found["y"], sums["y"], "sha256")
    return found
