"""Shared fixtures of the study tests: a tiny real-MNIST study and its uninterrupted run."""
from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from prunescope.study import load_results, parse_spec, run_study

#: 2 LeNet-5 models on real MNIST, MP and GP at ratio 4: 14 jobs of a few SGD steps each
TINY = """
name = "tiny"
seed = 7
models = 2
datasets = ["mnist"]
architectures = ["lenet5"]
methods = ["mp", "gp"]
ratios = [4]
n_val = 200
test_subset = 300
[gradients]
mode = "batches"
n_batches = 1
[train]
schedule = [[1, 0.05]]
max_steps_per_epoch = 15
[finetune]
schedule = [[1, 0.01]]
max_steps_per_epoch = 2
[executor]
threads = 1
"""


def mnist_available() -> bool:
    from prunescope.data import list_datasets

    return any(s.name == "mnist" and s.cached for s in list_datasets())


def _tiny_spec(folder: Path):
    """The tiny study written to ``folder/tiny.toml`` (outputs under ``folder/runs/tiny``)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "tiny.toml").write_text(TINY)
    return parse_spec(TINY, base_dir=folder, source=str(folder / "tiny.toml"))


def _weights_digests(spec) -> dict[str, str]:
    """sha256 of every weights/gradients file (the JSON sidecars hold timings, so they differ)."""
    res = load_results(spec)
    out = {}
    for _, row in res.jobs.iterrows():
        for name, path in (row["artifacts"] or {}).items():
            out[f"{row['id']}/{name}"] = hashlib.sha256(Path(path).read_bytes()).hexdigest()
    return out


@pytest.fixture(scope="session")
def tiny_reference(tmp_path_factory):
    """``(spec, summary, frame, digests)`` of one uninterrupted local run of the tiny study."""
    if not mnist_available():
        pytest.skip("MNIST is not cached: run `prunescope data fetch mnist`")
    spec = _tiny_spec(tmp_path_factory.mktemp("ref"))
    summary = run_study(spec)
    return spec, summary, load_results(spec).frame, _weights_digests(spec)


@pytest.fixture
def tiny_spec():
    """``tiny_spec(folder) -> StudySpec``: the tiny study written into ``folder``."""
    return _tiny_spec


@pytest.fixture
def weights_digests():
    """``weights_digests(spec) -> {job/artifact: sha256}`` of a run's weight files."""
    return _weights_digests
