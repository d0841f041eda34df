"""The local executor with worker processes (`[executor] workers = 2`): killed with kill -9, its
workers exit with it; resumed, it reports per-step progress from its workers and the results
equal the in-process run (issue 5)."""
from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

from prunescope.study import load_results, load_spec, run_study
from prunescope.study.progress import RunDisplay


class Recorder(RunDisplay):
    def __init__(self):
        self.steps = []

    def pack_progress(self, pack, job, done, total):
        self.steps.append((pack.kind, job.id, done, total))


def _done(store: Path) -> int:
    try:
        con = sqlite3.connect(store, timeout=10)
        try:
            return con.execute("SELECT COUNT(*) FROM jobs WHERE status = 'done'").fetchone()[0]
        finally:
            con.close()
    except sqlite3.OperationalError:  # no store or no tables yet
        return 0


def _children(pid: int) -> list[int]:
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True)
    return [int(x) for x in out.stdout.split()]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return not (stat.exists() and stat.read_text().split(")")[-1].split()[0] == "Z")


def test_two_worker_processes_killed_and_resumed(tiny_reference, tiny_spec, weights_digests,
                                                 tmp_path):
    _, _, ref_frame, ref_digests = tiny_reference
    spec = tiny_spec(tmp_path)
    f = tmp_path / "tiny.toml"
    f.write_text(spec.text.replace("threads = 1", "threads = 1\nworkers = 2"))
    spec = load_spec(f)
    assert spec.executor.workers == 2
    store = Path(spec.output) / "study.sqlite"
    proc = subprocess.Popen([sys.executable, "-c", "from prunescope.cli import main; main()",
                             "run", str(f), "--quiet"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.time() + 120
        while _done(store) < 3 and proc.poll() is None and time.time() < deadline:
            time.sleep(0.05)
        assert proc.poll() is None, proc.stdout.read()
        workers = _children(proc.pid)
        assert len(workers) >= 2  # two spawned workers (+ multiprocessing's resource tracker)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    deadline = time.time() + 15
    while any(_alive(w) for w in workers) and time.time() < deadline:
        time.sleep(0.2)
    assert not any(_alive(w) for w in workers), "worker processes outlived the killed driver"
    killed_at = _done(store)
    display = Recorder()
    summary = run_study(spec, display=display)
    assert summary.failed == 0 and summary.already_done == killed_at
    assert summary.ran == 14 - killed_at
    fitted = [s for s in display.steps if s[0] in ("train", "prune_finetune")]
    assert fitted and all(1 <= d <= t for _, _, d, t in fitted)
    assert any(d == t > 1 for _, _, d, t in fitted)  # the last step of a fit always arrives
    pd.testing.assert_frame_equal(load_results(spec).frame, ref_frame)
    assert weights_digests(spec) == ref_digests
