"""Kill a real run (SIGTERM, then kill -9) and resume it: the results are identical to an
uninterrupted run with the same seeds (issue 5)."""
from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

from prunescope.study import load_results, run_study


def _done(store: Path) -> int:
    if not store.exists():
        return 0
    con = sqlite3.connect(store, timeout=10)
    try:
        return con.execute("SELECT COUNT(*) FROM jobs WHERE status = 'done'").fetchone()[0]
    except sqlite3.OperationalError:  # tables not created yet
        return 0
    finally:
        con.close()


def _start_and_kill(spec_file: Path, store: Path, after_done: int, sig: int) -> int:
    """Run `prunescope run` in a subprocess, send ``sig`` once ``after_done`` jobs are done."""
    cmd = [sys.executable, "-c", "from prunescope.cli import main; main()", "run",
           str(spec_file), "--quiet"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.time() + 120
        while _done(store) < after_done and proc.poll() is None and time.time() < deadline:
            time.sleep(0.05)
        assert proc.poll() is None, f"the run ended before it could be killed: {proc.stdout.read()}"
        os.kill(proc.pid, sig)
        return proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_kill_and_resume_gives_identical_results(tiny_reference, tiny_spec, weights_digests, tmp_path):
    _, _, ref_frame, ref_digests = tiny_reference
    spec = tiny_spec(tmp_path)
    store = Path(spec.output) / "study.sqlite"
    rc = _start_and_kill(tmp_path / "tiny.toml", store, after_done=2, sig=signal.SIGTERM)
    assert rc == 130  # SIGTERM unwinds like Ctrl-C: "interrupted, rerun to resume"
    first = _done(store)
    rc = _start_and_kill(tmp_path / "tiny.toml", store, after_done=first + 3, sig=signal.SIGKILL)
    assert rc == -signal.SIGKILL
    killed_at = _done(store)
    assert 0 < killed_at < 14
    summary = run_study(spec)
    assert summary.already_done == killed_at and summary.ran == 14 - killed_at
    assert summary.failed == 0
    pd.testing.assert_frame_equal(load_results(spec).frame, ref_frame)
    assert weights_digests(spec) == ref_digests
