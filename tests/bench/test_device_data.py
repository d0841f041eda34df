"""bench/device_data.py: a folder cut into size-limited part folders comes back byte for byte,
and a damaged or missing part is refused (the GPU runbook carries CIFAR-10 this way)."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

_PATH = Path(__file__).resolve().parents[2] / "bench" / "device_data.py"
_spec = importlib.util.spec_from_file_location("device_data", _PATH)
device_data = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(device_data)


def test_split_and_join_round_trip(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    files = {"a.bin": bytes(range(256)) * 40, "b.bin": b"x" * 3000, "empty": b""}
    for name, data in files.items():
        (src / name).write_bytes(data)
    limit_mib = 4096 / 2**20  # 4 KiB parts
    folders = device_data.split(src, tmp_path / "parts", limit_mib)
    assert [f.name for f in folders] == ["p0", "p1", "p2", "p3"]  # 13,240 bytes / 4,096
    for f in folders:
        assert sum(q.stat().st_size for q in f.iterdir() if q.name != "manifest.json") <= 4096
    out = device_data.join(tmp_path / "parts", tmp_path / "out")
    assert sorted(p.name for p in out) == sorted(files)
    for name, data in files.items():
        assert (tmp_path / "out" / name).read_bytes() == data

    exact = tmp_path / "exact"
    exact.mkdir()
    (exact / "one").write_bytes(b"y" * 4096)  # fills p0 exactly: no empty p1
    assert [f.name for f in device_data.split(exact, tmp_path / "exact-parts", limit_mib)] \
        == ["p0"]

    part = next((tmp_path / "parts" / "p1").iterdir())
    part.write_bytes(part.read_bytes()[:-1] + b"?")
    with pytest.raises(ValueError, match="sha256"):
        device_data.join(tmp_path / "parts", tmp_path / "again")
    part.unlink()
    with pytest.raises(ValueError, match="parts missing"):
        device_data.join(tmp_path / "parts", tmp_path / "again")
