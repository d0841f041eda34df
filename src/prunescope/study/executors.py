"""Executors: run packs somewhere and hand their results back to the driver.

The executors share one small interface (:class:`Executor`): the driver ``submit``s packs while
``free_slots()`` is positive and calls ``wait()`` for the next finished pack(s): each with its
results, or :class:`Lost` when its worker died before it reported (an infrastructure fault, not
a result: the driver runs those jobs again). Only the driver writes the store.

* :class:`LocalExecutor` runs one pack at a time in the driver's process (default).
* :class:`ProcessExecutor` runs up to ``workers`` packs at once in worker processes of this
  machine (``[executor] workers``), each with ``threads`` torch threads (1 unless set): on a
  small shared CPU, N single-threaded workers beat one N-threaded process by far.
* :class:`RayExecutor` runs each pack as one Ray task asking for ``gpus_per_pack`` GPUs when the
  cluster has GPUs, else ``cpus_per_pack`` CPUs; workers read data and parent artifacts
  themselves and return :class:`~prunescope.study.store.JobResult` lists.
"""
from __future__ import annotations

import multiprocessing
import multiprocessing.connection as mp_connection
import os
import signal
import socket
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from prunescope._worker_start import worker_entry
from prunescope.errors import UserError
from prunescope.study.packs import Pack
from prunescope.study.plan import Job
from prunescope.study.store import JobResult

if TYPE_CHECKING:  # the worker (torch, dynamo) loads where a pack runs, not in the driver
    from prunescope.study.worker import WorkerContext

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

    def wait(self) -> list[tuple[Pack, list[JobResult] | Lost]]:
        """Block until at least one submitted pack finished; return the finished ones, each
        with its results or, if its worker was lost, :class:`Lost`."""

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
        from prunescope.study.worker import run_pack

        pack, ctx = self._queued
        self._queued = None
        cb = None
        if self.progress is not None:
            progress = self.progress
            cb = lambda job, done, total: progress(pack, job, done, total)  # noqa: E731
        return [(pack, run_pack(pack, ctx, cb))]

    def close(self) -> None:
        self._queued = None


#: seconds between two progress messages of one pack (the last step is always sent)
PROGRESS_INTERVAL_S = 0.25
#: seconds a worker gets to exit after SIGTERM before :meth:`ProcessExecutor.close` kills it
TERMINATE_GRACE_S = 3.0


@dataclass(frozen=True)
class Lost:
    """What :meth:`Executor.wait` returns instead of results for a pack whose worker was lost
    before it reported (the process killed, e.g. by the out-of-memory killer; a Ray node gone):
    an infrastructure fault, not a result of the jobs. The driver runs the jobs again.

    Attributes:
        reason: one line, e.g. ``worker process 1234 was killed by SIGKILL``.
    """

    reason: str


def _worker_main(conn: mp_connection.Connection, parent_pid: int) -> None:
    """A worker process of :class:`ProcessExecutor` (entered through
    :func:`prunescope._worker_start.worker_entry`, which ties it to the driver): run the packs the driver sends through
    ``conn`` (``(key, pack, ctx)``, ``None`` = stop), one at a time, and send back
    ``("progress", key, job index, done, total)`` messages (throttled) and one
    ``("done", key, results)`` or ``("error", key, text)`` per pack.

    Ctrl-C reaches every process of the terminal's process group; the driver alone handles it
    and stops its workers, so SIGINT is ignored here (it was already ignored while this process
    started, see :meth:`ProcessExecutor._spawn`). SIGTERM keeps its default action: the driver
    ends a worker with it, silently."""
    from prunescope.study.worker import run_pack

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError):  # the driver closed the pipe
            return
        if msg is None:
            return
        key, pack, ctx = msg
        index = {j.id: i for i, j in enumerate(pack.jobs)}
        last = [0.0]

        def report(job: Job, done: int, total: int) -> None:
            now = time.monotonic()
            if done >= total or now - last[0] >= PROGRESS_INTERVAL_S:
                last[0] = now
                conn.send(("progress", key, index[job.id], done, total))

        try:
            msg = ("done", key, run_pack(pack, ctx, report))
        except Exception as e:  # noqa: BLE001 -- the pack fails, the worker goes on
            msg = ("error", key, f"{type(e).__name__}: {e}\n{traceback.format_exc(limit=-3)}")
        try:
            conn.send(msg)
        except OSError:  # the driver is gone
            return


def _exit_reason(process: multiprocessing.process.BaseProcess) -> str:
    """``worker process PID was killed by SIGKILL`` / ``... exited with code N``."""
    code = process.exitcode
    if code is not None and code < 0:
        name = signal.Signals(-code).name
        how = f"was killed by {name}" + (" (e.g. by the out-of-memory killer)"
                                          if -code == signal.SIGKILL else "")
    else:
        how = f"exited with code {code}"
    return f"worker process {process.pid} {how}"


@dataclass(eq=False)
class _Worker:
    """A worker process, the driver's end of its pipe, and the pack it runs (``(key, pack)``)."""

    process: multiprocessing.process.BaseProcess
    conn: mp_connection.Connection
    task: tuple[int, Pack] | None = None


class ProcessExecutor:
    """Runs packs in ``workers`` processes of this machine (``spawn``ed, so no state is shared),
    one pack per process at a time, each talking to the driver through its own pipe.

    Args:
        workers: processes, >= 1.
        progress: optional :data:`PackProgressFn`; workers send their steps through the pipe.

    A worker that dies (killed, out of memory) loses only its own pack: :meth:`wait` returns
    :class:`Lost` for it, the other workers go on, and the next :meth:`submit` starts a new
    process. Workers are started when a pack needs one and ignore Ctrl-C; :meth:`close` ends
    them all within :data:`TERMINATE_GRACE_S` seconds (SIGTERM, then SIGKILL). Only pipes
    connect the processes (no semaphores), so a killed driver leaves nothing to clean up.
    """

    local_data = True

    def __init__(self, workers: int, progress: PackProgressFn | None = None) -> None:
        if workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        self.workers = workers
        self.progress = progress
        self._mp = multiprocessing.get_context("spawn")
        self._procs: list[_Worker] = []
        self._next_key = 0

    def _spawn(self) -> _Worker:
        """Start a worker process with SIGINT ignored from its first instruction on (the
        disposition is inherited across exec), so that a Ctrl-C while it imports torch prints
        no traceback. The driver ignores SIGINT only for the instant of the fork."""
        conn, child = self._mp.Pipe()
        process = self._mp.Process(target=worker_entry, args=(child, os.getpid()),
                                   name="prunescope-worker")
        main = threading.current_thread() is threading.main_thread()
        old = signal.signal(signal.SIGINT, signal.SIG_IGN) if main else None
        try:
            process.start()
        finally:
            if main:
                signal.signal(signal.SIGINT, old)
            child.close()
        worker = _Worker(process, conn)
        self._procs.append(worker)
        return worker

    def free_slots(self) -> int:
        return self.workers - sum(w.task is not None for w in self._procs)

    def submit(self, pack: Pack, ctx: WorkerContext) -> None:
        if self.free_slots() <= 0:
            raise RuntimeError("all workers are busy; call wait() first")
        self._next_key += 1
        while True:
            idle = [w for w in self._procs if w.task is None]
            worker = idle[0] if idle else self._spawn()
            try:
                worker.conn.send((self._next_key, pack, ctx))
            except OSError:  # an idle worker died: forget it, use another
                self._forget(worker)
                continue
            worker.task = (self._next_key, pack)
            return

    def _forget(self, worker: _Worker) -> None:
        self._procs.remove(worker)
        worker.conn.close()
        worker.process.join(TERMINATE_GRACE_S)

    def _receive(self, worker: _Worker) -> list[tuple[Pack, list[JobResult] | Lost]]:
        """Handle what ``worker`` sent; a dead worker is forgotten and its pack is lost."""
        out: list[tuple[Pack, list[JobResult] | Lost]] = []
        dead = False
        try:
            while worker.conn.poll():
                kind, key, *rest = worker.conn.recv()
                if worker.task is None or key != worker.task[0]:
                    continue
                pack = worker.task[1]
                if kind == "progress":
                    if self.progress is not None:
                        i, done, total = rest
                        self.progress(pack, pack.jobs[i], done, total)
                    continue
                worker.task = None
                out.append((pack, rest[0] if kind == "done" else failed_results(
                    pack, f"worker process failed: {rest[0]}")))
        except (EOFError, OSError):
            dead = True
        if dead or not worker.process.is_alive():
            task = worker.task
            self._forget(worker)
            if task is not None:
                out.append((task[1], Lost(_exit_reason(worker.process))))
        return out

    def wait(self) -> list[tuple[Pack, list[JobResult] | Lost]]:
        out: list[tuple[Pack, list[JobResult] | Lost]] = []
        while not out:
            busy = [w for w in self._procs if w.task is not None]
            if not busy:
                return out
            mp_connection.wait([w.conn for w in busy] + [w.process.sentinel for w in busy])
            for w in busy:
                out += self._receive(w)
        return out

    def close(self) -> None:
        """End every worker: SIGTERM (a worker has no handler for it, so it exits at once,
        printing nothing), SIGKILL for one still alive after :data:`TERMINATE_GRACE_S`."""
        procs, self._procs = self._procs, []
        for w in procs:
            if w.process.is_alive():
                w.process.terminate()
        deadline = time.monotonic() + TERMINATE_GRACE_S
        for w in procs:
            w.process.join(max(0.0, deadline - time.monotonic()))
            if w.process.is_alive():
                w.process.kill()
                w.process.join()
            w.conn.close()


#: seconds :func:`probe_ray_address` waits for a TCP connection to the cluster
RAY_PROBE_S = 5.0


class RayUnreachable(UserError, ConnectionError):
    """Nothing answers at the Ray address given (``--address``)."""


def probe_ray_address(address: str, timeout: float = RAY_PROBE_S) -> None:
    """Raise :class:`RayUnreachable` when no TCP connection to ``address`` (``host:port`` of a
    cluster's GCS, default port 6379, or ``ray://host:port`` of a Ray Client server, default
    10001) opens within ``timeout`` seconds; ``ray.init`` would instead retry for minutes.
    ``auto`` and ``local`` (found by Ray itself) are not probed."""
    if address in ("auto", "local"):
        return
    client = address.startswith("ray://")
    rest = address.removeprefix("ray://").split("/", 1)[0]
    host, sep, port_text = rest.rpartition(":")
    if not sep:
        host, port_text = rest, ""
    try:
        port = int(port_text) if port_text else (10001 if client else 6379)
        with socket.create_connection((host.strip("[]"), port), timeout=timeout):
            return
    except (OSError, ValueError) as e:
        reason = e.strerror or str(e) if isinstance(e, OSError) else f"bad port: {e}"
        raise RayUnreachable(
            f"--address {address}: nothing answers at {host}:{port_text or port} within "
            f"{timeout:g} s ({reason or type(e).__name__}); start the cluster (`ray start --head`"
            " on its head node), check the address and port, or leave --address out to start "
            "a local Ray instance") from None


def _run_pack_remote(pack: Pack, ctx: WorkerContext) -> list[JobResult]:
    """The body of the Ray task (module-level so Ray can pickle it by reference)."""
    from prunescope.study.worker import run_pack

    return run_pack(pack, ctx)


class RayExecutor:
    """Runs each pack as one Ray task.

    Args:
        address: Ray cluster address (``auto``, ``ray://host:10001``...); ``None`` starts a local
            Ray instance, which :meth:`close` shuts down again. A ``host:port`` address is
            probed first (:func:`probe_ray_address`): nothing listening is one line in seconds.
        gpus_per_pack: GPUs per pack task when the cluster has GPUs (a fraction packs several
            tasks per GPU).
        cpus_per_pack: CPUs per pack task when it has none.
        num_cpus: CPUs of the local instance started when ``address`` is ``None``.

    The number of packs in flight is what the cluster's resources allow (at least one).
    """

    local_data = False  # workers may be on other machines, each with its own cache

    def __init__(self, address: str | None = None, gpus_per_pack: float = 1.0,
                 cpus_per_pack: int = 1, num_cpus: int | None = None) -> None:
        if address is not None:
            probe_ray_address(address)
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
                try:
                    ray.init(address=address, log_to_driver=False)
                except (ConnectionError, ValueError, RuntimeError) as e:  # Ray's own refusals
                    first = (str(e).strip().splitlines() or [type(e).__name__])[0]
                    raise RayUnreachable(f"--address {address}: Ray could not connect "
                                         f"({type(e).__name__}: {first}); check the address, "
                                         "the cluster and its Ray version") from e
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

    def wait(self) -> list[tuple[Pack, list[JobResult] | Lost]]:
        """The next finished pack(s). A task whose worker process or node died (any Ray system
        error: ``WorkerCrashedError``, ``NodeDiedError``, ``ObjectLostError``, Ray's own
        out-of-memory kill...) is :class:`Lost`; an exception raised by the task's code
        (``RayTaskError``) fails its pack's jobs."""
        if not self._running:
            return []
        ready, _ = self.ray.wait(list(self._running), num_returns=1)
        out: list[tuple[Pack, list[JobResult] | Lost]] = []
        errors = self.ray.exceptions
        for ref in ready:
            pack = self._running.pop(ref)
            try:
                out.append((pack, self.ray.get(ref)))
            except errors.RayTaskError as e:
                out.append((pack, failed_results(
                    pack, f"Ray task failed: {type(e).__name__}: {e}\n"
                          f"{traceback.format_exc(limit=-2)}")))
            except errors.RayError as e:
                first = (str(e).strip().splitlines() or [""])[0]
                out.append((pack, Lost(f"Ray lost the task: {type(e).__name__}: {first}")))
        return out

    def close(self) -> None:
        for ref in list(self._running):
            self.ray.cancel(ref, force=True)
        self._running.clear()
        if self._owns and self.ray.is_initialized():
            self.ray.shutdown()
