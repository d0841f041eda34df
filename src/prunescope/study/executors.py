"""Executors: run packs somewhere and hand their results back to the driver.

Both executors share one small interface (:class:`Executor`): the driver ``submit``s packs while
``free_slots()`` is positive and calls ``wait()`` for the next finished pack(s). Only the driver
writes the store.

* :class:`LocalExecutor` runs one pack at a time in the driver's process (default).
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
import queue as queue_mod
import threading
import time
import traceback
from collections.abc import Callable
from typing import Protocol

from prunescope.study.packs import Pack
from prunescope.study.plan import Job
from prunescope.study.store import JobResult
from prunescope.study.worker import WorkerContext, run_pack

#: ``progress(pack, job, done, total)`` called as a running pack advances (local executors)
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


#: in a worker process of :class:`ProcessExecutor`: the queue its progress goes to, or None
_progress_queue = None
#: seconds between two progress messages of one pack (the last step is always sent)
PROGRESS_INTERVAL_S = 0.25


def _init_worker(parent_pid: int, queue: object, poll_s: float = 1.0) -> None:
    """Worker-process initializer: remember the progress queue, and start a daemon thread that
    ends the worker as soon as the driver is gone (e.g. ``kill -9``), so no orphan keeps
    computing a pack nobody will record."""
    global _progress_queue
    _progress_queue = queue

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(poll_s)
        os._exit(1)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


def _run_pack_in_worker(pack: Pack, ctx: WorkerContext, key: int) -> list[JobResult]:
    """``run_pack`` in a worker process, sending throttled ``(key, job index, done, total)``
    progress messages to the driver."""
    queue = _progress_queue
    if queue is None:
        return run_pack(pack, ctx)
    index = {j.id: i for i, j in enumerate(pack.jobs)}
    last = [0.0]

    def report(job: Job, done: int, total: int) -> None:
        now = time.monotonic()
        if done >= total or now - last[0] >= PROGRESS_INTERVAL_S:
            last[0] = now
            queue.put((key, index[job.id], done, total))

    return run_pack(pack, ctx, report)


class ProcessExecutor:
    """Runs packs in ``workers`` processes of this machine (``spawn``ed, so no state is shared).

    Args:
        workers: processes, >= 1.
        progress: optional :data:`PackProgressFn`; workers send their steps through a queue.

    A worker that dies (killed, out of memory) fails the jobs of its pack; the pool is then
    restarted for the remaining packs.
    """

    local_data = True

    def __init__(self, workers: int, progress: PackProgressFn | None = None) -> None:
        if workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        self.workers = workers
        self.progress = progress
        self._mp = multiprocessing.get_context("spawn")
        self._queue = self._mp.Queue() if progress is not None else None
        self._pool = self._new_pool()
        self._running: dict[cf.Future, tuple[int, Pack]] = {}
        self._next_key = 0

    def _new_pool(self) -> cf.ProcessPoolExecutor:
        return cf.ProcessPoolExecutor(self.workers, mp_context=self._mp,
                                      initializer=_init_worker,
                                      initargs=(os.getpid(), self._queue))

    def free_slots(self) -> int:
        return self.workers - len(self._running)

    def submit(self, pack: Pack, ctx: WorkerContext) -> None:
        self._next_key += 1
        fut = self._pool.submit(_run_pack_in_worker, pack, ctx, self._next_key)
        self._running[fut] = (self._next_key, pack)

    def _drain_progress(self) -> None:
        if self._queue is None or self.progress is None:
            return
        packs = dict(self._running.values())
        while True:
            try:
                key, i, done, total = self._queue.get_nowait()
            except queue_mod.Empty:
                return
            if key in packs:
                self.progress(packs[key], packs[key].jobs[i], done, total)

    def wait(self) -> list[tuple[Pack, list[JobResult]]]:
        if not self._running:
            return []
        done: set[cf.Future] = set()
        while not done:
            done, _ = cf.wait(list(self._running), timeout=PROGRESS_INTERVAL_S,
                              return_when=cf.FIRST_COMPLETED)
            self._drain_progress()
        out = []
        broken = False
        for fut in done:
            _, pack = self._running.pop(fut)
            try:
                out.append((pack, fut.result()))
            except Exception as e:  # noqa: BLE001 -- a dead worker fails its pack only
                broken |= isinstance(e, cf.process.BrokenProcessPool)
                out.append((pack, failed_results(
                    pack, f"worker process failed: {type(e).__name__}: {e}")))
        if broken:
            for fut, (_, pack) in list(self._running.items()):
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
