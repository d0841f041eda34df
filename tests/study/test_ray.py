"""The Ray executor gives the local executor's results, on a local Ray instance (issue 5) and on
a cluster of several nodes that loses one of them mid-study (issue 14)."""
from __future__ import annotations

import time

import pandas as pd
import pytest

from prunescope.study import load_results, run_study
from prunescope.study.progress import RunDisplay


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


class _KillNodeWhenBusy(RunDisplay):
    """Kills ``node`` (all its processes, SIGKILL) once two packs are in flight and every CPU
    of the cluster is taken, i.e. while ``node`` runs one of them."""

    def __init__(self, ray, cluster, node):
        self.ray, self.cluster, self.node = ray, cluster, node
        self.in_flight = 0
        self.killed = False
        self.lost: list[str] = []

    def pack_started(self, pack):
        self.in_flight += 1
        if self.killed or self.in_flight < 2:
            return
        deadline = time.time() + 120
        while self.ray.available_resources().get("CPU", 0) > 0 and time.time() < deadline:
            time.sleep(0.02)
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
