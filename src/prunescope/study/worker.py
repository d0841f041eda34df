"""What a worker does with a pack: train, compute gradients, prune + fine-tune, evaluate.

Workers read the data themselves (from the local dataset cache), read parent artifacts, write
their own artifacts, and return :class:`~prunescope.study.store.JobResult` objects; they never
touch the SQLite store. Each job of a pack runs in its own ``try``: an exception (NaN loss,
out of memory, a missing file...) becomes a ``failed`` result carrying the error, and the other
jobs of the pack go on.

Determinism: every job uses explicit seeds only. By default on the CPU (``[executor]
deterministic``) it also runs with ``torch.use_deterministic_algorithms(True)``, so a job computes
the same weights and counts whenever and wherever it runs (with the same number of torch
threads: pin ``[executor] threads`` when comparing executors). On CUDA the default is speed:
no deterministic-kernel restriction and cuDNN autotuning; with ``deterministic = true`` ops that
have no deterministic kernel warn instead of failing.
"""
from __future__ import annotations

import errno
import functools
import gc
import io
import json
import os
import shutil
import socket
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch._dynamo.exc import TorchDynamoException
from safetensors.torch import load_file, save_file

from prunescope.catalog import methods as registry
from prunescope.catalog.protocol import TrainOptions
from prunescope.data import info, load, train_val_indices
from prunescope.data.corruptions import apply_distribution
from prunescope.data.device import DeviceImages
from prunescope.metrics import confusion_from_predictions
from prunescope.prune import data_gradients
from prunescope.prune.finetune import finetune_seed, objective_meta, prune_one_shot, pruned_meta
from prunescope.prune.iterative import level_seed, rewind_point, start_level
from prunescope.prune.narrow import load_structured_checkpoint
from prunescope.prune.structured import structured_meta, structured_prune_model
from prunescope.study import mitigation
from prunescope.study.artifacts import ArtifactDamaged, Artifacts
from prunescope.study.packs import Pack, stacks
from prunescope.study.plan import RESULTS_VERSION, Job, job_id
from prunescope.study.store import JobResult
from prunescope.train import (TrainingDiverged, derive_seed, fit, load_checkpoint, predict,
                              save_checkpoint)
from prunescope.train.checkpoint import sidecar_path
from prunescope.train.run import dataset_model, dense_meta, train_val_images
from prunescope.train.options import DeviceProfile, device_profile
from prunescope.train.pack import fit_pack

#: ``progress(job, done, total)``: a job of the pack advanced (optimiser steps or phases)
ProgressFn = Callable[[Job, int, int], None]


@dataclass(frozen=True)
class WorkerContext:
    """Everything a worker needs besides the pack (picklable, sent to Ray workers).

    Attributes:
        artifacts: artifact root (local folder or fsspec URL).
        profile: the device, resolved once by the driver
            (:class:`~prunescope.train.options.DeviceProfile`: its name, whether it is CUDA,
            deterministic algorithms, torch threads and the switches of stacked packs;
            ``ctx.device`` is its name). Default: the CPU's.
        data_dir: dataset cache folder (``None``: ``PRUNESCOPE_DATA`` or ``~/.cache/prunescope``).
        parent_artifacts: ``{job id: {name: url}}`` of the done parents of the pack's jobs.
        parent_checksums: ``(url, sha256 hex, writer job id)`` of every file of those parents
            that has a recorded checksum (checked when read: a damaged file is named).
        user_model: an audit's user model (:func:`prunescope.audit.audit`): the
            ``torch.save`` bytes of the ``nn.Module`` its caller passed, pickled by the driver
            from that object and sent with the pack (never read from a file); every checkpoint
            of the audit is loaded into a copy of it. ``None``: models are built from their
            sidecar's architecture.
    """

    artifacts: str
    profile: DeviceProfile = field(default_factory=lambda: device_profile("cpu"))
    data_dir: str | None = None
    parent_artifacts: tuple[tuple[str, tuple[tuple[str, str], ...]], ...] = ()
    parent_checksums: tuple[tuple[str, str, str], ...] = ()
    user_model: bytes | None = None

    @property
    def device(self) -> str:
        """The torch device name of the profile (``cpu``, ``cuda``, ``cuda:1``)."""
        return self.profile.name

    def open_artifacts(self) -> Artifacts:
        """The artifact root, checking the parents' files against their checksums."""
        return Artifacts(self.artifacts, {u: (h, j) for u, h, j in self.parent_checksums})

    def parent(self, job_id: str) -> dict[str, str]:
        """Artifacts of parent ``job_id``."""
        for jid, arts in self.parent_artifacts:
            if jid == job_id:
                return dict(arts)
        raise KeyError(f"the driver sent no artifacts for parent job {job_id}")


def run_pack(pack: Pack, ctx: WorkerContext, progress: ProgressFn | None = None
             ) -> list[JobResult]:
    """Run every job of ``pack``; one :class:`JobResult` per job, in pack order.

    ``train``, ``prune_finetune`` and ``lth_level`` packs of G > 1 jobs are trained together as
    one stacked network (:func:`prunescope.train.pack.fit_pack` with ``ctx.profile``; each
    model keeps its own data order and masks, results equal solo training up to floating-point
    rounding). If the pack fails as a whole: out of device memory, each half is retried as a pack
    of its own (down to single jobs); some models diverged, those jobs fail and the others run
    as one pack; torch.compile failed, the pack is retried uncompiled (and so are this
    process's later packs); anything else, the jobs run one by one, so that only a culprit
    fails. Other packs run their jobs one after another.
    """
    arts = ctx.open_artifacts()
    with job_settings(ctx.profile):
        if len(pack.jobs) > 1 and pack.kind in _FITTERS and stacks(pack.kind):
            done = {r.job_id: r for part in mitigation.parts(pack)  # one objective per pack
                    for r in (_run_fit_pack(part, ctx, arts, progress) if len(part.jobs) > 1
                              else [_run_one(part.jobs[0], ctx, arts, progress)])}
            results = [done[j.id] for j in pack.jobs]
        else:
            results = [_run_one(job, ctx, arts, progress) for job in pack.jobs]
    for r in results:  # the sha256 of every file each job wrote, recorded with it
        if r.status == "done":
            r.checksums = arts.written_by(r.job_id)
    return results


def _run_one(job: Job, ctx: WorkerContext, arts: Artifacts, progress: ProgressFn | None
             ) -> JobResult:
    started = time.time()
    t0 = time.perf_counter()
    cpu0 = time.process_time()
    step = (lambda d, t: progress(job, d, t)) if progress is not None else None
    try:
        if job.kind in _FITTERS:
            prepare, finish = _FITTERS[job.kind]
            fj = prepare(job, ctx, arts)
            res = None if fj.recipe is None else fit(  # no recipe: pruned, not fine-tuned
                fj.model, fj.train, fj.val, fj.recipe, fj.seed, masks=fj.masks,
                progress=(lambda s_, t_, _i: step(s_, t_)) if step else None,
                start_step=fj.start_step,
                objective=mitigation.step_loss([job.args], [fj.reference], stacked=False))
            result = finish(fj, res, arts)
        else:
            result = _RUNNERS[job.kind](job, ctx, arts, step)
    except Exception as e:  # noqa: BLE001 -- every failure is recorded, the study goes on
        result = _failure(job, e)
    return _stamp(result, started, t0, cpu0)


def _failure(job: Job, e: BaseException) -> JobResult:
    """The failed result of ``job``; a full disk is marked ``info["disk_full"]`` (the file
    being written, or ``""``), which stops the run instead of failing every later job."""
    tb = traceback.format_exc(limit=-4)
    info = {"disk_full": getattr(e, "filename", None) or ""} if disk_full(e) else {}
    return JobResult(job.id, "failed", error=f"{type(e).__name__}: {e}\n{tb}", info=info)


def disk_full(error: BaseException) -> bool:
    """Whether ``error`` means the disk is full (``ENOSPC``, also as raised by safetensors)."""
    return (isinstance(error, OSError) and error.errno == errno.ENOSPC
            or "No space left on device" in str(error))


def _stamp(result: JobResult, started: float, t0: float, cpu0: float, share: int = 1
           ) -> JobResult:
    """Add timings (``share``: jobs that shared this wall/CPU time) and the worker's name."""
    result.started, result.finished = started, time.time()
    result.wall_s = (time.perf_counter() - t0) / share
    result.info["cpu_s"] = (time.process_time() - cpu0) / share
    result.info["worker"] = f"{socket.gethostname()}:{os.getpid()}"
    if share > 1:
        result.info["pack_size"] = share
    return result


def _run_fit_pack(pack: Pack, ctx: WorkerContext, arts: Artifacts,
                  progress: ProgressFn | None) -> list[JobResult]:
    """Train the jobs of a ``train``/``prune_finetune``/``lth_level`` pack as one stacked
    network; if that fails as a whole, retry by cause (see :func:`run_pack`)."""

    started, t0, cpu0 = time.time(), time.perf_counter(), time.process_time()
    prepare, finish = _FITTERS[pack.kind]
    prepared: dict[str, _FitJob] = {}
    results: dict[str, JobResult] = {}
    for job in pack.jobs:
        try:
            prepared[job.id] = prepare(job, ctx, arts)
        except Exception as e:  # noqa: BLE001
            results[job.id] = _stamp(_failure(job, e), started, t0, cpu0)
    fjs = list(prepared.values())
    if len({(fj.recipe, fj.start_step) for fj in fjs}) > 1:
        raise ValueError("a pack's jobs must share one recipe and start step; the driver packs "
                         "jobs of one (kind, dataset, arch) of one study")
    fits, retry, note = None, "", ""
    profile = _pack_profile(ctx)
    if fjs:
        first = fjs[0].job
        try:
            fits = fit_pack([fj.model for fj in fjs], fjs[0].train, fjs[0].val, fjs[0].recipe,
                            [fj.seed for fj in fjs],
                            masks=[fj.masks for fj in fjs]
                            if pack.kind in ("prune_finetune", "lth_level") else None,
                            progress=(lambda s_, t_, _i: progress(first, s_, t_))
                            if progress else None,
                            profile=profile, start_step=fjs[0].start_step,
                            objective=mitigation.step_loss([fj.job.args for fj in fjs],
                                                           [fj.reference for fj in fjs],
                                                           stacked=True))
        except TrainingDiverged as e:  # fit_pack names the models whose loss diverged
            retry, note = "without" if e.models else "single", f"{type(e).__name__}: {e}"
            for i in e.models:
                results[fjs[i].job.id] = _stamp(_failure(fjs[i].job, e), started, t0, cpu0)
        except Exception as e:  # noqa: BLE001 -- retried below, by cause
            retry = ("halves" if out_of_memory(e)  # the pack size is an estimate
                     else "eager" if profile.pack_options.compile
                     and isinstance(e, TorchDynamoException)
                     else "single")
            note = f"{type(e).__name__}: {e}"
    if fits is not None:
        for fj, res in zip(fjs, fits):
            try:
                r = finish(fj, res, arts)
            except Exception as e:  # noqa: BLE001
                r = _failure(fj.job, e)
            results[fj.job.id] = _stamp(r, started, t0, cpu0, share=len(fjs))
    elif retry:
        # Out of memory: each half becomes a pack of its own (down to single jobs), so a pack
        # too large still trains packed. Diverged models: they failed above, the rest run as one
        # pack. torch.compile failed (e.g. no working compiler toolchain): this process trains
        # its packs uncompiled from now on, this one first. Anything else: the jobs run one by
        # one, so that only a culprit fails. This runs outside the ``except`` blocks, whose
        # tracebacks would keep the failed attempt's tensors alive; every rerun job's info keeps
        # the pack's error as ``pack_error``.
        del prepared, fjs
        if retry in ("halves", "eager"):
            release_device_memory(ctx.profile)
        if retry == "eager":
            _COMPILE_FAILED.add(ctx.device)
        todo = [j for j in pack.jobs if j.id not in results]
        half = (len(todo) + 1) // 2
        parts = ([todo[:half], todo[half:]] if retry == "halves" else
                 [todo] if retry in ("without", "eager") else [[j] for j in todo])
        for part in (p for p in parts if p):
            outs = ([_run_one(part[0], ctx, arts, progress)] if len(part) == 1
                    else _run_fit_pack(replace(pack, jobs=tuple(part)), ctx, arts, progress))
            for j, r in zip(part, outs):
                r.info.setdefault("pack_error", note)
                results[j.id] = r
    return [results[j.id] for j in pack.jobs]


#: devices on which torch.compile failed in this process: their packs train uncompiled since
_COMPILE_FAILED: set[str] = set()


def _pack_profile(ctx: WorkerContext) -> DeviceProfile:
    """``ctx.profile``, without compiling where it failed here."""
    if ctx.device in _COMPILE_FAILED:
        return replace(ctx.profile, pack_options=replace(ctx.profile.pack_options, compile=False,
                                                         cuda_graphs=False))
    return ctx.profile


def out_of_memory(error: BaseException) -> bool:
    """Whether ``error`` means the device ran out of memory: ``torch.cuda.OutOfMemoryError``, or
    an error whose message says so (running out while a CUDA graph is captured surfaces as an
    invalidated capture, pytorch issue 159594)."""
    text = str(error).lower()
    return (isinstance(error, torch.cuda.OutOfMemoryError) or "out of memory" in text
            or "capture" in text and "invalidated" in text)


def release_device_memory(profile: DeviceProfile) -> None:
    """Free what a failed attempt left on a CUDA device (a no-op elsewhere): compiled code and
    its CUDA-graph memory pools (``torch._dynamo.reset``), unreferenced tensors, the
    allocator's cache. Call it outside the ``except`` block that caught the failure."""
    if profile.is_cuda:
        torch._dynamo.reset()
        gc.collect()
        torch.cuda.empty_cache()




@contextmanager
def job_settings(profile: DeviceProfile) -> Iterator[None]:
    """Inside the block: ``profile.threads`` intra-op threads, and deterministic torch
    algorithms when ``profile.deterministic``. On CUDA, deterministic mode only warns about ops
    without a deterministic kernel (``warn_only``) and gives cuBLAS the workspace setting its
    determinism needs; without it cuDNN autotunes (``cudnn.benchmark``). The previous settings
    are restored afterwards."""
    was_det = torch.are_deterministic_algorithms_enabled()
    was_warn = torch.is_deterministic_algorithms_warn_only_enabled()
    was_bench = torch.backends.cudnn.benchmark
    was_threads = torch.get_num_threads()
    on, cuda = profile.deterministic, profile.is_cuda
    if on and cuda:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(on, warn_only=cuda)
    if not on and cuda:
        torch.backends.cudnn.benchmark = True
    if profile.threads > 0:
        torch.set_num_threads(profile.threads)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(was_det, warn_only=was_warn)
        torch.backends.cudnn.benchmark = was_bench
        torch.set_num_threads(was_threads)


# ---- data -------------------------------------------------------------------------------------
@functools.lru_cache(maxsize=4)
def _split(dataset: str, split: str, data_dir: str | None) -> tuple[np.ndarray, np.ndarray]:
    """``(x uint8 NHWC, y int64)`` of a dataset split, cached per worker process."""

    s = load(dataset, split, data_dir)
    return s.x, s.y


@functools.lru_cache(maxsize=2)
def _user_data(root: str, url: str) -> dict[str, np.ndarray]:
    """The arrays of an audited model's own data file ``url`` under artifact root ``root``
    (:func:`prunescope.audit.audit`), checked against the sha256 written beside it:
    ``x_train, y_train, x_val, y_val, x_test, y_test`` (uint8 NHWC images, int64 labels)."""
    try:
        with Artifacts(root).reading_checked(url) as path, np.load(path, allow_pickle=False) as f:
            return {k: f[k] for k in f.files}
    except ArtifactDamaged as e:
        raise ArtifactDamaged(f"{e}; run the same audit again: it writes its data file anew"
                              ) from e


def _normalisation(meta: dict[str, Any]) -> tuple[Any, Any]:
    """``(mean, std)`` per channel on the 0..1 scale: the sidecar's own (audited user models),
    else the dataset's."""
    if "mean" in meta:
        return meta["mean"], meta["std"]
    inf = info(meta["dataset"])
    return inf.mean, inf.std


def _train_val_of(meta: dict[str, Any], ctx: WorkerContext):
    """Training and validation ``DeviceImages`` of a model: the data file its sidecar names
    (``data``, relative to the artifact root: an audited user model), else the dataset's train
    split and hold-out (:func:`_train_val`)."""
    if "data" not in meta:
        return _train_val(meta, ctx.data_dir, ctx.device)
    d = _user_data(ctx.artifacts, Artifacts(ctx.artifacts).url(meta["data"]))
    mean, std = _normalisation(meta)
    return (DeviceImages(d["x_train"], d["y_train"], mean, std, ctx.device),
            DeviceImages(d["x_val"], d["y_val"], mean, std, ctx.device))


def _train_val(split: dict[str, Any], data_dir: str | None, device: str):
    """:func:`~prunescope.train.run.train_val_images` of a model's training split, from the
    worker's cached arrays; ``split`` is a train job's params or a checkpoint's meta
    (``dataset``, ``n_val``, ``split_seed``, ``imbalance`` for a long-tailed split, and the
    :class:`TrainOptions` keys)."""
    dataset = split["dataset"]
    return train_val_images(dataset, split["n_val"], split["split_seed"], split.get("imbalance"),
                            TrainOptions.of(split), lambda part: _split(dataset, part, data_dir),
                            device)


def _test_arrays(arts: Artifacts, dataset: str, subset: int | None, split_seed: int,
                 distribution: str, corruption_seed: int, data_dir: str | None,
                 quantize: str = "truncate", data: str | None = None
                 ) -> tuple[torch.Tensor, np.ndarray]:
    """``(x uint8 NHWC tensor, y int64)`` of the test split (or its seeded stratified
    ``subset``), shifted to ``distribution`` (pixel levels by ``quantize``, see
    :func:`~prunescope.data.corruptions.corrupt`).

    A shifted test set is computed once per artifact root, by the first evaluation that needs
    it, and saved as ``testsets/<key>.npy`` (``x``, uint8 ``(N, H, W, C)``; ``key`` =
    :func:`test_set_key`) with its sha256 beside it, which every later evaluation of any model,
    in any worker process, reads after checking that digest (a damaged or unchecked entry is
    computed and written again): the models of a study are evaluated on the same images, and the jobs of one model
    cycle through all distributions, so an in-process cache of a few entries never hits with
    SPEC 7's 41 distributions. The nominal set is the (cached) split itself."""

    if data is not None:  # an audited user model's own test images (:func:`_user_data`)
        x, y = _user_data(arts.root, data)["x_test"], _user_data(arts.root, data)["y_test"]
    else:
        x, y = _split(dataset, "test", data_dir)
    if subset is not None and subset < len(y):
        _, idx = train_val_indices(y, subset, seed=split_seed)
        x, y = x[idx], y[idx]
    if distribution == "nominal":
        return torch.from_numpy(x), y
    source = dataset if data is None else f"file:{Path(data).name}"  # named by its content hash
    key = test_set_key(source, subset, split_seed, distribution, corruption_seed, quantize)
    url = arts.url(f"{TEST_SETS}/{key}.npy")
    try:
        with arts.reading_checked(url) as path:
            xs = np.load(path, allow_pickle=False)
        if xs.shape == x.shape and xs.dtype == x.dtype:
            return torch.from_numpy(xs), y
    except (ArtifactDamaged, FileNotFoundError):
        pass  # not cached yet, damaged, or cached by an older prunescope: computed and written
    xs = apply_distribution(torch.from_numpy(x), distribution, corruption_seed, quantize=quantize)
    with arts.writing(TEST_SETS, digests=True) as tmp:
        np.save(tmp / f"{key}.npy", xs.numpy(), allow_pickle=False)
    return xs, y


#: artifact folder of the shifted test sets (:func:`_test_arrays`)
TEST_SETS = "testsets"


def test_set_key(dataset: str, subset: int | None, split_seed: int, distribution: str,
                 corruption_seed: int, quantize: str = "truncate") -> str:
    """sha256 hex naming a shifted test set: of the canonical JSON of what determines its
    images (dataset, test subset and its split seed, distribution, corruption seed, pixel
    quantisation) and :data:`~prunescope.study.plan.RESULTS_VERSION`."""
    return job_id({"testset": dataset, "test_subset": subset,
                   "split_seed": split_seed if subset is not None else None,
                   "distribution": distribution, "corruption_seed": corruption_seed,
                   "quantize": quantize, "version": RESULTS_VERSION})


def _load_parent(ctx: WorkerContext, job_id: str, device: str):
    """``(model, meta, masks)`` of a done train/prune_finetune/lth_level/structured parent
    (structurally pruned checkpoints, recognised by ``structured`` in their sidecar, are rebuilt
    at their smaller widths and have no masks: ``{}``)."""

    url = ctx.parent(job_id)["weights"]
    arts = ctx.open_artifacts()
    side = url + ".json"
    with arts.reading(url, side) as (weights, side_path):
        if "structured" in json.loads(Path(side_path).read_text()):
            if sidecar_path(weights) != Path(side_path):  # remote copies: name it as expected
                shutil.copyfile(side_path, sidecar_path(weights))
            model, meta = load_structured_checkpoint(weights, device=device)
            return model, meta, {}
        if ctx.user_model is not None:  # the driver's own pickle of the caller's model object
            return load_checkpoint(weights, device=device, build=lambda meta: torch.load(
                io.BytesIO(ctx.user_model), map_location="cpu", weights_only=False))
        return load_checkpoint(weights, device=device)


def _save_model(arts: Artifacts, job: Job, model: torch.nn.Module, meta: dict[str, Any],
                masks: dict[str, torch.Tensor] | None = None) -> dict[str, str]:
    name = f"{job.id}.safetensors"
    with arts.writing(job.kind) as tmp:
        save_checkpoint(tmp / name, model, meta, masks=masks)
    return {"weights": arts.url(f"{job.kind}/{name}")}


# ---- the job kinds ------------------------------------------------------------------------------
@dataclass(eq=False)
class _FitJob:
    """A ``train`` or ``prune_finetune`` job ready to fit: model on the device, data, recipe,
    the seed of its data order, masks (pruned models), what its checkpoint must record, and
    the optimiser step its fit starts after (``start_step``)."""

    job: Job
    model: torch.nn.Module
    train: Any
    val: Any
    recipe: Any
    seed: int
    masks: dict[str, torch.Tensor] | None
    meta: dict[str, Any]
    achieved_ratio: float = 1.0
    densities: dict[str, float] | None = None
    details: dict[str, Any] = field(default_factory=dict)
    start_step: int = 0
    #: the dense parent as the job's fine-tuning objective reads it (``None``: ``ce``)
    reference: Any = None


def _prepare_train(job: Job, ctx: WorkerContext, arts: Artifacts) -> _FitJob:
    """Build the seeded model of a ``train`` job and its training/validation sets."""
    p = job.args
    train, val = _train_val(vars(p), ctx.data_dir, ctx.device)
    model = dataset_model(p.dataset, p.arch, p.seed)
    meta = dense_meta(p.dataset, p.arch, p.seed, p.recipe, p.n_val, p.split_seed,
                      p.imbalance, TrainOptions(p.validation, p.normalisation)
                      ) | {"job_id": job.id}
    counts = torch.bincount(train.y, minlength=info(p.dataset).num_classes).tolist()
    return _FitJob(job, model.to(ctx.device), train, val, p.recipe, p.seed, None, meta,
                   details={"train_counts": counts})


def _finish(fj: _FitJob, fit_res: Any, arts: Artifacts) -> JobResult:
    """Save the fitted model (with its masks) and describe the result (``fit_res`` ``None``:
    a model pruned without fine-tuning, ``best_epoch`` 0 and no history)."""
    fitted = ({"best_epoch": 0, "history": []} if fit_res is None else
              {"best_epoch": fit_res.best_epoch, "history": fit_res.history})
    meta = fj.meta | fitted
    arts_out = _save_model(arts, fj.job, fj.model, meta, masks=fj.masks)
    details: dict[str, Any] = dict(fitted)
    if fj.densities is not None:
        details["densities"] = fj.densities
    details |= fj.details
    details |= mitigation.train_recalls(fj.reference, fj.model, fj.train)
    return JobResult(fj.job.id, "done", achieved_ratio=fj.achieved_ratio, artifacts=arts_out,
                     info=details)


def _gradients(job: Job, ctx: WorkerContext, arts: Artifacts, step: Callable | None
               ) -> JobResult:
    p = job.args
    model, meta, _ = _load_parent(ctx, p.parent, ctx.device)
    train, _ = _train_val_of(meta, ctx)
    kw: dict[str, Any] = {"mode": p.mode}
    if p.mode != "full":
        kw |= {"n_batches": p.n_batches, "batch_size": p.batch_size, "seed": p.seed,
               "augment": p.augment}
    grads = data_gradients(model, train, **kw)
    name = f"{job.id}.safetensors"
    with arts.writing(job.kind) as tmp:
        save_file({k: v.detach().cpu().contiguous() for k, v in grads.items()}, str(tmp / name))
    if step:
        step(1, 1)
    return JobResult(job.id, "done", artifacts={"gradients": arts.url(f"{job.kind}/{name}")})


def _prepare_prune_finetune(job: Job, ctx: WorkerContext, arts: Artifacts) -> _FitJob:
    """Load the dense parent and prune it one-shot (SPEC 3) as ``prunescope prune`` does
    (:func:`~prunescope.prune.finetune.prune_one_shot`); fine-tuning then holds the masks."""
    p = job.args
    model, meta, _ = _load_parent(ctx, p.parent, ctx.device)
    grads = None
    if p.gradients is not None:
        url = ctx.parent(p.gradients)["gradients"]
        with arts.reading(url) as (path,):
            grads = load_file(str(path), device=ctx.device)
    train, val = _train_val_of(meta, ctx)
    ref = mitigation.reference(p, model, train, int(meta["num_classes"]))  # before pruning
    pruned = prune_one_shot(model, meta, p.method, p.ratio, seed=p.seed, recipe=p.recipe,
                            grads=grads, scope=p.scope, options=p.options)
    return _FitJob(job, model, train, val, p.recipe, pruned.finetune_seed, pruned.result.masks,
                   pruned.meta | {"job_id": job.id} | objective_meta(p.objective,
                                                                     p.objective_options),
                   achieved_ratio=pruned.result.achieved_ratio,
                   densities=pruned.result.densities, reference=ref)


def _evaluate(job: Job, ctx: WorkerContext, arts: Artifacts, step: Callable | None
              ) -> JobResult:
    """Evaluate a model on one test distribution: per-class confusion counts for the store,
    and the per-image predicted classes (``uint8``/``int16`` ``(N_test,)`` in test-set order,
    :func:`predictions_dtype`) as artifact ``predictions`` = ``evaluate/<id>.npy``, from which
    :func:`prunescope.study.load_results` computes functional agreement (SPEC 2)."""
    p = job.args
    model, meta, _ = _load_parent(ctx, p.parent, ctx.device)
    x, y = _test_arrays(arts, meta["dataset"], p.test_subset, p.split_seed or 0,
                        p.distribution, p.corruption_seed or 0, ctx.data_dir,
                        p.quantize or "truncate",
                        data=arts.url(meta["data"]) if "data" in meta else None)
    images = DeviceImages(x, y, *_normalisation(meta), ctx.device)
    n_cls = int(meta["num_classes"])
    pred = predict(model, images)
    cm = confusion_from_predictions(y, pred, n_cls)
    name = f"{job.id}{PREDICTIONS_SUFFIX}"
    with arts.writing(job.kind) as tmp:
        np.save(tmp / name, pred.astype(predictions_dtype(n_cls)), allow_pickle=False)
    if step:
        step(1, 1)
    acc = float(np.trace(cm) / max(1, cm.sum()))
    return JobResult(job.id, "done", confusion=cm, distribution=p.distribution,
                     artifacts={"predictions": arts.url(f"{job.kind}/{name}")},
                     info={"accuracy": acc})


#: file name suffix of an evaluate job's predictions artifact (``evaluate/<id>.npy``)
PREDICTIONS_SUFFIX = ".npy"


def predictions_dtype(num_classes: int) -> type:
    """Smallest stored dtype of class predictions: ``uint8`` up to 256 classes, else ``int16``
    (up to 32,768 classes)."""
    if num_classes <= 256:
        return np.uint8
    if num_classes <= 32768:
        return np.int16
    raise ValueError(f"{num_classes} classes do not fit the int16 predictions artifact")


def _rewind(job: Job, ctx: WorkerContext, arts: Artifacts, step: Callable | None) -> JobResult:
    """The dense run's state after ``rewind_steps`` optimiser steps (LTH rewinding point).

    Reruns exactly the ``train`` job's seeded ``fit`` (same model seed, data, recipe) and stops
    it right after that step (``fit(stop_after_step=rewind_steps)``). On the CPU, when the train job
    was not fitted in a stacked pack, the state is bit-identical to the train job's own state at
    that step. Otherwise (a pack, or CUDA, where packs train in bf16 with torch.compile while this
    rerun is fp32 eager) it is the iterate of a sibling run with the same initialisation, data
    order and recipe, differing by rounding that grows with the steps: still an early iterate
    of the same dense training, which is what rewinding needs (SPEC 3).
    ``rewind_steps = 0``: the initialisation.
    Writes ``rewind/<id>.safetensors`` (``{name: tensor}`` of ``model.state_dict()``).
    """
    p = job.args
    k = p.rewind_steps
    model = dataset_model(p.dataset, p.arch, p.seed).to(ctx.device)
    train, val = _train_val(vars(p), ctx.data_dir, ctx.device) if k else (None, None)
    state = rewind_point(model, train, val, p.recipe, p.seed, k,
                         progress=(lambda s_, _t, _i: step(min(s_, k), k)) if step else None)
    name = f"{job.id}.safetensors"
    with arts.writing(job.kind) as tmp:
        save_file({n: t.contiguous() for n, t in state.items()}, str(tmp / name))
    return JobResult(job.id, "done", artifacts={"rewind": arts.url(f"{job.kind}/{name}")},
                     info={"rewind_steps": k})


def _prepare_lth_level(job: Job, ctx: WorkerContext, arts: Artifacts) -> _FitJob:
    """One LTH level: mask from the previous level's trained weights (a subset of its mask),
    rewind to the early state, then retraining holds the mask (``fit(masks=...)``)."""
    p = job.args
    level = p.level
    model, meta, prev_masks = _load_parent(ctx, p.parent, ctx.device)
    with arts.reading(ctx.parent(p.rewind)["rewind"]) as (path,):
        rewind = load_file(str(path), device=ctx.device)
    mres = start_level(model, level, prev_masks or None, rewind,
                       prune_fraction=p.prune_fraction, scope=p.scope,
                       prune_classifier=p.prune_classifier, prune_biases=p.prune_biases)
    train, val = _train_val(meta, ctx.data_dir, ctx.device)
    recipe = p.recipe
    new_meta = pruned_meta(meta, p.method, recipe) | {"job_id": job.id, "level": level,
                                                       "pruning": mres.summary()}
    return _FitJob(job, model, train, val, recipe, level_seed(p.seed, level),
                   mres.masks, new_meta, achieved_ratio=mres.achieved_ratio,
                   densities=mres.densities, details={"level": level},
                   start_step=p.start_step)


def _prepare_structured(job: Job, ctx: WorkerContext, arts: Artifacts) -> _FitJob:
    """Remove channels (a structured method) from the dense parent; the smaller network is
    then fine-tuned without masks and saved with its widths (``structured_meta``)."""
    p = job.args
    model, meta, _ = _load_parent(ctx, p.parent, ctx.device)
    train, val = _train_val(meta, ctx.data_dir, ctx.device)
    chip = {} if p.chip_images is None else {"n_images": p.chip_images}  # feature-map scores
    res = structured_prune_model(model, p.method, p.ratio, images=train,
                                 seed=derive_seed(p.seed, registry.FEATURE_MAP_SEED_SALT), scope=p.scope,
                                 config=p.config, **chip)
    recipe = p.recipe
    new_meta = structured_meta(res, p.method,
                               pruned_meta(meta, p.method, recipe) | {"job_id": job.id})
    summary = res.summary()
    return _FitJob(job, res.model.to(ctx.device), train, val, recipe,
                   finetune_seed(p.seed), None, new_meta,
                   achieved_ratio=res.achieved_ratio,
                   details={"structured": {"widths": summary["widths"],
                                           "config": summary["config"],
                                           "n_before": summary["n_before"],
                                           "n_after": summary["n_after"]}})


#: kinds that fit a model: (prepare, finish); fitted alone by ``fit`` or in a pack by ``fit_pack``
#: (never ``structured``: narrowed networks do not stack, :func:`prunescope.study.packs.stacks`)
_FITTERS = {"train": (_prepare_train, _finish),
            "prune_finetune": (_prepare_prune_finetune, _finish),
            "lth_level": (_prepare_lth_level, _finish),
            "structured": (_prepare_structured, _finish)}
_RUNNERS = {"gradients": _gradients, "rewind": _rewind, "evaluate": _evaluate}
