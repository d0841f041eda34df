"""`prunescope compare` (issue 27): image-folder data, a builder per --model, the tables
written, channel pruning with --channels, and bad inputs as one line before any work."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from torch.nn.utils import prune as torch_prune
from typer.testing import CliRunner

from prunescope.cli import app

BUILDER = '''
import torch
from torch import nn


def build():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                         nn.Conv2d(8, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 3)).eval()
'''


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    (tmp_path / "mynet.py").write_text(BUILDER)
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    rng = np.random.default_rng(0)
    for split, n in (("train", 6), ("test", 8)):
        for c, name in enumerate(("bird", "cat", "dog")):
            (tmp_path / "data" / split / name).mkdir(parents=True)
            for i in range(n):
                img = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8) // (c + 1)
                Image.fromarray(img.astype(np.uint8)).save(tmp_path / "data" / split / name / f"{i}.png")
    import mynet

    dense = mynet.build()
    torch.save(dense.state_dict(), tmp_path / "dense.pt")
    for m in (dense[0], dense[3]):
        torch_prune.l1_unstructured(m, "weight", amount=0.5)
    torch.save(dense.state_dict(), tmp_path / "pruned.pt")
    torch.save(dense, tmp_path / "module.pt")
    return tmp_path


def test_compare_image_folders(workdir):
    r = CliRunner().invoke(app, ["compare", "dense.pt", "pruned.pt", "--data", "data",
                                 "--model", "mynet:build", "--out", "out"])
    assert r.exit_code == 0, r.output
    models = pd.read_csv(workdir / "out" / "models.csv")
    assert models.source.tolist() == ["state dict", "torch.nn.utils.prune state dict"]
    assert models.achieved_ratio[1] > 1.5
    worst = pd.read_csv(workdir / "out" / "worst_classes.csv")
    assert set(worst.class_name) <= {"bird", "cat", "dog"}
    assert len(pd.read_csv(workdir / "out" / "mcnemar.csv")) == 3
    assert "test-set sampling" in r.output


def test_compare_channels(workdir):
    r = CliRunner().invoke(app, ["compare", "dense.pt", "--channels", "l1,taylor", "--ratios",
                                 "2", "--data", "data", "--model", "mynet:build", "--out", "out"])
    assert r.exit_code == 0, r.output
    models = pd.read_csv(workdir / "out" / "models.csv")
    assert models.method.tolist() == ["dense", "l1-channel", "taylor-channel"]
    assert (models.achieved_ratio[1:] >= 2).all() and (models.latency_after_ms[1:] > 0).all()


@pytest.mark.parametrize("args, msg", [
    (["dense.pt", "module.pt"], "--trust-pickle"),
    (["dense.pt", "pruned.pt", "--data", "data/train/cat"], "holds no test images"),
    (["dense.pt", "pruned.pt", "--model", "mynet:nope"], "has no callable 'nope'"),
])
def test_bad_inputs_one_line(workdir, args, msg):
    r = CliRunner().invoke(app, ["compare", *args, *(["--data", "data"] if "--data" not in args
                                                     else []),
                                 *(["--model", "mynet:build"] if "--model" not in args else [])])
    assert r.exit_code == 1
    lines = [ln for ln in r.output.splitlines() if ln.strip()]
    assert msg in " ".join(lines) and lines[0].startswith("error:")
    assert "Traceback" not in r.output


def test_audit_reads_image_folders(workdir, monkeypatch):
    """`prunescope audit --model ... --data FOLDER` with train/ and test/ class folders hands
    the audit both splits as read from the folders, class names included."""
    import prunescope.audit as A
    from prunescope.audit import AuditError

    seen = {}

    def fake_audit(net, train, test, **kw):
        seen.update(train=train, test=test, **kw)
        raise AuditError("stop here")

    monkeypatch.setattr(A, "audit", fake_audit)
    r = CliRunner().invoke(app, ["audit", "dense.pt", "--model", "mynet:build", "--data", "data",
                                 "--methods", "mp", "--ratios", "2", "--out", "out"])
    assert "stop here" in r.output
    assert seen["train"].x.shape == (18, 8, 8, 3) and seen["test"].x.shape == (24, 8, 8, 3)
    assert seen["class_names"] == ("bird", "cat", "dog") == seen["test"].classes
    assert seen["test"].y.tolist() == [0] * 8 + [1] * 8 + [2] * 8
