"""The local executor with worker processes (`[executor] workers = 2`), with real processes and
real signals: killed with kill -9, its workers exit with it and nothing is left to warn about;
resumed, it reports per-step progress from its workers and the results equal the in-process run
(issue 5). SIGTERM and Ctrl-C stop the workers at once with one line on stderr; a worker killed
alone loses only its own pack, which runs again (issue 14 items 2, 3, 10)."""
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


def _workers(pid: int) -> list[int]:
    """The spawned worker processes among ``pid``'s children (not the resource tracker)."""
    out = []
    for c in _children(pid):
        try:
            if b"spawn_main" in Path(f"/proc/{c}/cmdline").read_bytes():
                out.append(c)
        except FileNotFoundError:
            pass
    return out


def _cpu_s(pid: int) -> float:
    """Seconds of CPU (user + system) process ``pid`` has used; 0 once it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except FileNotFoundError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _running(store: Path) -> int:
    try:
        con = sqlite3.connect(store, timeout=10)
        try:
            return con.execute("SELECT COUNT(*) FROM jobs WHERE status = 'running'").fetchone()[0]
        finally:
            con.close()
    except sqlite3.OperationalError:
        return 0


#: the driver under test starts with Ctrl-C's usual handler even when the test suite itself runs
#: with SIGINT ignored (a background job of a non-interactive shell, `nohup`), which the driver
#: would inherit: it would then ignore the test's Ctrl-C, as any such program does
_DRIVER = ("import signal; signal.signal(signal.SIGINT, signal.default_int_handler); "
           "from prunescope.cli import main; main()")


def _start(spec_file: Path) -> subprocess.Popen:
    """`prunescope run SPEC --quiet` in a session of its own (so that Ctrl-C can be sent to its
    whole process group, as a terminal does), stdout and stderr captured apart."""
    return subprocess.Popen([sys.executable, "-c", _DRIVER, "run", str(spec_file), "--quiet"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)


def _wait_busy(proc: subprocess.Popen, store: Path, timeout: float = 120) -> list[int]:
    """Wait until two jobs are running in two worker processes, each past its hand-over from
    the driver (0.3 s of its own CPU: it imports torch; the driver ignores SIGINT for the instant
    it starts a worker, docs/reliability.md, and a signal sent then is lost); return their pids."""
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None:
        workers = _workers(proc.pid)
        if len(workers) >= 2 and _running(store) >= 2 and min(map(_cpu_s, workers)) >= 0.3:
            return workers
        time.sleep(0.05)
    raise AssertionError(f"the run never had two busy workers: {proc.communicate()}")


def _long_spec(tiny_spec, folder: Path) -> Path:
    """The tiny study with 2 workers and training jobs of many minutes: whatever ends them
    early is an interruption."""
    spec = tiny_spec(folder)
    f = folder / "tiny.toml"
    f.write_text(spec.text.replace("threads = 1", "threads = 1\nworkers = 2")
                 .replace("max_steps_per_epoch = 15", "max_steps_per_epoch = 100000"))
    return f


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
    # the resource tracker found nothing to clean up ("leaked semaphore objects", issue 14/10)
    out = proc.stdout.read().decode()
    assert "leaked" not in out and "Traceback" not in out, out
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


def _store_rows(store: Path) -> dict[str, tuple[str, int, str | None]]:
    con = sqlite3.connect(store, timeout=10)
    try:
        return {i: (st, a, e) for i, st, a, e in
                con.execute("SELECT id, status, attempts, error FROM jobs")}
    finally:
        con.close()


def test_sigterm_stops_busy_workers_at_once(tiny_spec, tmp_path):
    """SIGTERM (timeout, systemd, batch schedulers) while two workers train: the driver exits
    with 130 within seconds, printing one line, with its workers gone; the two jobs stay
    `running` (nothing recorded as failed), to be run by the next `prunescope run`. Before, it
    waited for the packs (here: minutes) and then recorded nothing."""
    f = _long_spec(tiny_spec, tmp_path)
    store = tmp_path / "runs" / "tiny" / "study.sqlite"
    proc = _start(f)
    try:
        workers = _wait_busy(proc, store)
        t0 = time.monotonic()
        os.kill(proc.pid, signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
        took = time.monotonic() - t0
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 130, err
    assert took < 15, f"{took:.1f} s from SIGTERM to exit"
    assert err.strip().splitlines() == [
        "interrupted: finished jobs are saved; run the same command again to resume"], err
    assert not any(_alive(w) for w in workers)
    rows = _store_rows(store)
    assert sorted(st for st, _, _ in rows.values()).count("running") == 2
    assert not any(st == "failed" for st, _, _ in rows.values())


def test_ctrl_c_while_workers_start_prints_one_line(tiny_spec, tmp_path):
    """Ctrl-C reaches every process of the terminal's process group. Workers ignore it (from
    their first instruction on, while they still import torch) and the driver stops them: one
    line on stderr, exit 130, no worker left. Before, every worker printed a traceback of ~40
    lines."""
    f = _long_spec(tiny_spec, tmp_path)
    store = tmp_path / "runs" / "tiny" / "study.sqlite"
    proc = _start(f)
    try:
        workers = _wait_busy(proc, store)
        os.killpg(proc.pid, signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 130, err
    assert err.strip().splitlines() == [
        "interrupted: finished jobs are saved; run the same command again to resume"], err
    assert not any(_alive(w) for w in workers)


def test_ctrl_c_while_the_driver_starts_prints_one_line(tiny_spec, tmp_path):
    """Issue 23: Ctrl-C while `prunescope run` still imports its modules (seconds: torch)
    printed a KeyboardInterrupt traceback of 15 to 97 lines on main; now one line, exit 130,
    at any moment of the start-up (or, on a machine so busy that the signal comes before the
    interpreter has set its handler, the default action: killed by SIGINT, nothing printed)."""
    f = _long_spec(tiny_spec, tmp_path)
    for delay in (0.3, 1.5):
        proc = _start(f)
        try:
            time.sleep(delay)
            os.killpg(proc.pid, signal.SIGINT)
            out, err = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        if proc.returncode == -signal.SIGINT:  # before the interpreter set its handler (a
            assert err == "", (delay, err)      # busy machine): killed, nothing printed
            continue
        assert proc.returncode == 130, (delay, err)
        assert "Traceback" not in err and len(err.strip().splitlines()) == 1, (delay, err)
        assert err.startswith("interrupted"), (delay, err)


def test_workers_still_starting_die_with_a_killed_driver_at_once(tiny_spec, tmp_path):
    """Issue 23: the driver killed (SIGKILL) while its two workers still import torch. On main
    they lived on until their imports were done (2.6 to 7.7 s on the busy machine) before
    noticing; a worker now asks the kernel to kill it with its driver before any heavy import
    (prunescope._worker_start): gone within a second."""
    f = _long_spec(tiny_spec, tmp_path)
    proc = _start(f)
    try:
        deadline = time.time() + 120
        while len(workers := _workers(proc.pid)) < 2 and time.time() < deadline:
            time.sleep(0.01)
        assert len(workers) == 2, proc.communicate()
        time.sleep(0.3)  # past the workers' first instructions, well inside their imports
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        t0 = time.monotonic()
        while any(_alive(w) for w in workers) and time.monotonic() - t0 < 30:
            time.sleep(0.01)
        outlived = time.monotonic() - t0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert outlived < 1.0, f"the workers outlived their driver by {outlived:.1f} s"


def test_worker_killed_alone_loses_only_its_pack(tiny_reference, tiny_spec, weights_digests,
                                                 tmp_path):
    """The out-of-memory killer's way: SIGKILL of one of two busy workers. Its job goes back to
    pending and runs again in a new worker; the other worker's job is not disturbed (one
    attempt); the study finishes in the same run (exit 0) with the uninterrupted run's results.
    Before, both jobs failed (BrokenProcessPool), their dependents were blocked, and a rerun
    did nothing and exited 1."""
    _, _, ref_frame, ref_digests = tiny_reference
    spec = tiny_spec(tmp_path)
    f = tmp_path / "tiny.toml"
    f.write_text(spec.text.replace("threads = 1", "threads = 1\nworkers = 2"))
    store = Path(spec.output) / "study.sqlite"
    proc = _start(f)
    try:
        workers = _wait_busy(proc, store)
        os.kill(workers[0], signal.SIGKILL)  # still importing or training: its pack is lost
        out, err = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 0, (out, err)
    assert ("14 run now, 0 failed, 0 blocked, 1 run again after a lost worker"
            in " ".join(out.split())), out
    assert "Traceback" not in err, err
    rows = _store_rows(store)
    assert {st for st, _, _ in rows.values()} == {"done"}
    assert sorted(a for _, a, _ in rows.values()) == [1] * 13 + [2]
    pd.testing.assert_frame_equal(load_results(spec).frame, ref_frame)
    assert weights_digests(spec) == ref_digests
