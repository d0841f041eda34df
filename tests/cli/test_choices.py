"""One set of rules for the CLI and the study spec (issue 18 item 8): the pairs of dataset and
architecture, ratio bounds, devices and distributions are checked by ``prunescope.choices``, so
a value the one refuses the other refuses, with the same *allowed* text."""
from __future__ import annotations

import re

import pytest
import typer
from typer.testing import CliRunner

from prunescope import choices
from prunescope.cli import app
from prunescope.study import SpecError, parse_spec

#: a one-cell study; each test swaps one of its values for the one the CLI is given
SPEC = ('name = "c"\nmodels = 1\ndatasets = ["mnist"]\narchitectures = ["lenet5"]\n'
        'methods = ["mp"]\nratios = [2]\noutput = "out"\n')


def _flat(output: str) -> str:  # typer's error box may wrap the line
    return re.sub(r"[\s│]+", " ", output)


def _spec_error(tmp_path, old: str, new: str) -> str:
    with pytest.raises(SpecError) as e:
        parse_spec(SPEC.replace(old, new), base_dir=tmp_path)
    return str(e.value)


def _cli(*args: str):
    return CliRunner().invoke(app, list(args))


def test_a_lenet_dataset_with_a_resnet_is_refused_by_train_as_by_a_study(tmp_path):
    allowed = choices.arch_error("mnist", "resnet20")
    assert allowed == "an architecture that fits mnist: lenet5, lenet5-shrinkbench"
    assert allowed in _spec_error(tmp_path, '["lenet5"]', '["resnet20"]')
    r = _cli("train", "--dataset", "mnist", "--arch", "resnet20", "--out", str(tmp_path / "m"))
    assert r.exit_code == 2 and allowed in _flat(r.output), r.output
    assert choices.archs_for("cifar10") == ("resnet20", "resnet32", "resnet44", "resnet56",
                                            "resnet110")


def test_ratio_one_is_refused_by_prune_as_by_a_study(tmp_path):
    assert choices.RATIO_ALLOWED in _spec_error(tmp_path, "ratios = [2]", "ratios = [1]")
    r = _cli("prune", str(tmp_path / "dense.safetensors"), "--ratio", "1")
    shown = f"--ratio 1.0 is invalid; allowed: {choices.RATIO_ALLOWED}"
    assert r.exit_code == 2 and shown in _flat(r.output), r.output
    ok = [choices.ratio_error(x) is None for x in (1, 1.0, 0.5, float("inf"), True, "2", 1.01)]
    assert ok == [False] * 6 + [True]


def test_audit_refuses_ratio_one_and_a_bad_distribution_with_the_spec_text(tmp_path):
    allowed = choices.distribution_error("jpeg-3")
    assert allowed is not None and "jpeg_compression" in allowed
    assert allowed in _spec_error(tmp_path, 'output = "out"',
                                  'output = "out"\ndistributions = ["jpeg-3"]')
    missing = str(tmp_path / "none.safetensors")
    r = _cli("audit", missing, "--distributions", "nominal,jpeg-3", "--out", str(tmp_path / "a"))
    assert r.exit_code == 1 and f"--distributions 'jpeg-3' is invalid; allowed: {allowed}" in _flat(
        r.output), r.output
    r = _cli("audit", missing, "--ratios", "1,4", "--out", str(tmp_path / "a"))
    assert r.exit_code == 1 and choices.RATIO_ALLOWED in _flat(r.output), r.output


def _default(command: str, option: str):
    group = typer.main.get_command(app)
    return next(p.default for p in group.commands[command].params if p.name == option)


def test_the_device_defaults_to_auto_everywhere_and_is_checked_alike(tmp_path):
    """The CLI's default was cpu while a study's is auto."""
    spec = parse_spec(SPEC, base_dir=tmp_path)
    assert spec.device == choices.DEFAULT_DEVICE == "auto"
    assert [_default(c, "device") for c in ("train", "prune", "audit")] == ["auto"] * 3
    allowed = choices.device_error("tpu")
    assert allowed in _spec_error(tmp_path, 'output = "out"', 'output = "out"\ndevice = "tpu"')
    r = _cli("train", "--dataset", "mnist", "--arch", "lenet5", "--device", "tpu")
    assert r.exit_code == 2 and allowed in _flat(r.output), r.output
    assert [choices.device_error(d) is None for d in ("auto", "cpu", "cuda", "cuda:0", "cuda:127",
                                                      "cuda:128", "cuda:01", "mps")] == [
        True, True, True, True, True, False, False, False]
    assert choices.resolve_device("cpu") == "cpu"
    assert choices.resolve_device("auto") in ("cpu", "cuda")
