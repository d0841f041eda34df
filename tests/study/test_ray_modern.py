"""The Ray executor runs the newer job kinds (``rewind``, ``lth_level``, ``structured``) and the
evaluate jobs' ``predictions`` artifacts exactly as the local executor does.

The tiny modern study of test_modern_methods.py (real MNIST, LeNet-5, 1 model: MP and LTH at
ratio 2, L1-filter and CHIP at 2 and 4; 21 jobs), once locally and once on a local 2-CPU Ray
instance started here; ``threads = 1`` pins torch so both give bit-identical weights."""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pandas as pd
import pytest

from prunescope.study import load_results, run_study

from .conftest import mnist_available
from .test_modern_methods import MODERN, _spec

pytestmark = pytest.mark.skipif(not mnist_available(),
                                reason="MNIST is not cached: run `prunescope data fetch mnist`")


def _artifact_digests(spec) -> dict[str, str]:
    """sha256 of every job artifact (weights, masks, rewind states, predictions) by job id."""
    out = {}
    for _, row in load_results(spec).jobs.iterrows():
        for name, path in (row["artifacts"] or {}).items():
            out[f"{row['kind']}/{row['id']}/{name}"] = hashlib.sha256(
                Path(path).read_bytes()).hexdigest()
    return out


def test_ray_executor_runs_lth_and_structured_jobs_like_local(tmp_path):
    ray = pytest.importorskip("ray")
    local = _spec(tmp_path / "local")
    summary = run_study(local)
    assert summary.failed == 0, summary.errors
    assert summary.ran == 21

    remote = _spec(tmp_path / "ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        summary = run_study(remote, executor="ray")
    finally:
        ray.shutdown()
    assert summary.failed == 0, summary.errors
    assert summary.ran == 21

    ref, res = load_results(local), load_results(remote)
    # every job done, with the same results, on both
    cols = ["id", "kind", "status", "achieved_ratio", "level"]
    jobs_ref = ref.jobs[cols].sort_values("id").reset_index(drop=True)
    jobs_ray = res.jobs[cols].sort_values("id").reset_index(drop=True)
    assert (jobs_ray["status"] == "done").all()
    # ... and Ray's jobs really ran in Ray worker processes, not in this one
    here = f":{os.getpid()}"
    assert not any(i["worker"].endswith(here) for i in res.jobs["info"])
    assert all(i["worker"].endswith(here) for i in ref.jobs["info"])
    pd.testing.assert_frame_equal(jobs_ray, jobs_ref)
    assert set(res.jobs["kind"]) == {"train", "rewind", "prune_finetune", "lth_level",
                                     "structured", "evaluate"}
    # the tidy frame, with the LTH level and the achieved ratios
    assert {"level", "achieved_ratio"} <= set(res.frame.columns)
    assert set(res.frame["method"]) == {"dense", "mp", "lth", "l1-filter", "chip"}
    assert res.frame["level"].notna().any()
    pd.testing.assert_frame_equal(res.frame, ref.frame)
    # the agreement frame (from the predictions artifacts Ray's workers wrote)
    assert len(ref.agreement) == 1 + 4 + 4  # MP, 4 LTH levels, 4 structured models
    pd.testing.assert_frame_equal(res.agreement, ref.agreement)
    # and the artifacts themselves, byte for byte (sidecars with timings are not artifacts)
    assert _artifact_digests(remote) == _artifact_digests(local)
    preds = res.jobs[res.jobs["kind"] == "evaluate"]["artifacts"].map(
        lambda a: "predictions" in (a or {}))
    assert preds.all()
