"""Validation before any work (issue 14 item 7): values a run could only fail on, or never
finish, are refused by ``parse_spec`` with a one-line SpecError naming the key, the value and
the documented bound (docs/studies.md, "Bounds")."""
from __future__ import annotations

import time
import tomllib
from pathlib import Path

import pytest

from prunescope.study import SpecError, load_spec, make_plan, parse_spec
from prunescope.study import feasibility

BASE = """
name = "b"
models = 2
datasets = ["mnist"]
architectures = ["lenet5"]
methods = ["mp", "chip"]
ratios = [2, 4]
output = "out"
"""
ROOT = Path(__file__).resolve().parents[2]


def _refused(text, tmp_path, key, words):
    with pytest.raises(SpecError) as e:
        parse_spec(text, base_dir=tmp_path, source=str(tmp_path / "b.toml"))
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith(str(tmp_path / "b.toml")), msg
    assert f"key '{key}'" in msg and words in msg, msg
    return msg


@pytest.mark.parametrize("edit, key, words", [
    # (old, new) replacements of BASE, or a text to append
    (('output = "out"', 'output = "o\\u0000ut"'), "output", "without NUL"),
    ('artifacts = "a\\u0000b"\n', "artifacts", "without NUL"),
    ('artifacts = "memory://a\\u0000b"\n', "artifacts", "without NUL"),
    ("[train]\nepochs_scale = 1e308\n", "train.epochs_scale", "(0, 10000]"),
    ("[finetune]\nepochs = 10001\n", "finetune.epochs", "from 1 to 10000"),
    ("[train]\nschedule = [[100000, 0.1]]\n", "train.schedule", "at most 10000 epochs"),
    ("[train.lenet5]\nschedule = [[5000, 0.1], [5001, 0.01]]\n", "train.lenet5.schedule",
     "at most 10000 epochs"),
    (("models = 2", "models = 1000000"), "models", "from 1 to 100000"),
    ("split_seed = -1\n", "split_seed", "from 0 to"),
    ("corruption_seed = -5\n", "corruption_seed", "from 0 to"),
    (("models = 2", "seed = 9223372036854775808\nmodels = 2"), "seed", "64 bits"),
    ("[train]\nbatch_size = 100000000000000000000\n", "train.batch_size", "64 bits"),
    ('device = "cuda:¹"\n', "device", "cuda:N"),
    ('device = "cuda:٣"\n', "device", "cuda:N"),
    ('device = "cuda:128"\n', "device", "0..127"),
    ('device = "cuda:01"\n', "device", "cuda:N"),
    ('artifacts = "foo://bucket/x"\n', "artifacts", "protocol fsspec knows"),
    ('artifacts = "simplecache::bar://bucket/x"\n', "artifacts", "protocol fsspec knows"),
    (('name = "b"', f'name = "{"n" * 101}"'), "name", "1 to 100"),
    (('name = "b"', 'name = ".."'), "name", "starting with a letter or digit"),
    (('output = "out"', f'output = "{"d" * 256}/x"'), "output", "at most 255 bytes"),
    (('output = "out"', 'output = "' + "/".join(["d" * 200] * 20) + '"'), "output",
     "at most 3500 bytes"),
    (('output = "out"', 'output = ""'), "output", "non-empty"),
    ("[executor]\nworkers = 257\n", "executor.workers", "from 1 to 256"),
    ("[executor]\nthreads = 1025\n", "executor.threads", "from 0 to 1024"),
    ("[executor]\npack_size = 1025\n", "executor.pack_size", "from 1 to 1024"),
    ("[executor]\ncpus_per_pack = 100000\n", "executor.cpus_per_pack", "from 1 to 1024"),
    ("[executor]\ngpus_per_pack = 65\n", "executor.gpus_per_pack", "up to 64"),
    ("[executor]\ngpus_per_pack = 1e-9\n", "executor.gpus_per_pack", "[0.01, 1]"),
    ("[structured]\nchip_images = 100000000000\n", "structured.chip_images",
     "at most the 55000 training images of mnist"),
    ("test_subset = 10000\n", "test_subset", "fewer than the 10000 test images"),
    ("[lth]\nprune_fraction = 0.0001\n", "lth.prune_fraction", "within 100 levels"),
])
def test_out_of_bounds_values_are_refused(tmp_path, edit, key, words):
    text = BASE.replace(*edit) if isinstance(edit, tuple) else BASE + edit
    if key == "lth.prune_fraction":
        text = text.replace('"mp", "chip"', '"lth"')
    assert text != BASE
    _refused(text, tmp_path, key, words)


def test_bounds_themselves_are_accepted(tmp_path):
    parse_spec(BASE + 'device = "cuda:127"\nsplit_seed = 9223372036854775807\n'
               "test_subset = 9999\n[executor]\nworkers = 256\nthreads = 1024\n"
               "pack_size = 1024\ngpus_per_pack = 64\n[structured]\nchip_images = 55000\n"
               "[train]\nepochs = 10000\n", base_dir=tmp_path)


def test_a_known_protocol_without_its_backend_names_the_package(tmp_path, monkeypatch):
    import fsspec

    def missing(protocol):
        raise ImportError(f"Install {protocol}fs to access {protocol}")

    monkeypatch.setattr(fsspec, "get_filesystem_class", missing)
    _refused(BASE + 'artifacts = "s3://bucket/x"\n', tmp_path, "artifacts", "Install s3fs")


def test_an_output_under_a_file_is_refused(tmp_path):
    (tmp_path / "taken").write_text("a file")
    for out in ("taken", "taken/sub"):
        _refused(BASE.replace('output = "out"', f'output = "{out}"'), tmp_path, "output",
                 "not a file")


def test_a_nul_byte_in_the_output_override_is_refused(tmp_path):
    f = tmp_path / "b.toml"
    f.write_text(BASE)
    with pytest.raises(SpecError, match=r"key 'output \(--output\)'.*without NUL"):
        load_spec(f, output="x\x00y")
    assert load_spec(f, output="elsewhere").output == str(Path.cwd() / "elsewhere")


@pytest.mark.parametrize("study", sorted((ROOT / "studies").glob("*.toml")), ids=lambda p: p.name)
def test_jobs_per_model_counts_the_plan_exactly(study):
    """The job cap counts what make_plan builds (checked on every shipped study)."""
    spec = load_spec(study)
    assert spec.models * feasibility.jobs_per_model(spec) == len(make_plan(spec).jobs)


def test_the_job_cap_names_models_or_the_grid(tmp_path, monkeypatch):
    per_model = feasibility.jobs_per_model(parse_spec(BASE, base_dir=tmp_path))
    # train, mp and chip at 2 ratios each: 5 models, each evaluated on 1 distribution
    assert per_model == 5 * (1 + 1)
    monkeypatch.setattr(feasibility, "MAX_JOBS", 3 * per_model)
    parse_spec(BASE.replace("models = 2", "models = 3"), base_dir=tmp_path)
    _refused(BASE.replace("models = 2", "models = 4"), tmp_path, "models",
             "at most 3 models for this grid (10 jobs per model")
    monkeypatch.setattr(feasibility, "MAX_JOBS", per_model - 1)
    _refused(BASE + 'distributions = ["nominal", "noise-0.1"]\n', tmp_path, "distributions",
             f"at most {per_model - 1} jobs per model")


def test_a_million_models_is_refused_at_once(tmp_path):
    """It used to make `plan` hang with its memory growing."""
    t0 = time.perf_counter()
    _refused(BASE.replace("models = 2", "models = 1000000"), tmp_path, "models", "100000")
    _refused(BASE.replace("models = 2", "models = 20000"), tmp_path, "models",
             "at most 10000 models for this grid")
    assert time.perf_counter() - t0 < 5


def test_shipped_studies_stay_within_the_bounds():
    for study in (ROOT / "studies").glob("*.toml"):
        assert tomllib.loads(study.read_text())  # and load_spec accepts it:
        load_spec(study)
