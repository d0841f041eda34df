"""The Ray executor gives the local executor's results, on a local Ray instance (issue 5) and on
a cluster of several nodes that loses one of them mid-study (issue 14)."""
from __future__ import annotations

import socket
import time
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from prunescope.cli import app
from prunescope.study import load_results, run_study
from prunescope.study.executors import RayUnreachable
from prunescope.study.progress import RunDisplay


@pytest.mark.timeout(120)
def test_a_ray_address_where_nothing_listens_fails_in_seconds_in_one_line(tiny_spec, tmp_path):
    """Issue 23: on main `run --executor ray --address` at a port where nothing listens ran
    for 10 minutes printing Ray's warnings; the address is now probed first."""
    with socket.socket() as s:  # a port that was free a moment ago: nothing listens there
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    spec = tiny_spec(tmp_path)
    t0 = time.monotonic()
    with pytest.raises(RayUnreachable, match=f"--address 127.0.0.1:{port}: nothing answers"):
        run_study(spec, executor="ray", address=f"127.0.0.1:{port}")
    assert time.monotonic() - t0 < 30
    got = CliRunner().invoke(app, ["run", spec.path, "--executor", "ray", "--address",
                                   f"127.0.0.1:{port}", "--quiet"])
    lines = [ln for ln in got.output.splitlines() if ln.strip()]
    assert got.exit_code == 1 and len(lines) == 1, got.output
    assert lines[0].startswith(f"error: --address 127.0.0.1:{port}: nothing answers")


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


def _runs_a_pack(raylet_pid: int) -> bool:
    """Whether a worker process started by the raylet ``raylet_pid`` executes a pack task
    (its process title, set by Ray, is ``ray::_run_pack_remote``)."""
    for proc in Path("/proc").iterdir():
        try:
            if not proc.name.isdigit():
                continue
            ppid = int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
            if ppid == raylet_pid and (proc / "cmdline").read_bytes().startswith(
                    b"ray::_run_pack_remote"):
                return True
        except (OSError, ValueError, IndexError):
            continue
    return False


class _KillNodeWhenBusy(RunDisplay):
    """Kills ``node`` (all its processes, SIGKILL) once two packs are in flight and a worker
    process of ``node`` runs one of them."""

    def __init__(self, ray, cluster, node):
        self.ray, self.cluster, self.node = ray, cluster, node
        self.in_flight = 0
        self.killed = False
        self.lost: list[str] = []

    def pack_started(self, pack):
        self.in_flight += 1
        if self.killed or self.in_flight < 2:
            return
        # Ray reserves a node's CPU before the task runs there; a node removed in between
        # only makes Ray schedule the task elsewhere, and nothing is lost (issue 23). Wait
        # until a worker process of the doomed node runs the task (Ray titles it so).
        raylet = self.node.all_processes["raylet"][0].process.pid
        deadline = time.time() + 300
        while not _runs_a_pack(raylet) and time.time() < deadline:
            time.sleep(0.05)
        self.cluster.remove_node(self.node, allow_graceful=False)
        self.killed = True

    def pack_finished(self, pack, results):
        self.in_flight -= 1

    def pack_lost(self, pack, reason, again):
        self.in_flight -= 1
        self.lost.append(reason)


@pytest.mark.slow
def test_ray_cluster_loses_a_worker_node_and_finishes(tiny_reference, tiny_spec, weights_digests,
                                                      tmp_path, monkeypatch):
    """A Ray cluster of a head (no CPUs: it runs no task) and two 1-CPU worker nodes on this
    machine: one worker node is killed while it runs a pack. The pack is lost (a Ray system
    error), its jobs run again on the node left, and the study finishes in the same run with
    the local run's results, bit for bit (issue 14, "Ray beyond one process")."""
    ray = pytest.importorskip("ray")
    from ray.cluster_utils import Cluster

    monkeypatch.setenv("RAY_raylet_start_wait_time_s", "300")  # a busy 2-core machine
    _, _, ref_frame, ref_digests = tiny_reference
    spec = tiny_spec(tmp_path)
    cluster = Cluster(initialize_head=True,
                      head_node_args={"num_cpus": 0, "include_dashboard": False})
    try:
        nodes = [cluster.add_node(num_cpus=1) for _ in range(2)]
        cluster.wait_for_nodes(timeout=300)
        ray.init(address=cluster.address, log_to_driver=False)
        display = _KillNodeWhenBusy(ray, cluster, nodes[0])
        summary = run_study(spec, executor="ray", display=display)
    finally:
        ray.shutdown()
        cluster.shutdown()
    assert display.killed and display.lost, "no pack was lost with the node"
    assert all(r.startswith("Ray lost the task: ") for r in display.lost), display.lost
    assert summary.failed == 0 and summary.ran == 14 and summary.lost >= 1
    pd.testing.assert_frame_equal(load_results(spec).frame, ref_frame)
    assert weights_digests(spec) == ref_digests
