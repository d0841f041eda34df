"""The Ray executor on a local Ray instance gives the local executor's results (issue 5)."""
from __future__ import annotations

import pandas as pd
import pytest

from prunescope.study import load_results, run_study


def test_ray_executor_same_results(tiny_reference, tiny_spec, weights_digests, tmp_path):
    ray = pytest.importorskip("ray")
    _, _, ref_frame, ref_digests = tiny_reference
    spec = tiny_spec(tmp_path)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        summary = run_study(spec, executor="ray")
    finally:
        ray.shutdown()
    assert summary.failed == 0 and summary.ran == 14
    pd.testing.assert_frame_equal(load_results(spec).frame, ref_frame)
    assert weights_digests(spec) == ref_digests
