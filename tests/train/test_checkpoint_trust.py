"""Issue 23, must-fix 1: nothing prunescope reads unpickles a file without ``weights_only=True``
unless the user says they trust it (``--trust-pickle`` / ``trust_pickle=True``).

Each reader gets a checkpoint whose sidecar names a pickled ``module`` (prunescope 0.1's audit
wrote them) or a ``.pt`` weights file, both pickles that create a marker file when unpickled;
the marker must not appear, and the refusal must be one line naming the file and the flag."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from prunescope.cli import app
from prunescope.models import build_model
from prunescope.train import CheckpointError, load_checkpoint, load_state_dict, save_checkpoint

META = {"arch": "lenet5", "num_classes": 10, "in_channels": 1, "image_size": 28,
        "weight_decay": 5e-4, "dataset": "mnist", "n_val": 5000, "split_seed": 0}


class _Planted:
    """Unpickling it runs ``exec``: creates ``marker`` and returns a real LeNet-5, so a loader
    that unpickles it goes on as if nothing happened."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        code = (f"open({str(self.marker)!r}, 'w').write('ran');"
                "from prunescope.models import build_model as b;"
                "globals()['__m'] = b('lenet5', 10, 1)")
        return (exec, (code, {}))


def _plant(folder: Path) -> tuple[Path, Path]:
    """A LeNet-5 checkpoint ``folder/train/m.safetensors`` whose sidecar names the pickle
    ``source/evil.module.pt`` (relative to the grandparent, as prunescope 0.1 wrote it);
    returns ``(checkpoint, marker)``."""
    marker = folder / "marker"
    (folder / "source").mkdir(parents=True)
    torch.save(_Planted(marker), folder / "source" / "evil.module.pt")
    path = save_checkpoint(folder / "train" / "m.safetensors", build_model("lenet5", 10, 1), META)
    side = json.loads((folder / "train" / "m.safetensors.json").read_text())
    side["module"] = "source/evil.module.pt"
    (folder / "train" / "m.safetensors.json").write_text(json.dumps(side))
    return path, marker


def test_load_checkpoint_refuses_a_sidecar_naming_a_pickle(tmp_path):
    path, marker = _plant(tmp_path)
    with pytest.raises(CheckpointError, match=r"m\.safetensors\.json.*pickled module.*--trust-pickle"):
        load_checkpoint(path)
    assert not marker.exists()
    # the explicit flag is what it says: the file's code runs
    with pytest.raises(Exception):  # noqa: B017 -- exec returns None, which is no model
        load_checkpoint(path, trust_pickle=True)
    assert marker.read_text() == "ran"


def test_structured_loader_refuses_it_too(tmp_path):
    from prunescope.prune import load_structured_checkpoint

    path, marker = _plant(tmp_path)
    side = json.loads(Path(f"{path}.json").read_text())
    Path(f"{path}.json").write_text(json.dumps(side | {"structured": {"widths": {}}}))
    with pytest.raises(CheckpointError, match="pickled module"):
        load_structured_checkpoint(path)
    assert not marker.exists()


def test_load_state_dict_reads_weights_only_unless_trusted(tmp_path):
    marker = tmp_path / "marker"
    torch.save(_Planted(marker), tmp_path / "w.pt")
    with pytest.raises(CheckpointError, match=r"w\.pt cannot be read.*--trust-pickle"):
        load_state_dict(tmp_path / "w.pt")
    assert not marker.exists()
    state = build_model("lenet5", 10, 1).state_dict()
    torch.save(state, tmp_path / "ok.pt")
    assert load_state_dict(tmp_path / "ok.pt").keys() == state.keys()


def test_the_study_worker_never_unpickles_a_parent_sidecar(tmp_path):
    """A done parent in a study folder someone shared: its sidecar names the pickle."""
    from prunescope.study.worker import WorkerContext, _load_parent

    path, marker = _plant(tmp_path)
    ctx = WorkerContext(artifacts=str(tmp_path),
                        parent_artifacts=(("p" * 64, (("weights", str(path)),)),))
    with pytest.raises(CheckpointError, match="pickled module"):
        _load_parent(ctx, "p" * 64, "cpu")
    assert not marker.exists()


def test_audit_checkpoint_refuses_it(tmp_path):
    from prunescope.audit import AuditError, audit_checkpoint

    path, marker = _plant(tmp_path)
    with pytest.raises(AuditError, match="pickled module.*--trust-pickle"):
        audit_checkpoint(path, out_dir=tmp_path / "out")
    assert not marker.exists()


@pytest.mark.parametrize("command", [["prune"], ["audit"], ["audit", "--model", "torch.nn:Module"]])
def test_commands_refuse_it_in_one_line(tmp_path, monkeypatch, command):
    path, marker = _plant(tmp_path)
    if "--model" in command:  # a .pt "state dict" that is a planted pickle
        shutil.move(tmp_path / "source" / "evil.module.pt", tmp_path / "w.pt")
        path = tmp_path / "w.pt"
        command = [*command, "--data", str(tmp_path)]
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, [command[0], str(path), *command[1:], "--device", "cpu"])
    assert result.exit_code == 1, result.output
    lines = [ln for ln in result.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and "--trust-pickle" in lines[0], result.output
    assert not marker.exists()
