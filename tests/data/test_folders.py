"""Image folders (issue 27): class ids from sorted folder names, pixels as written, and every
bad file a one-line error naming it before anything is returned."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from prunescope.data.folders import ImageFolderError, read_image_folder, split_folder


def _write(root, cls, name, arr):
    (root / cls).mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(root / cls / name)


def test_reads_classes_labels_and_pixels(tmp_path):
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (6, 5, 3), dtype=np.uint8)
    b = rng.integers(0, 256, (6, 5, 3), dtype=np.uint8)
    g = rng.integers(0, 256, (6, 5), dtype=np.uint8)
    _write(tmp_path, "zebra", "1.png", a)
    _write(tmp_path, "cat", "b.png", b)
    _write(tmp_path, "cat", "a.PNG", g)  # grayscale among RGB: converted to RGB
    s = read_image_folder(tmp_path)
    assert s.classes == ("cat", "zebra")
    assert s.x.shape == (3, 6, 5, 3) and s.x.dtype == np.uint8
    assert s.y.tolist() == [0, 0, 1]
    assert np.array_equal(s.x[0], np.repeat(g[..., None], 3, -1))
    assert np.array_equal(s.x[1], b) and np.array_equal(s.x[2], a)


def test_grayscale_folder_has_one_channel_and_jpeg_reads(tmp_path):
    g = np.full((4, 4), 200, np.uint8)
    _write(tmp_path, "a", "x.jpg", g)
    _write(tmp_path, "b", "y.png", g)
    s = read_image_folder(tmp_path)
    assert s.x.shape == (2, 4, 4, 1)
    assert abs(int(s.x[0].mean()) - 200) <= 2  # JPEG is lossy, flat grey survives


@pytest.mark.parametrize("bad", ["truncated", "size", "stray", "empty"])
def test_bad_files_name_the_file(tmp_path, bad):
    img = np.zeros((4, 4, 3), np.uint8)
    _write(tmp_path, "a", "ok.png", img)
    _write(tmp_path, "b", "ok.png", img)
    if bad == "truncated":
        (tmp_path / "b" / "bad.png").write_bytes((tmp_path / "b" / "ok.png").read_bytes()[:20])
        culprit = tmp_path / "b" / "bad.png"
    elif bad == "size":
        _write(tmp_path, "b", "big.png", np.zeros((5, 4, 3), np.uint8))
        culprit = tmp_path / "b" / "big.png"
    elif bad == "stray":
        (tmp_path / "a" / "notes.txt").write_text("x")
        culprit = tmp_path / "a" / "notes.txt"
    else:
        (tmp_path / "c").mkdir()
        culprit = tmp_path / "c"
    with pytest.raises(ImageFolderError) as e:
        read_image_folder(tmp_path)
    assert str(culprit) in str(e.value) and "\n" not in str(e.value)


def test_split_layouts_and_mismatched_classes(tmp_path):
    img = np.zeros((4, 4), np.uint8)
    for split, classes in (("train", "ab"), ("test", "ac")):
        for c in classes:
            _write(tmp_path / split, c, "0.png", img)
    assert split_folder(tmp_path, "train") == tmp_path / "train"
    assert split_folder(tmp_path, "test") == tmp_path / "test"
    train = read_image_folder(split_folder(tmp_path, "train"), "train")
    with pytest.raises(ImageFolderError, match="a, b were expected"):
        read_image_folder(tmp_path / "test", classes=train.classes)
    alone = tmp_path / "alone"
    _write(alone, "a", "0.png", img)
    assert split_folder(alone, "test") == alone and split_folder(alone, "train") is None
