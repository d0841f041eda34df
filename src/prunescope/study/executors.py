"""Executors: run packs somewhere and hand their results back to the driver.

Both executors share one small interface (:class:`Executor`): the driver ``submit``s packs while
``free_slots()`` is positive and calls ``wait()`` for the next finished pack(s). Only the driver
writes the store.

* :class:`LocalExecutor` runs one pack at a time in the driver's process (default), with
  per-step progress.
* :class:`ProcessExecutor` runs up to ``workers`` packs at once in worker processes of this
  machine (``[executor] workers``), each with ``threads`` torch threads (1 unless set): on a
  small shared CPU, N single-threaded workers beat one N-threaded process by far.
* :class:`RayExecutor` runs each pack as one Ray task asking for ``gpus_per_pack`` GPUs when the
  cluster has GPUs, else ``cpus_per_pack`` CPUs; workers read data and parent artifacts
  themselves and return :class:`~prunescope.study.store.JobResult` lists.
"""
from __future__ import annotations

import concurrent.futures as cf
import multiprocessing
import os
import threading
import time
import traceback
from collections.abc import Callable
from typing import Protocol

from prunescope.study.packs import Pack
from prunescope.study.plan import Job
from prunescope.study.store import JobResult
from prunescope.study.worker import WorkerContext, run_pack

#: ``progress(pack, job, done, total)`` called as a running pack advances (local executor only)
PackProgressFn = Callable[[Pack, Job, int, int], None]


class Executor(Protocol):
    """What the driver needs from an executor.

    ``local_data``: whether the workers read datasets from this machine's cache; if so the
    driver fills the cache first and fails the training jobs of a dataset it cannot get.
    """

    local_data: bool

    def free_slots(self) -> int:
        """How many more packs may be submitted now."""

    def submit(self, pack: Pack, ctx: WorkerContext) -> None:
        """Start (or queue) ``pack``."""

    def wait(self) -> list[tuple[Pack, list[JobResult]]]:
        """Block until at least one submitted pack finished; return the finished ones."""

    def close(self) -> None:
        """Cancel what is still running and release resources."""


def failed_results(pack: Pack, error: str) -> list[JobResult]:
    """A ``failed`` result with ``error`` for every job of ``pack`` (a pack-level failure)."""
    return [JobResult(j.id, "failed", error=error) for j in pack.jobs]


class LocalExecutor:
    """Runs packs in-process, one at a time.

    Args:
        progress: optional :data:`PackProgressFn` for live per-pack progress.
    """

    local_data = True

    def __init__(self, progress: PackProgressFn | None = None) -> None:
        self.progress = progress
        self._queued: tuple[Pack, WorkerContext] | None = None

    def free_slots(self) -> int:
        return 0 if self._queued else 1

    def submit(self, pack: Pack, ctx: WorkerContext) -> None:
        if self._queued:
            raise RuntimeError("LocalExecutor runs one pack at a time; call wait() first")
        self._queued = (pack, ctx)

    def wait(self) -> list[tuple[Pack, list[JobResult]]]:
        if not self._queued:
            return []
        pack, ctx = self._queued
        self._queued = None
        cb = None
        if self.progress is not None:
            progress = self.progress
            cb = lambda job, done, total: progress(pack, job, done, total)  # noqa: E731
        return [(pack, run_pack(pack, ctx, cb))]

    def close(self) -> None:
        self._queued = None


def _exit_with_parent(parent_pid: int, poll_s: float = 1.0) -> None:
    """Worker-process initializer: a daemon thread ends the worker as soon as the driver is gone
    (e.g. ``kill -9``), so no orphan keeps computing a pack nobody will record."""

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(poll_s)
        os._exit(1)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


class ProcessExecutor:
    """Runs packs in ``workers`` processes of this machine (``spawn``ed, so no state is shared).

    A worker that dies (killed, out of memory) fails the jobs of its pack; the pool is then
    restarted for the remaining packs.
    """

    local_data = True

    def __init__(self, workers: int) -> None:
        if workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        self.workers = workers
        self._pool = self._new_pool()
        self._running: dict[cf.Future, Pack] = {}

    def _new_pool(self) -> cf.ProcessPoolExecutor:
        return cf.ProcessPoolExecutor(self.workers, mp_context=multiprocessing.get_context("spawn"),
                                      initializer=_exit_with_parent, initargs=(os.getpid(),))

    def free_slots(self) -> int:
        return self.workers - len(self._running)

    def submit(self, pack: Pack, ctx: WorkerContext) -> None:
        self._running[self._pool.submit(run_pack, pack, ctx)] = pack

    def wait(self) -> list[tuple[Pack, list[JobResult]]]:
        if not self._running:
            return []
        done, _ = cf.wait(list(self._running), return_when=cf.FIRST_COMPLETED)
        out = []
        broken = False
        for fut in done:
            pack = self._running.pop(fut)
            try:
                out.append((pack, fut.result()))
            except Exception as e:  # noqa: BLE001 -- a dead worker fails its pack only
                broken |= isinstance(e, cf.process.BrokenProcessPool)
                out.append((pack, failed_results(
                    pack, f"worker process failed: {type(e).__name__}: {e}")))
        if broken:
            for fut, pack in list(self._running.items()):
                self._running.pop(fut)
                out.append((pack, failed_results(pack, "worker pool broke while this ran")))
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = self._new_pool()
        return out

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._running.clear()


def _run_pack_remote(pack: Pack, ctx: WorkerContext) -> list[JobResult]:
    """The body of the Ray task (module-level so Ray can pickle it by reference)."""
    return run_pack(pack, ctx)


class RayExecutor:
    """Runs each pack as one Ray task.

    Args:
        address: Ray cluster address (``auto``, ``ray://host:10001``...); ``None`` starts a local
            Ray instance, which :meth:`close` shuts down again.
        gpus_per_pack: GPUs per pack task when the cluster has GPUs (a fraction packs several
            tasks per GPU).
        cpus_per_pack: CPUs per pack task when it has none.
        num_cpus: CPUs of the local instance started when ``address`` is ``None``.

    The number of packs in flight is what the cluster's resources allow (at least one).
    """

    local_data = False  # workers may be on other machines, each with its own cache

    def __init__(self, address: str | None = None, gpus_per_pack: float = 1.0,
                 cpus_per_pack: int = 1, num_cpus: int | None = None) -> None:
        try:
            import ray
        except ImportError as e:  # pragma: no cover - ray is a declared optional dependency
            raise RuntimeError("the Ray executor needs ray: pip install 'prunescope[ray]'") from e
        self.ray = ray
        self._owns = not ray.is_initialized()
        if self._owns:
            if address is None:
                ray.init(num_cpus=num_cpus, include_dashboard=False, log_to_driver=False)
            else:
                ray.init(address=address, log_to_driver=False)
        res = ray.cluster_resources()
        gpus = float(res.get("GPU", 0.0))
        if gpus > 0:
            self._options = {"num_gpus": gpus_per_pack, "num_cpus": 1}
            self.capacity = max(1, int(gpus // gpus_per_pack))
            self.device = "cuda"
        else:
            self._options = {"num_cpus": cpus_per_pack}
            self.capacity = max(1, int(float(res.get("CPU", 1.0)) // cpus_per_pack))
            self.device = "cpu"
        self._task = ray.remote(max_retries=0)(_run_pack_remote)
        self._running: dict[object, Pack] = {}

    def free_slots(self) -> int:
        return self.capacity - len(self._running)

    def submit(self, pack: Pack, ctx: WorkerContext) -> None:
        ref = self._task.options(**self._options).remote(pack, ctx)
        self._running[ref] = pack

    def wait(self) -> list[tuple[Pack, list[JobResult]]]:
        if not self._running:
            return []
        ready, _ = self.ray.wait(list(self._running), num_returns=1)
        out = []
        for ref in ready:
            pack = self._running.pop(ref)
            try:
                out.append((pack, self.ray.get(ref)))
            except Exception as e:  # noqa: BLE001 -- a lost worker fails its pack, not the study
                out.append((pack, failed_results(
                    pack, f"Ray task failed: {type(e).__name__}: {e}\n"
                          f"{traceback.format_exc(limit=-2)}")))
        return out

    def close(self) -> None:
        for ref in list(self._running):
            self.ray.cancel(ref, force=True)
        self._running.clear()
        if self._owns and self.ray.is_initialized():
            self.ray.shutdown()
