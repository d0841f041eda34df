"""The driver: plan -> store -> packs -> executor -> store, resumable at any moment.

``run_study`` inserts the plan's jobs into the store (new ones as ``pending``), then repeatedly
submits packs of jobs whose parents are done and records what comes back, one transaction per
finished pack. Jobs left ``running`` by a killed driver are simply run again. A failed job is
recorded with its error; its dependents become ``blocked`` and everything else goes on. A
pack whose worker was lost (:class:`~prunescope.study.executors.Lost`: a killed process, a
dead Ray node) is no result: its jobs go back to pending and run again (up to
:data:`MAX_LOSSES` times per job). ``retry_failed`` turns failed and blocked jobs back to
pending first. A job that finds the disk full is no failure either: it goes back to pending,
no new pack starts, and once the packs in flight are recorded the run stops with ``OSError``
(``ENOSPC``, naming the file) so that a rerun after freeing space resumes. SIGTERM unwinds like
Ctrl-C: the executor stops its workers at once and the
jobs in flight stay ``running``, to be run by the next call.

Only one driver may run a study folder at a time (an ``fcntl`` lock on ``<output>/run.lock``).
"""
from __future__ import annotations

import errno
import fcntl
import heapq
import os
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path

from prunescope.data import fetch, info
from prunescope.errors import DeviceUnavailable, UserError
from prunescope.study.artifacts import Artifacts
from prunescope.study.executors import (Executor, LocalExecutor, Lost, ProcessExecutor,
                                         RayExecutor)
from prunescope.study.packs import Pack, stacks
from prunescope.study.plan import Job, Plan, job_work, make_plan
from prunescope.study.progress import RunDisplay
from prunescope.study.spec import StudySpec
from prunescope.study.store import JobResult, Store
from prunescope.train.options import DeviceProfile

LOCK_FILE = "run.lock"


@dataclass
class RunSummary:
    """What one ``run_study`` call did.

    Attributes:
        total: jobs in the plan; already_done: done before this call; ran: finished now
            (done or failed); failed, blocked: jobs in those states at the end; lost: times a
            job went back to pending because its worker was lost (killed, out of memory, a Ray
            node gone) and ran again; wall_s: seconds.
    """

    total: int
    already_done: int
    ran: int = 0
    failed: int = 0
    blocked: int = 0
    lost: int = 0
    wall_s: float = 0.0
    errors: dict[str, str] = field(default_factory=dict)


class StudyLocked(UserError, RuntimeError):
    """Another driver is running this study folder."""


@contextmanager
def study_lock(folder: str | Path) -> Iterator[None]:
    """Hold an exclusive, non-blocking ``fcntl`` lock on ``<folder>/run.lock``."""
    path = Path(folder) / LOCK_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as e:
            fh.seek(0)
            raise StudyLocked(
                f"another `prunescope run` is using {folder} (lock {path}, held by pid "
                f"{fh.read().strip() or '?'}); wait for it or stop it") from e
        fh.seek(0)
        fh.truncate()
        fh.write(str(os.getpid()))
        fh.flush()
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


@contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """Turn SIGTERM into ``KeyboardInterrupt`` in the main thread, so that a terminated run
    unwinds like Ctrl-C (closing the executor); restored afterwards."""
    try:
        old = signal.signal(signal.SIGTERM, signal.default_int_handler)
    except ValueError:  # not the main thread: leave signals alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


def pack_size(spec: StudySpec, dataset: str, arch: str, device: str | DeviceProfile) -> int:
    """Jobs per pack for ``arch``: ``[executor] pack_size``, or with ``"auto"`` what
    ``prunescope.train.pack.auto_pack_size`` fits on ``device`` (its resolved profile, or a
    device name: the spec's profile for it) for the training batch size with its pack
    switches."""
    if spec.executor.pack_size != "auto":
        return int(spec.executor.pack_size)
    inf = info(dataset)
    h, _, c = inf.shape_hwc
    from prunescope.train.pack import auto_pack_size  # torch: only when packs are sized

    profile = device if isinstance(device, DeviceProfile) else spec.executor.profile(device)
    return auto_pack_size(arch, profile, batch_size=spec.recipe(arch, "train").batch_size,
                          num_classes=inf.num_classes, in_channels=c, image_size=h)


def run_study(
    spec: StudySpec,
    executor: str | Executor = "local",
    address: str | None = None,
    retry_failed: bool = False,
    display: RunDisplay | None = None,
    plan: Plan | None = None,
    user_model: bytes | None = None,
) -> RunSummary:
    """Run every job of ``spec`` that is not done yet.

    Args:
        spec: the study (:func:`prunescope.study.load_spec`).
        executor: ``local``, ``ray``, or an object implementing
            :class:`~prunescope.study.executors.Executor` (closed by this call).
        address: Ray address for ``executor="ray"`` (``None``: start a local Ray instance).
        retry_failed: rerun failed jobs (and the jobs they blocked).
        display: progress sink (e.g. :class:`prunescope.study.progress.RichDisplay`);
            ``None`` shows nothing.
        plan: the jobs to run, default ``make_plan(spec)``; an audit passes the plan of its
            one user model (:func:`prunescope.audit.audit`), whose ``source`` job it recorded.
        user_model: that model's ``torch.save`` bytes, made by the audit from the object its
            caller passed; sent to the workers (:attr:`WorkerContext.user_model`).

    Returns:
        :class:`RunSummary`. ``KeyboardInterrupt`` (Ctrl-C, SIGTERM) propagates after the
        executor is closed; every finished job is already in the store.
    """
    t0 = time.perf_counter()
    plan = make_plan(spec) if plan is None else plan
    with study_lock(spec.output), Store(spec.output, artifacts=spec.artifacts) as store, _sigterm_as_interrupt():
        Artifacts(spec.artifacts).clean_temporaries()
        store.add_jobs(plan.jobs)
        status = store.statuses()
        if retry_failed:
            again = [j.id for j in plan.jobs if status[j.id] in ("failed", "blocked")]
            store.set_status(again, "pending")
            status.update(dict.fromkeys(again, "pending"))
        summary = RunSummary(total=len(plan.jobs),
                             already_done=sum(status[j.id] == "done" for j in plan.jobs))
        todo = [j for j in plan.jobs if status[j.id] in ("pending", "running")]
        if todo:
            ex = _make_executor(spec, executor, address, display)
            try:
                _drive(plan, todo, status, store, ex, spec, display, summary, user_model)
            finally:
                ex.close()
                if display:
                    display.stop()
        in_plan = {j.id for j in plan.jobs}
        errors = {i: e for i, e in store.errors().items() if i in in_plan}
        summary.errors = errors
        summary.failed = len(errors)
        summary.blocked = sum(1 for j in plan.jobs if status[j.id] == "blocked")
    summary.wall_s = time.perf_counter() - t0
    return summary


def _make_executor(spec: StudySpec, kind: str | Executor, address: str | None,
                   display: RunDisplay | None) -> Executor:
    if not isinstance(kind, str):
        return kind
    if kind == "local":
        if spec.executor.workers > 1:
            return ProcessExecutor(spec.executor.workers,
                                   progress=display.pack_progress if display else None)
        return LocalExecutor(progress=display.pack_progress if display else None)
    if kind == "ray":
        return RayExecutor(address, spec.executor.gpus_per_pack, spec.executor.cpus_per_pack)
    raise ValueError(f"unknown executor {kind!r}; choose 'local' or 'ray'")


def _children(plan: Plan) -> dict[str, list[str]]:
    """``{job id: ids of the jobs that depend on it}``, in plan order."""
    children: dict[str, list[str]] = {}
    for j in plan.jobs:
        for d in j.deps:
            children.setdefault(d, []).append(j.id)
    return children


def _released(results: list[JobResult], arts: dict[str, dict[str, str]],
              sums: dict[str, dict[str, str]], children: dict[str, list[str]],
              missing: dict[str, int], waiting: set[str]) -> list[str]:
    """Note the files of the done ``results`` and count them off their children's missing
    parents; returns the waiting children that are now ready."""
    ready = []
    for r in results:
        if r.status != "done":
            continue
        arts[r.job_id] = r.artifacts
        sums[r.job_id] = r.checksums
        for c in children.get(r.job_id, ()):
            if c in missing:
                missing[c] -= 1
                if missing[c] == 0 and c in waiting:
                    ready.append(c)
    return ready


def _run_device(spec: StudySpec, ex: Executor) -> DeviceProfile:
    """The device this run's packs use, resolved once (``auto``: the Ray cluster's, or CUDA
    when this machine has it, else the CPU) into the profile every worker and pack gets: the
    ``[executor.pack_options]``, ``deterministic`` and ``threads`` for it (1 thread in the
    local worker processes unless set); ``DeviceUnavailable`` for a CUDA device a local run
    does not have."""
    import torch  # only with jobs to run

    device = spec.device_name()
    if isinstance(ex, RayExecutor) and spec.device == "auto":
        device = ex.device
    try:  # [executor.pack_options] for the device this run resolved to
        profile = spec.executor.profile(device, 1 if isinstance(ex, ProcessExecutor) else 0)
    except ValueError as e:
        raise RuntimeError(f"[executor.pack_options] cannot run on {device}: {e}; remove the "
                           "CUDA-only switches or run on a GPU") from e
    if (getattr(ex, "local_data", False) and profile.is_cuda
            and not torch.cuda.is_available()):
        raise DeviceUnavailable(
            f"{spec.path or 'the study'} asks for device {device!r} but this machine has no "
            "CUDA device; set device = \"auto\" or \"cpu\" in it, or run it on a GPU machine")
    return profile


def _without_data(plan: Plan, waiting: set[str], by_id: dict[str, Job],
                  order: dict[str, int]) -> list[JobResult]:
    """A failed result for each waiting ``train`` job whose dataset is not available here."""
    no_data = _unavailable_datasets(sorted({by_id[i].dataset for i in waiting}))
    return [JobResult(i, "failed", error=f"dataset {by_id[i].dataset} is not available: "
                      f"{no_data[by_id[i].dataset]}")
            for i in sorted(waiting, key=order.__getitem__)
            if by_id[i].kind == "train" and by_id[i].dataset in no_data]


def _drive(plan: Plan, todo: list[Job], status: dict[str, str], store: Store, ex: Executor,
           spec: StudySpec, display: RunDisplay | None, summary: RunSummary,
           user_model: bytes | None = None) -> None:
    """The scheduling loop (see the module docstring).

    Ready jobs wait in one heap per (kind, dataset, arch), ordered by plan position; the next
    pack is taken from the group whose first job comes earliest in the plan, so parents are
    scheduled before unrelated later work. Cost per job: O(log n) plus two store transactions
    per pack (running, finished).
    """
    from prunescope.study.worker import WorkerContext  # torch and dynamo: only with jobs to run

    by_id = plan.by_id()
    order = {j.id: i for i, j in enumerate(plan.jobs)}
    children = _children(plan)
    waiting = {j.id for j in todo}
    blocked = _block_descendants(
        [j.id for j in plan.jobs if status[j.id] in ("failed", "blocked")], children, waiting,
        status)
    if blocked:
        store.set_status(blocked, "blocked", "blocked: a job it depends on failed")
    if getattr(ex, "local_data", False):  # train jobs of datasets this machine cannot load
        failed = _without_data(plan, waiting, by_id, order)
        if failed:
            _record(failed, store, status, children, waiting, summary)
    missing = {j.id: sum(status[d] != "done" for d in j.deps) for j in todo if j.id in waiting}
    ready: dict[tuple[str, str, str], list[tuple[int, str]]] = {}

    def make_ready(jid: str) -> None:
        j = by_id[jid]
        heapq.heappush(ready.setdefault((j.kind, j.dataset, j.arch), []), (order[jid], jid))

    for jid, n in missing.items():
        if n == 0:
            make_ready(jid)
    parents = sorted({d for j in todo for d in j.deps if status[d] == "done"})
    arts, sums = store.artifacts(parents), store.checksums(parents)
    profile = _run_device(spec, ex)
    if display:
        display.start(plan, [by_id[i] for i in waiting],
                      lambda j: float(job_work(j, spec.n_val)[1]))
    sizes: dict[tuple[str, str], int] = {}
    losses: dict[str, int] = {}  # job id -> workers lost while running it, this run
    in_flight = 0
    full: str | None = None  # the file a job could not write for lack of space
    while waiting:
        if full is not None and in_flight == 0:  # every pack in flight is recorded
            raise OSError(errno.ENOSPC, "No space left on device", full)
        while full is None and ex.free_slots() > 0 and any(ready.values()):
            key = min((k for k, h in ready.items() if h), key=lambda k: ready[k][0][0])
            heap = ready[key]
            if key[1:] not in sizes:
                sizes[key[1:]] = pack_size(spec, key[1], key[2], profile)
            size = sizes[key[1:]] if stacks(key[0]) else 1  # structured: packs of one
            jobs = [by_id[heapq.heappop(heap)[1]] for _ in range(min(size, len(heap)))]
            pack = Pack(key[0], key[1], key[2], tuple(jobs))
            store.set_status([j.id for j in jobs], "running")
            in_flight += len(jobs)
            deps = sorted({d for j in jobs for d in j.deps})
            ex.submit(pack, WorkerContext(
                artifacts=spec.artifacts, profile=profile,
                parent_artifacts=tuple((d, tuple(sorted(arts[d].items()))) for d in deps),
                parent_checksums=tuple((u, h, d) for d in deps
                                       for u, h in sorted(sums.get(d, {}).items())),
                user_model=user_model))
            if display:
                display.pack_started(pack)
        if in_flight == 0:
            raise RuntimeError(
                f"{len(waiting)} jobs wait on parents that are neither done nor scheduled; the "
                "store and the plan disagree. Delete the study's store to start over")
        for pack, results in ex.wait():
            in_flight -= len(pack.jobs)
            if isinstance(results, Lost):  # an infrastructure fault: run the jobs again
                lost = results
                again, results = _lost(pack, lost, losses)
                summary.lost += len(again)
                store.set_status([j.id for j in again], "pending")
                for j in again:
                    make_ready(j.id)
                if display:
                    display.pack_lost(pack, lost.reason, again)
                if not results:
                    continue
                pack = replace(pack, jobs=tuple(by_id[r.job_id] for r in results))
            no_space = [r for r in results if r.status == "failed" and "disk_full" in r.info]
            if no_space:  # not the jobs' fault: they wait for the rerun, the run stops
                full = full or no_space[0].info["disk_full"] or spec.artifacts
                store.set_status([r.job_id for r in no_space], "pending")
                results = [r for r in results if r not in no_space]
                pack = replace(pack, jobs=tuple(by_id[r.job_id] for r in results))
            blocked = _record(results, store, status, children, waiting, summary)
            if display and blocked:
                display.jobs_blocked([by_id[i] for i in blocked])
            for c in _released(results, arts, sums, children, missing, waiting):
                make_ready(c)
            if display:
                display.pack_finished(pack, results)


#: times one job's worker may be lost (:class:`~prunescope.study.executors.Lost`) in one run
#: before the job is recorded as failed: a job that itself kills its worker (e.g. it needs more
#: memory than the machine has) must not be retried forever
MAX_LOSSES = 3


def _lost(pack: Pack, lost: Lost, losses: dict[str, int]) -> tuple[list[Job], list[JobResult]]:
    """Count one loss for each job of ``pack``; return the jobs to run again and failed
    results for those lost :data:`MAX_LOSSES` times."""
    again, failed = [], []
    for j in pack.jobs:
        losses[j.id] = losses.get(j.id, 0) + 1
        if losses[j.id] < MAX_LOSSES:
            again.append(j)
        else:
            failed.append(JobResult(j.id, "failed", error=(
                f"WorkerLost: {lost.reason}; the worker running this job was lost "
                f"{MAX_LOSSES} times in a row (does the job need more memory than the machine "
                "has?)")))
    return again, failed


def _unavailable_datasets(names: list[str]) -> dict[str, str]:
    """``{dataset: error}`` for datasets that are neither cached nor fetchable here (each is
    fetched into the local cache once, by the driver, before any worker needs it)."""
    out = {}
    for name in names:
        try:
            fetch(name)
        except Exception as e:  # noqa: BLE001 -- recorded as the training jobs' error
            out[name] = f"{type(e).__name__}: {e}"
    return out


def _record(results: list[JobResult], store: Store, status: dict[str, str],
            children: dict[str, list[str]], waiting: set[str], summary: RunSummary
            ) -> list[str]:
    """Write one finished pack and block the dependents of its failed jobs (returned)."""
    store.record(results)
    failed = []
    for r in results:
        status[r.job_id] = r.status
        waiting.discard(r.job_id)
        summary.ran += 1
        if r.status == "failed":
            failed.append(r.job_id)
    blocked = _block_descendants(failed, children, waiting, status)
    if blocked:
        store.set_status(blocked, "blocked", "blocked: a job it depends on failed")
    return blocked


def _block_descendants(roots: list[str], children: dict[str, list[str]], waiting: set[str],
                       status: dict[str, str]) -> list[str]:
    """Mark every waiting descendant of ``roots`` blocked (in ``status``); return their ids."""
    out = []
    stack = list(roots)
    while stack:
        for c in children.get(stack.pop(), ()):
            if c in waiting:
                waiting.discard(c)
                status[c] = "blocked"
                out.append(c)
                stack.append(c)
    return out
