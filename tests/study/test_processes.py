"""The local executor with worker processes (`[executor] workers = 2`) gives the in-process
results (issue 5: any executor, same results for the same seeds)."""
from __future__ import annotations

import pandas as pd

from prunescope.study import load_results, load_spec, run_study


def test_two_worker_processes_same_results(tiny_reference, tiny_spec, weights_digests, tmp_path):
    _, _, ref_frame, ref_digests = tiny_reference
    spec = tiny_spec(tmp_path)
    f = tmp_path / "tiny.toml"
    f.write_text(spec.text.replace("threads = 1", "threads = 1\nworkers = 2"))
    spec = load_spec(f)
    assert spec.executor.workers == 2
    summary = run_study(spec)
    assert summary.failed == 0 and summary.ran == 14
    pd.testing.assert_frame_equal(load_results(spec).frame, ref_frame)
    assert weights_digests(spec) == ref_digests

