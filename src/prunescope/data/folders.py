"""Image folders: the common layout of one sub-folder per class holding PNG or JPEG files.

``ROOT/<class name>/<any name>.png|.jpg|.jpeg`` (case of the suffix ignored). Class ids follow
the sorted folder names (as torchvision's ``ImageFolder`` numbers them), so the same folders
always give the same labels. Every image must have the size of the first one; images are kept
as uint8 NHWC, grayscale (C = 1) when every file is grayscale, else RGB (C = 3; grayscale
files are converted). Every file is read and checked before anything is returned: an
unreadable file, a size mismatch, an empty class folder or a stray file is a one-line
:class:`ImageFolderError` naming the file.

``split_folder(data, split)`` finds a split beside its siblings: ``DATA/train`` and
``DATA/test`` each holding class folders, or (``split="test"`` only) ``DATA`` itself holding the
class folders.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from prunescope.data.registry import ImageSet
from prunescope.errors import UserError

#: file suffixes read as images (lower case)
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


class ImageFolderError(UserError, ValueError):
    """An image folder cannot be read: the message names the file or folder and the fix."""


def is_image_folder(path: str | Path) -> bool:
    """True when ``path`` is a folder whose sub-folders hold images (the class layout)."""
    p = Path(path)
    return p.is_dir() and any(
        c.is_dir() and any(f.suffix.lower() in IMAGE_SUFFIXES for f in c.iterdir())
        for c in p.iterdir())


def split_folder(data: str | Path, split: str) -> Path | None:
    """The class-folder root of ``split`` (``"train"``/``"test"``) under ``data``: ``data/split``
    when it is an image folder; for ``"test"`` also ``data`` itself when it holds class folders
    and no ``train``/``test`` split; ``None`` when there is none."""
    root = Path(data)
    if is_image_folder(root / split):
        return root / split
    if split == "test" and not (root / "train").exists() and is_image_folder(root):
        return root
    return None


def read_image_folder(root: str | Path, split: str = "test",
                      classes: tuple[str, ...] | None = None) -> ImageSet:
    """Read every image under ``root`` (one sub-folder per class).

    Args:
        root: the folder holding the class folders.
        split: the split name stored in the returned set (``"train"``, ``"test"``).
        classes: the class names expected (e.g. the training split's); a folder set that
            differs is an error. Default: the sorted sub-folder names.

    Returns:
        ``ImageSet(name=str(root), split, x uint8 (N, H, W, C), y int64 (N,), classes)``,
        images in class order, then file-name order.

    Raises:
        ImageFolderError: no class folder, an empty class, a non-image file, an unreadable
            image, an image whose size differs from the first one, other class folders than
            ``classes``.
    """
    from PIL import Image, UnidentifiedImageError

    root = Path(root)
    if not root.is_dir():
        raise ImageFolderError(f"{root} is not a folder; give a folder with one sub-folder of "
                               "PNG/JPEG images per class")
    found = tuple(sorted(d.name for d in root.iterdir() if d.is_dir()))
    if not found:
        raise ImageFolderError(f"{root} has no class folders; put each class's images in "
                               f"{root}/<class name>/")
    if classes is not None and found != tuple(classes):
        raise ImageFolderError(f"{root} has class folders {', '.join(found)} but "
                               f"{', '.join(classes)} were expected (the other split's); every "
                               "split needs the same class folders")
    files: list[tuple[Path, int]] = []
    for label, name in enumerate(found):
        entries = sorted(f for f in (root / name).iterdir() if not f.name.startswith("."))
        for f in entries:
            if f.is_dir() or f.suffix.lower() not in IMAGE_SUFFIXES:
                raise ImageFolderError(f"{f} is not a PNG or JPEG file; class folders may hold "
                                       f"only {', '.join(IMAGE_SUFFIXES)} files: move it out")
        if not entries:
            raise ImageFolderError(f"class folder {root / name} holds no images; add some or "
                                   "remove the folder")
        files += [(f, label) for f in entries]
    images: list[np.ndarray] = []
    size = None
    for f, _ in files:
        try:
            with Image.open(f) as im:
                im.load()
                gray = im.mode in ("1", "L", "I;16", "I", "F")
                arr = np.asarray(im.convert("L" if gray else "RGB"))
        except (OSError, UnidentifiedImageError, ValueError) as e:
            raise ImageFolderError(f"{f} cannot be read as an image ({type(e).__name__}: "
                                   f"{str(e).splitlines()[0] if str(e) else ''}); replace or "
                                   "remove it") from e
        if size is None:
            size, first = arr.shape[:2], f
        elif arr.shape[:2] != size:
            raise ImageFolderError(f"{f} is {arr.shape[1]}x{arr.shape[0]} pixels but {first} is "
                                   f"{size[1]}x{size[0]}; resize every image to one size")
        images.append(arr)
    rgb = any(a.ndim == 3 for a in images)
    x = np.stack([np.repeat(a[..., None], 3, -1) if rgb and a.ndim == 2 else
                  a if a.ndim == 3 else a[..., None] for a in images]).astype(np.uint8)
    y = np.array([label for _, label in files], dtype=np.int64)
    return ImageSet(str(root), split, x, y, found)


def read_split(data: str | Path, split: str, classes: tuple[str, ...] | None = None
               ) -> ImageSet | Path:
    """A split of a ``--data`` folder: its image folders read (:func:`split_folder`,
    :func:`read_image_folder`; ``classes``: the other split's, checked), else the path of
    ``data/<split>.npz`` for :func:`prunescope.audit.as_arrays`."""
    root = split_folder(data, split)
    return read_image_folder(root, split, classes) if root is not None else Path(data) / f"{split}.npz"


__all__ = ["IMAGE_SUFFIXES", "ImageFolderError", "is_image_folder", "read_image_folder",
           "read_split", "split_folder"]
