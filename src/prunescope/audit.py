"""Audit a user's own trained classifier: what pruning does to it beyond test accuracy.

``audit(model, train_data, test_data, ...)`` prunes one trained ``nn.Module`` with each method at
each ratio (one-shot from the same dense weights, SPEC 3), optionally fine-tunes with the mask
held, evaluates the dense and every pruned model on every test distribution (SPEC 7), and returns
per-class recall changes, the model-level slope alpha (SPEC 2), the classes hurt most, prune
potential per distribution, functional agreement with the dense model and warnings about results
that should not be read at face value (:mod:`prunescope.study.checks`); it writes the report page.
``audit_checkpoint`` does the same for a checkpoint written by prunescope.

An audit is a one-model study (docs/audit.md): everything is checked before any work, then the
audit plans content-addressed jobs for its one model (a ``source`` job holding the dense model
and its data, ``gradients``, ``prune_finetune`` and ``evaluate`` jobs) and runs them with the
study executor, worker and SQLite store in ``out_dir``. Each pruned model and each evaluation is
kept the moment it finishes; running the same audit again resumes (and retries failed jobs).

Data may be given as ``(x, y)`` arrays or tensors, a ``prunescope.data.ImageSet``, a
``torch.utils.data.Dataset`` of ``(image, label)`` pairs, a ``DeviceImages``, an ``.npz`` file
(keys ``x`` and ``y``) or a folder of such files (concatenated in name order). Images are kept as
uint8 NHWC (the corruptions of SPEC 7 are defined on 8-bit images): uint8 arrays are taken as they
are (NHWC, NCHW or NHW), float arrays must lie in [0, 1] and are rounded to 1/255 steps. The
model receives ``(x / 255 - mean) / std`` in NCHW float32, with ``mean``/``std`` per channel
(default: computed from the training images; pass zeros and ones for a model that takes raw
[0, 1] inputs).
"""
from __future__ import annotations

import copy
import hashlib
import io
import json
import math
import sys
import time
import warnings
import zipfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TextIO

import numpy as np
import pandas as pd
import torch
from torch import nn

from prunescope import metrics
from prunescope.data.corruptions import Distribution
from prunescope.data.device import DeviceImages
from prunescope.data.splits import train_val_indices
from prunescope.choices import gradient_batches
from prunescope.prune import (GRADIENT_METHODS, UnreachableRatioError, count_parameters, keep_count,
                              prunable)
from prunescope.study.artifacts import ArtifactDamaged, Artifacts
from prunescope.identity import identity
from prunescope.study.plan import (KINDS, PARAMS, RESULTS_VERSION, EvaluateParams, GradientsParams,
                                   Job, Plan, PruneFinetuneParams, SourceParams, job_id)
from prunescope.study.progress import RunDisplay
from prunescope.study.spec import ONE_SHOT_METHODS, SCOPES, GRADIENT_MODES, ExecutorSpec, StudySpec
from prunescope.study.store import JobResult, Store
from prunescope.train import CheckpointError, Recipe, derive_seed, load_checkpoint, save_checkpoint

DataLike = Any

#: optimiser steps of the default (short) fine-tuning of :func:`audit_checkpoint`: one epoch of
#: the architecture's SPEC 4 fine-tuning recipe capped at this many steps (measured to keep the
#: README's audit examples within a few minutes on a 2-core CPU, docs/benchmarks.md)
DEFAULT_FINETUNE_STEPS = 100
#: an audit's job kinds in dependency order: its imported dense model, then the study's kinds
AUDIT_KINDS = ("source", *KINDS)


class AuditError(ValueError):
    """An audit cannot start (bad option, model or data) or some of its jobs failed; the message
    is one line naming what is wrong and how to go on. Finished jobs are kept in ``out_dir``."""


@dataclass(frozen=True)
class AuditResult:
    """Everything an audit measured (all rates are fractions in [0, 1]).

    Attributes:
        counts: tidy per-class count frame (docs/architecture.md) of the dense model
            (``method="dense"``, ``ratio=1.0``) and every pruned model, on every distribution.
        classwise: one row per (method, ratio, distribution, class): ``recall_before``,
            ``recall_after``, ``recall_change`` (after - before), balances ``Bn_before``,
            ``Bn_after``, intensification ``I`` and ``class_name``.
        alphas: per (method, ratio, distribution): ``alpha``, accuracies before/after, the count
            of undefined intensification ratios (``metrics.model_alpha``).
        worst_classes: per (method, ratio, distribution) the ``top_k`` classes with the largest
            recall drop, ``rank`` 1 = hurt most.
        prune_potential: per (method, distribution): the largest ratio whose error is within
            ``delta`` of the dense model's (``metrics.prune_potential``).
        agreement: per (method, ratio, distribution): fraction of test inputs on which the pruned
            and dense models predict the same class.
        runs: per (method, ratio): requested and achieved compression ratio, nominal accuracy of
            the dense model, right after pruning and after fine-tuning, fine-tuning steps,
            seconds the job took (its worker's wall time).
        warnings: what the results cannot be taken as (:func:`prunescope.study.checks.checks`):
            an under-trained dense model, pruned models beating it beyond noise, retraining too
            short to recover; one sentence each, empty when nothing was found.
        out_dir: the audit's folder (store, artifacts, report, CSV tables).
        report: path of ``report.html`` when one was written, else ``None``.
        changed_images: the per-image view: one row per (method, ratio, distribution) and test
            image whose predicted class pruning changed (Hooker et al.'s PIEs of a single model:
            :func:`prunescope.study.results.load_exemplars`), with ``index`` (position in the
            test set), true ``label``, ``dense_label`` and ``pruned_label`` (class ids).
    """

    counts: pd.DataFrame
    classwise: pd.DataFrame
    alphas: pd.DataFrame
    worst_classes: pd.DataFrame
    prune_potential: pd.DataFrame
    agreement: pd.DataFrame
    runs: pd.DataFrame
    warnings: tuple[str, ...] = ()
    out_dir: Path | None = None
    report: Path | None = None
    changed_images: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(
        columns=["method", "ratio", "distribution", "index", "label", "dense_label",
                 "pruned_label"]))


# ---- data -------------------------------------------------------------------------------------
def _to_numpy(a: Any) -> np.ndarray:
    return a.detach().cpu().numpy() if isinstance(a, torch.Tensor) else np.asarray(a)


def _as_uint8_nhwc(x: np.ndarray, what: str) -> np.ndarray:
    """uint8 ``(N, H, W, C)`` from NHWC, NCHW or NHW images (uint8, or float in [0, 1])."""
    if x.ndim == 3:
        x = x[..., None]
    if x.ndim != 4:
        raise AuditError(f"{what}: images must have 3 or 4 dimensions (N, H, W[, C]), got shape "
                         f"{x.shape}")
    if len(x) == 0:
        raise AuditError(f"{what}: no images")
    if x.shape[1] in (1, 3) and x.shape[3] not in (1, 3):
        x = x.transpose(0, 2, 3, 1)
    if x.dtype == np.uint8:
        return np.ascontiguousarray(x)
    if not np.issubdtype(x.dtype, np.floating):
        raise AuditError(f"{what}: images must be uint8 (0..255) or float in [0, 1], got dtype "
                         f"{x.dtype}; convert with x.astype(np.uint8) (0..255) or x / 255.0")
    bad = ~np.isfinite(x)
    if bad.any():
        n = int(bad.reshape(len(x), -1).any(1).sum())
        raise AuditError(f"{what}: {n} image(s) hold NaN or infinite values (first: image "
                         f"{int(np.argmax(bad.reshape(len(x), -1).any(1)))}); clean or drop them")
    lo, hi = float(x.min()), float(x.max())
    if lo < 0.0 or hi > 1.0:
        raise AuditError(
            f"{what}: float images must lie in [0, 1] (found {lo:.3g}..{hi:.3g}); pass the "
            "unnormalised images and give the model's normalisation as mean=/std=")
    return np.ascontiguousarray(np.rint(x * 255.0).astype(np.uint8))


#: largest label ``audit`` takes (class indices are model outputs; a larger one is damage)
MAX_LABEL = (1 << 24) - 1
_NPY_MAGIC = b"\x93NUMPY"


def _npz_array(z: zipfile.ZipFile, member: str, f: Path) -> np.ndarray:
    """One array of an ``.npz`` archive, its header checked against the bytes it holds before
    anything is allocated (a header may declare 10^12 images): no object arrays, no size
    mismatch."""
    info = z.getinfo(member)
    with z.open(info) as fh:
        version = np.lib.format.read_magic(fh)
        read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                       else np.lib.format.read_array_header_2_0)
        shape, fortran, dtype = read_header(fh)
        if dtype.hasobject:
            raise AuditError(f"{f}: array {member!r} holds Python objects; save numbers only")
        need = math.prod(shape) * dtype.itemsize
        held = info.file_size - fh.tell()
        if need != held:
            raise AuditError(f"{f}: array {member!r} declares shape {shape} of {dtype} "
                             f"({need:,} bytes) but holds {held:,} bytes: the file is truncated "
                             "or damaged; write it again with numpy.savez(path, x=images, "
                             "y=labels)")
        data = bytearray(fh.read(need))
    return np.frombuffer(data, dtype).reshape(shape, order="F" if fortran else "C")


def _load_npz(path: Path) -> tuple[np.ndarray, np.ndarray]:
    files = sorted(path.glob("*.npz")) if path.is_dir() else [path]
    if not files or not files[0].exists():
        raise AuditError(f"no .npz file at {path}; put arrays x (images) and y (labels) in one")
    xs, ys = [], []
    for f in files:
        try:
            with open(f, "rb") as fh:
                if fh.read(len(_NPY_MAGIC)) == _NPY_MAGIC:
                    raise AuditError(f"{f} is a single .npy array, not an .npz archive of x "
                                     "and y; write it with numpy.savez(path, x=images, y=labels)")
            with zipfile.ZipFile(f) as z:
                names = {n.removesuffix(".npy"): n for n in z.namelist()}
                if "x" not in names or "y" not in names:
                    raise AuditError(f"{f} must hold arrays 'x' (images) and 'y' (labels); it "
                                     f"has {sorted(names)}")
                x, y = _npz_array(z, names["x"], f), _npz_array(z, names["y"], f)
        except AuditError:
            raise
        except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile) as e:
            raise AuditError(f"{f} is not a readable .npz file ({type(e).__name__}: {e}); write "
                             "it with numpy.savez(path, x=images, y=labels)") from e
        if x.ndim not in (3, 4) or y.ndim != 1:
            raise AuditError(f"{f}: x must be images (N, H, W[, C]) and y labels (N,); got "
                             f"shapes {x.shape} and {y.shape}")
        xs.append(x)
        ys.append(y)
    if len({x.shape[1:] for x in xs}) > 1:
        raise AuditError(f"the .npz files of {path} hold images of different shapes "
                         f"{sorted({x.shape[1:] for x in xs})}; give one shape")
    return np.concatenate(xs), np.concatenate(ys)


def as_arrays(data: DataLike, what: str = "data") -> tuple[np.ndarray, np.ndarray]:
    """Images uint8 ``(N, H, W, C)`` and labels int64 ``(N,)`` from any supported data form."""
    if isinstance(data, DeviceImages):
        x, y = data.x.cpu().numpy(), data.y.cpu().numpy()
    elif hasattr(data, "x") and hasattr(data, "y"):  # prunescope.data.ImageSet
        x, y = np.asarray(data.x), np.asarray(data.y)
    elif isinstance(data, (str, Path)):
        x, y = _load_npz(Path(data))
    elif isinstance(data, (tuple, list)) and len(data) == 2:
        x, y = _to_numpy(data[0]), _to_numpy(data[1])
    elif isinstance(data, torch.utils.data.Dataset):
        items = [data[i] for i in range(len(data))]  # type: ignore[arg-type]
        x = np.stack([_to_numpy(a) for a, _ in items])
        y = np.array([int(b) for _, b in items])
    else:
        raise AuditError(
            f"{what}: unsupported type {type(data).__name__}; give (x, y) arrays or tensors, an "
            "ImageSet, a torch Dataset of (image, label), DeviceImages, an .npz file or a folder of them"
        )
    x = _as_uint8_nhwc(np.asarray(x), what)
    y = np.asarray(y)
    if y.ndim != 1 or len(y) != len(x) or not np.issubdtype(y.dtype, np.integer):
        raise AuditError(f"{what}: labels must be integers of shape ({len(x)},), got {y.dtype} "
                         f"{y.shape}")
    if len(y) and (int(y.min()) < 0 or int(y.max()) > MAX_LABEL):
        raise AuditError(f"{what}: labels run {int(y.min())}..{int(y.max())}; they must be class "
                         f"indices 0..C-1 (at most {MAX_LABEL})")
    return x, y.astype(np.int64)


def _model_device(model: nn.Module) -> torch.device:
    p = next(model.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


def _recipe(finetune: bool | Recipe | Mapping[str, Any] | None) -> Recipe | None:
    if finetune is None or finetune is False:
        return None
    if isinstance(finetune, Recipe):
        return finetune
    if isinstance(finetune, Mapping):
        try:
            return Recipe.from_dict(dict(finetune))
        except (TypeError, ValueError) as e:
            raise AuditError(f"finetune: not a valid recipe: {e}") from e
    raise AuditError(
        "finetune must be False/None (no fine-tuning), a prunescope.train.Recipe or a dict of its "
        f"fields; got {finetune!r}. For a prunescope checkpoint, audit_checkpoint picks the SPEC 4 recipe.")


# ---- checks before any work -------------------------------------------------------------------
@dataclass(frozen=True)
class _Options:
    methods: tuple[str, ...]
    ratios: tuple[float, ...]
    distributions: tuple[str, ...]


def _check_options(model: nn.Module, methods: Sequence[str], ratios: Sequence[float],
                   distributions: Sequence[str], scope: str, grad_mode: str,
                   grad_batches: int | None, delta: float, top_k: int, workers: int,
                   weight_decay: float | None) -> _Options:
    """Every option of :func:`audit` checked (ratios reachable on ``model``), or ``AuditError``."""
    meths = tuple(dict.fromkeys(str(m).lower() for m in methods))
    if not meths:
        raise AuditError(f"methods: give at least one of {', '.join(ONE_SHOT_METHODS)}")
    for m in meths:
        if m not in ONE_SHOT_METHODS:
            raise AuditError(f"method {m!r} is not one an audit runs; choose from "
                             f"{', '.join(ONE_SHOT_METHODS)} (lth, l1-filter and chip run in "
                             "studies, docs/studies.md)")
    try:
        rs = tuple(sorted({float(r) for r in ratios}))
    except (TypeError, ValueError) as e:
        raise AuditError(f"ratios must be numbers, got {list(ratios)!r}") from e
    if not rs:
        raise AuditError("ratios: give at least one compression ratio > 1")
    bad = [r for r in rs if not (math.isfinite(r) and r > 1)]
    if bad:
        raise AuditError(f"ratio {bad[0]:g} is invalid: a compression ratio (all parameters / "
                         "nonzero ones, SPEC 3) must be a finite number > 1")
    try:
        n_prunable = sum(p.numel() for p in prunable(model).values())
        keep_count(count_parameters(model), n_prunable, rs[-1])
    except UnreachableRatioError as e:
        raise AuditError(f"ratio {rs[-1]:g} cannot be reached on this model: {e}; lower --ratios"
                         ) from e
    except ValueError as e:
        raise AuditError(f"this model cannot be pruned: {e}") from e
    dists = []
    for d in ["nominal", *distributions]:
        try:
            name = Distribution.parse(d).name
        except (TypeError, ValueError) as e:
            raise AuditError(f"distribution {d!r} is invalid: {e}") from e
        if name not in dists:
            dists.append(name)
    if scope not in SCOPES:
        raise AuditError(f"scope {scope!r} is invalid; choose one of {', '.join(SCOPES)}")
    if grad_mode not in GRADIENT_MODES:
        raise AuditError(f"grad_mode {grad_mode!r} is invalid; choose one of "
                         f"{', '.join(GRADIENT_MODES)}")
    if (grad_mode == "batches") != (grad_batches is not None) or (
            grad_batches is not None and grad_batches < 1):
        raise AuditError(f"grad_batches = {grad_batches!r}: give an integer >= 1 with "
                         "grad_mode='batches' and leave it None otherwise")
    if not (0 <= delta < 1):
        raise AuditError(f"delta = {delta!r} must be a fraction in [0, 1) (0.005 = 0.5 points)")
    if top_k < 1:
        raise AuditError(f"top_k = {top_k!r} must be >= 1")
    if workers < 1:
        raise AuditError(f"workers = {workers!r} must be >= 1")
    if "up" in meths and weight_decay is None:
        raise AuditError("method up needs the weight decay the model was trained with (its eps, "
                         "SPEC 3): pass weight_decay= (CLI: --weight-decay), or drop up")
    if weight_decay is not None and not (math.isfinite(weight_decay) and weight_decay >= 0):
        raise AuditError(f"weight_decay = {weight_decay!r} must be a finite number >= 0")
    return _Options(meths, rs, tuple(dists))


def _check_data(model: nn.Module, sets: dict[str, tuple[np.ndarray, np.ndarray]],
                mean: list[float], std: list[float], device: torch.device,
                num_classes: int | None, class_names: Sequence[str] | None,
                where: Mapping[str, str]) -> int:
    """Check that the model takes every split's images and that every label is one of its
    outputs; returns the number of outputs (the classes). ``AuditError`` naming the split by
    ``where[split]`` (the argument it came from)."""
    shapes = {where[k]: x.shape[1:] for k, (x, _) in sets.items()}
    first = next(iter(shapes))
    for k, s in shapes.items():
        if s != shapes[first]:
            raise AuditError(f"{k} images are {tuple(s)} (H, W, C) but {first} images are "
                             f"{tuple(shapes[first])}; every split must have one image shape")
    c = shapes[first][2]
    if len(mean) != c or len(std) != c:
        raise AuditError(f"mean/std have {len(mean)}/{len(std)} values for images with {c} "
                         "channel(s); give one per channel")
    if not all(math.isfinite(v) for v in [*mean, *std]) or min(std) <= 0:
        raise AuditError(f"mean {mean} / std {std} must be finite with std > 0")
    x, _ = sets["train"]
    probe = DeviceImages(x[:2], np.zeros(min(2, len(x)), np.int64), mean, std, device)
    xb, _ = next(probe.batches(2))
    was = model.training
    model.eval()
    try:
        with torch.no_grad():
            out = model(xb)
    except Exception as e:  # noqa: BLE001 -- any failure means these images do not fit
        raise AuditError(f"the model cannot take the images: a batch of shape "
                         f"{tuple(xb.shape)} (B, C, H, W) from {first} raised "
                         f"{type(e).__name__}: {e}") from e
    finally:
        model.train(was)
    if not isinstance(out, torch.Tensor) or out.ndim != 2:
        raise AuditError(f"the model must return logits (B, classes); on a {tuple(xb.shape)} "
                         f"batch it returned {getattr(out, 'shape', type(out).__name__)}")
    k = int(out.shape[1])
    if num_classes is not None and int(num_classes) != k:
        raise AuditError(f"num_classes = {num_classes} but the model has {k} outputs")
    for split, (_, y) in sets.items():
        name = where[split]
        if len(y) and (y.min() < 0 or y.max() >= k):
            raise AuditError(f"{name} labels run {int(y.min())}..{int(y.max())} but the model has "
                             f"{k} outputs (classes 0..{k - 1}); relabel the data or give the "
                             "model's matching data")
    if class_names is not None and len(class_names) != k:
        raise AuditError(f"class_names has {len(class_names)} names for the model's {k} classes")
    return k


# ---- the plan ---------------------------------------------------------------------------------
def _sha(*parts: bytes) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(hashlib.sha256(p).digest())
    return h.hexdigest()


def _data_sha(sets: dict[str, tuple[np.ndarray, np.ndarray]]) -> str:
    return _sha(*(a.tobytes() + repr(a.shape).encode() for x, y in sets.values() for a in (x, y)))


@dataclass
class _AuditPlan:
    """The audit's jobs: ``plan`` (everything to run), ``results`` (the plan results are read
    from: without the pruned-only models), ``pruned_eval``: ``(method, ratio) -> id`` of the
    nominal evaluation right after pruning (fine-tuned audits only)."""

    plan: Plan
    results: Plan
    source: Job
    pruned_eval: dict[tuple[str, float], str] = field(default_factory=dict)


def _make_plan(spec: StudySpec, source_params: SourceParams, opts: _Options,
               recipe: Recipe | None, scope: str, grad_mode: str, grad_batches: int | None,
               seed: int, labels: dict[str, Any]) -> _AuditPlan:
    """The jobs of one audit: the typed parameters the study worker reads, hashed as
    :func:`prunescope.study.plan.make_plan` hashes them."""
    jobs: dict[str, Job] = {}
    kind_of = {cls: kind for kind, cls in PARAMS.items()}

    def add(args: Any, deps: tuple[str, ...], **lab: Any) -> Job:
        kind = kind_of[type(args)]
        full = {"kind": kind, "version": RESULTS_VERSION, **identity(args)}
        jid = job_id(full)
        jobs.setdefault(jid, Job(jid, kind, full, deps, **(labels | lab)))
        return jobs[jid]

    source = add(source_params, ())
    grads = None
    if any(m in GRADIENT_METHODS for m in opts.methods):
        sampled = grad_mode != "full"
        grads = add(GradientsParams(source.id, grad_mode,
                                    n_batches=grad_batches if sampled else None,
                                    batch_size=128 if sampled else None,
                                    seed=derive_seed(seed, "gradients") if sampled else None),
                    (source.id,))
    models = [source]
    pruned_only: dict[tuple[str, float], Job] = {}
    for m in opts.methods:
        for r in opts.ratios:
            deps: tuple[str, ...] = (source.id,)
            g = None
            if m in GRADIENT_METHODS:
                assert grads is not None
                g, deps = grads.id, (source.id, grads.id)
            args = PruneFinetuneParams(source.id, m, r, scope, recipe, seed, gradients=g)
            models.append(add(args, deps, method=m, ratio=r))
            if recipe is not None:
                pruned_only[(m, r)] = add(replace(args, recipe=None), deps, method=m, ratio=r)
    for job in models:
        for d in opts.distributions:
            shifted = d != "nominal"
            add(EvaluateParams(job.id, d, corruption_seed=seed if shifted else None,
                               quantize="truncate" if shifted else None),
                (job.id,), method=job.method, ratio=job.ratio, distribution=d)
    pruned_eval = {key: add(EvaluateParams(j.id, "nominal"), (j.id,), method=j.method,
                            ratio=j.ratio, distribution="nominal").id
                   for key, j in pruned_only.items()}
    order = lambda js: tuple(sorted(js, key=lambda j: AUDIT_KINDS.index(j.kind)))  # noqa: E731
    skip = {j.id for j in pruned_only.values()} | set(pruned_eval.values())
    return _AuditPlan(Plan(spec, order(jobs.values())),
                      Plan(spec, order(j for j in jobs.values() if j.id not in skip)),
                      source, pruned_eval)


def _write_data(arts: Artifacts, sets: dict[str, tuple[np.ndarray, np.ndarray]],
                data_sha: str) -> str:
    """Make sure ``<artifacts>/source/<data_sha>.npz`` holds the audit's data with its sha256
    beside it (written anew when missing, damaged or without a digest); returns its name
    relative to the artifact root."""
    data = f"source/{data_sha}.npz"
    try:
        with arts.reading_checked(arts.url(data)):
            return data
    except (ArtifactDamaged, FileNotFoundError):
        pass
    with arts.writing("source", digests=True) as tmp:
        np.savez(tmp / Path(data).name, **{f"{a}_{split}": arr for split, (x, y) in sets.items()
                                           for a, arr in (("x", x), ("y", y))})
    return data


def _write_source(arts: Artifacts, source: Job, model: nn.Module, meta: dict[str, Any],
                  data: str) -> dict[str, str]:
    """Write the dense model's checkpoint under ``<artifacts>/source/``, its sidecar naming
    the data file ``data`` relative to the artifact root (so a moved audit folder reads its own
    files); returns the job's artifacts. A user model's architecture is not written: the jobs
    get it from the object the caller passed (``run_study(user_model=...)``), so no file of the
    audit folder holds code."""
    meta = dict(meta, data=data, job_id=source.id)
    name = f"{source.id}.safetensors"
    with arts.writing("source") as tmp:
        save_checkpoint(tmp / name, model, meta)
    return {"weights": arts.url(f"source/{name}")}


# ---- the time estimate ------------------------------------------------------------------------
@dataclass(frozen=True)
class Estimate:
    """What the audit will run and how long it should take (from a measured probe).

    Attributes:
        jobs: jobs to run per kind (done ones excluded); done: jobs already done.
        seconds: estimated wall time of the jobs to run.
        step_s: measured seconds of one training step (forward + backward + SGD) of a batch.
        image_s: measured seconds of one image's forward pass in evaluation batches.
    """

    jobs: dict[str, int]
    done: int
    seconds: float
    step_s: float
    image_s: float


def _probe(model: nn.Module, images: DeviceImages, batch_size: int) -> tuple[float, float]:
    """``(seconds per training step of batch_size, seconds per image forward)`` of ``model``,
    measured on a copy (one warm-up step, then three; one forward pass of up to 1000 images)."""
    net = copy.deepcopy(model).train()
    opt = torch.optim.SGD(net.parameters(), lr=0.0)
    xb, yb = next(images.batches(batch_size))
    times = []
    for _ in range(4):
        t0 = time.perf_counter()
        loss = nn.functional.cross_entropy(net(xb), yb)
        opt.zero_grad()
        loss.backward()
        opt.step()
        times.append(time.perf_counter() - t0)
    net.eval()
    xe, _ = next(images.batches(1000))
    with torch.no_grad():
        net(xe[:8])
        t0 = time.perf_counter()
        net(xe)
        fwd = (time.perf_counter() - t0) / len(xe)
    return float(np.median(times[1:])), fwd


#: seconds a job costs besides its compute (loading parents, saving, the store), measured
JOB_OVERHEAD_S = 0.3


def job_seconds(job: Job, n: Mapping[str, int], step_s: float, image_s: float) -> float:
    """Estimated seconds of one audit job from the probe (``step_s`` per training step of 128
    images, ``image_s`` per image evaluated) and the split sizes ``n`` (``train``, ``val``,
    ``test``): a gradient pass costs its images' share of training steps, a fine-tuning its
    steps and one validation pass per epoch, an evaluation its test images; plus
    :data:`JOB_OVERHEAD_S`."""
    p = job.args
    secs = JOB_OVERHEAD_S
    if job.kind == "gradients":
        steps = gradient_batches(p.mode, p.n_batches)
        imgs = n["train"] if steps is None else min(n["train"], 128 * steps)
        secs += imgs * step_s / 128
    elif job.kind == "prune_finetune" and p.recipe is not None:
        r = p.recipe
        steps = math.ceil(n["train"] / r.batch_size)
        if r.max_steps_per_epoch is not None:
            steps = min(steps, r.max_steps_per_epoch)
        secs += r.epochs * (steps * step_s * r.batch_size / 128 + n["val"] * image_s)
    elif job.kind == "evaluate":
        secs += n["test"] * image_s
    return secs


def _estimate(plan: Plan, status: Mapping[str, str], n: Mapping[str, int], step_s: float,
              image_s: float, workers: int) -> Estimate:
    """:class:`Estimate` of the jobs of ``plan`` not done yet (``workers`` share the work, at
    most two on a 2-core CPU)."""
    todo = [j for j in plan.jobs if status.get(j.id) != "done"]
    secs = sum(job_seconds(j, n, step_s, image_s) for j in todo)
    kinds = {k: sum(j.kind == k for j in todo) for k in AUDIT_KINDS
             if any(j.kind == k for j in todo)}
    return Estimate(kinds, len(plan.jobs) - len(todo), secs / max(1, min(workers, 2)),
                    step_s, image_s)


def _fmt_s(s: float) -> str:
    s = max(0.0, s)
    return f"{s:.0f} s" if s < 90 else f"{s / 60:.0f} min" if s < 5400 else f"{s / 3600:.1f} h"


def describe(est: Estimate, opts: _Options, recipe: Recipe | None, name: str) -> str:
    """The lines printed before an audit starts: what runs, and the estimate."""
    n_models = len(opts.methods) * len(opts.ratios)
    ft = ("not fine-tuned" if recipe is None else
          f"fine-tuned {recipe.epochs} epoch(s)" + (f" of at most {recipe.max_steps_per_epoch} "
                                                    "steps" if recipe.max_steps_per_epoch else ""))
    todo = sum(est.jobs.values())
    lines = [f"audit of {name}: {n_models} pruned models ({', '.join(opts.methods)} at ratios "
             f"{', '.join(f'{r:g}' for r in opts.ratios)}), {ft}; every model evaluated on "
             f"{', '.join(opts.distributions)}",
             f"jobs: {todo} to run ({', '.join(f'{v} {k}' for k, v in est.jobs.items()) or 'none'})"
             + (f", {est.done} already done (resumed)" if est.done else "")]
    if todo:
        lines.append(f"estimated time: about {_fmt_s(est.seconds)} (probe: "
                     f"{1e3 * est.step_s:.1f} ms per training step of 128 images, "
                     f"{1e6 * est.image_s:.1f} us per image evaluated)")
    return "\n".join(lines)


# ---- displays ----------------------------------------------------------------------------------
class _Weighted(RunDisplay):
    """Passes the driver's events on to ``inner`` with the audit's own per-job estimate as the
    work weights (a user dataset has no registry sizes for the study's estimate)."""

    def __init__(self, inner: RunDisplay, work: Callable[[Job], float]) -> None:
        self.inner, self.work = inner, work

    def start(self, plan, todo, work):  # noqa: ANN001 -- RunDisplay's signature
        self.inner.start(plan, todo, self.work)

    def pack_started(self, pack):  # noqa: ANN001
        self.inner.pack_started(pack)

    def pack_progress(self, pack, job, done, total):  # noqa: ANN001
        self.inner.pack_progress(pack, job, done, total)

    def pack_finished(self, pack, results):  # noqa: ANN001
        self.inner.pack_finished(pack, results)

    def jobs_blocked(self, jobs):  # noqa: ANN001
        self.inner.jobs_blocked(jobs)

    def stop(self):
        self.inner.stop()


# ---- the audit ---------------------------------------------------------------------------------
def audit(
    model: nn.Module,
    train_data: DataLike,
    test_data: DataLike,
    *,
    methods: Sequence[str] = ("mp", "gp", "up", "rp"),
    ratios: Sequence[float] = (2, 4, 10, 20, 50),
    finetune: bool | Recipe | Mapping[str, Any] | None = None,
    val_data: DataLike | None = None,
    n_val: int = 5000,
    distributions: Sequence[str] = ("nominal",),
    class_names: Sequence[str] | None = None,
    num_classes: int | None = None,
    weight_decay: float | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    scope: str = "global",
    grad_mode: str = "full",
    grad_batches: int | None = None,
    seed: int = 0,
    delta: float = metrics.DEFAULT_DELTA,
    top_k: int = 3,
    out_dir: str | Path = "runs/audit",
    report: bool = True,
    workers: int = 1,
    name: str = "user-model",
    dataset: str = "user-data",
    meta: Mapping[str, Any] | None = None,
    display: RunDisplay | None = None,
    log: TextIO | str | None = "stderr",
    _module: bool = True,
) -> AuditResult:
    """Prune ``model`` with every method at every ratio and measure what changes (SPEC 2, 3, 7).

    Before any work every option, the data and the ratios are checked (``AuditError``), and
    what will run is printed to ``log`` with an estimate of its duration from a short measured
    probe. The jobs run through the study machinery in ``out_dir`` (see the module docstring):
    each finished model is kept; calling ``audit`` again with the same arguments resumes.

    Args:
        model: a trained classifier mapping float ``(B, C, H, W)`` to logits ``(B, classes)``;
            it is never modified (each pruned model is made from a saved copy). Its classes
            must be importable where the jobs run (with ``workers > 1``: in a fresh process),
            as for any pickled object.
        train_data: training images (gradients of GP and UP; fine-tuning). See the module doc.
        test_data: test images; only measured, never used to choose anything.
        methods: pruning criteria (``mp``, ``gp``, ``up``, ``rp``).
        ratios: compression ratios ``t = all params / nonzero params``, each > 1 and reachable.
        finetune: ``None``/``False`` = no fine-tuning; a ``Recipe`` (or dict of its fields) =
            fine-tune with the mask held, keeping the epoch with the lowest validation loss.
        val_data: validation images for that choice; default: a seeded stratified hold-out of
            ``n_val`` images (at most a tenth) from ``train_data``.
        distributions: test distributions: ``"nominal"``, ``"<corruption>-<1..5>"``,
            ``"noise-<std>"`` (prunescope.data.corruptions); ``"nominal"`` is always included.
        class_names: names of the classes, for the worst-hit table.
        num_classes: the model's number of outputs (checked against it; default: read from it).
            Every label must be one of them.
        weight_decay: UP's eps, the decay the model was trained with (required for UP unless
            ``meta`` records it).
        mean, std: per-channel input normalisation on the 0..1 scale (default: from train_data).
        scope: ``"global"`` or ``"layer"``.
        grad_mode, grad_batches: how GP/UP's data gradient is accumulated (computed once).
        seed: seeds RP, the gradient batches, fine-tuning and the corruptions.
        delta: prune-potential tolerance as a fraction (0.005 = 0.5 percentage points).
        top_k: classes listed per (method, ratio, distribution) in ``worst_classes``.
        out_dir: the audit's folder: ``study.sqlite``, ``artifacts/`` and ``report/``.
        report: write ``<out_dir>/report/report.html`` with figures and tables.
        workers: jobs run at once, each in its own process of one torch thread (1: in this
            process with torch's threads).
        name, dataset: labels used as ``arch`` and ``dataset`` in the frames and the report.
        meta: a prunescope checkpoint sidecar (gives ``weight_decay`` to UP, and its training
            history to the under-training check).
        display: progress sink (:mod:`prunescope.study.progress`); default: one line per
            finished job on ``log``.
        log: where the plan, the estimate and progress lines go: a text stream, ``"stderr"``
            (the default: ``sys.stderr`` at the time of the call) or ``None`` (nowhere).

    Returns:
        :class:`AuditResult`.

    Raises:
        AuditError: a bad option, model or data (before any work), or failed jobs (after the
            run; the finished ones are kept).
    """
    from prunescope.study.checks import checks
    from prunescope.study.progress import LogDisplay
    from prunescope.study.results import load_exemplars, load_results
    from prunescope.study.run import StudyLocked, run_study

    if log == "stderr":
        log = sys.stderr
    meta = dict(meta or {})
    if weight_decay is None and meta.get("weight_decay") is not None:
        weight_decay = float(meta["weight_decay"])
    opts = _check_options(model, methods, ratios, distributions, scope, grad_mode, grad_batches,
                          delta, top_k, workers, weight_decay)
    recipe = _recipe(finetune)
    device = _model_device(model)
    x_train, y_train = as_arrays(train_data, "train_data")
    if val_data is None:
        n_hold = min(n_val, len(y_train) // 10)
        if n_hold < 1:
            raise AuditError(f"train_data has {len(y_train)} images: too few to hold out "
                             "validation images; give val_data")
        tr_idx, va_idx = train_val_indices(y_train, n_val=n_hold, seed=seed)
        sets = {"train": (x_train[tr_idx], y_train[tr_idx]), "val": (x_train[va_idx], y_train[va_idx])}
    else:
        sets = {"train": (x_train, y_train), "val": as_arrays(val_data, "val_data")}
    sets["test"] = as_arrays(test_data, "test_data")
    if mean is None or std is None:
        x = sets["train"][0]
        unit = x.reshape(-1, x.shape[-1]).astype(np.float64) / 255.0
        mean = unit.mean(0) if mean is None else mean
        std = np.maximum(unit.std(0), 1e-6) if std is None else std
    mean, std = [float(v) for v in mean], [float(v) for v in std]
    where = {"train": "train_data", "test": "test_data",
             "val": "train_data" if val_data is None else "val_data"}
    n_cls = _check_data(model, sets, mean, std, device, num_classes, class_names, where)

    out = Path(out_dir).resolve()
    h, w, c = sets["train"][0].shape[1:]
    data_sha = _data_sha(sets)
    buf = io.BytesIO()
    from safetensors.torch import save

    buf.write(save({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}))
    source_params = SourceParams(_sha(buf.getvalue()), repr(model), data_sha, tuple(mean),
                                 tuple(std), weight_decay, n_cls)
    spec = StudySpec(name=f"audit-{name}", seed=seed, models=1, cells=(), output=str(out),
                     artifacts=str(out / "artifacts"), device=str(device),
                     n_val=len(sets["val"][1]),
                     executor=ExecutorSpec(workers=workers, threads=1 if workers > 1 else 0))
    labels = dict(dataset=dataset, arch=name, seed=seed, model=0)
    ap = _make_plan(spec, source_params, opts, recipe, scope, grad_mode, grad_batches, seed, labels)

    data = _write_data(Artifacts(spec.artifacts), sets, data_sha)
    with Store(out) as store:
        store.add_jobs([ap.source])
        status = store.statuses()
        done_arts = store.artifacts([ap.source.id]).get(ap.source.id, {})
        if status[ap.source.id] != "done" or not Path(done_arts.get("weights", "")).is_file():
            side = {k: v for k, v in meta.items() if k not in ("data", "module", "job_id")}
            side |= {"arch": name, "num_classes": n_cls, "in_channels": int(c),
                     "image_size": int(h), "dataset": dataset, "weight_decay": weight_decay,
                     "mean": mean, "std": std, "n_val": len(sets["val"][1]), "seed": seed}
            if not _module:  # a prunescope architecture: rebuilt from its name
                side["arch"] = meta["arch"]
            root = Artifacts(spec.artifacts)
            files = _write_source(root, ap.source, model, side, data)
            store.record([JobResult(ap.source.id, "done", achieved_ratio=1.0, artifacts=files,
                                    checksums=root.written_by(ap.source.id),
                                    info={"history": meta.get("history", []),
                                          "best_epoch": meta.get("best_epoch")})])
            status[ap.source.id] = "done"

    sizes = {k: len(y) for k, (_, y) in sets.items()}
    train_imgs = DeviceImages(*sets["train"], mean, std, device)
    step_s, image_s = _probe(model, train_imgs, 128)
    est = _estimate(ap.plan, status, sizes, step_s, image_s, workers)
    if log is not None:
        print(describe(est, opts, recipe, name), file=log, flush=True)
    if display is None and log is not None:
        display = LogDisplay(log)
    weight = lambda j: job_seconds(j, sizes, step_s, image_s)  # noqa: E731
    pickled = None
    if _module:  # the jobs rebuild the user's model from this object, never from a file
        buf = io.BytesIO()
        torch.save(copy.deepcopy(model).cpu(), buf)
        pickled = buf.getvalue()
    try:
        summary = run_study(spec, retry_failed=True, plan=ap.plan, user_model=pickled,
                            display=None if display is None else _Weighted(display, weight))
    except StudyLocked as e:
        raise AuditError(f"{e} (an audit of the same folder is running)") from e
    if summary.failed or summary.blocked:
        first_id, err = next(iter(summary.errors.items()), ("", ""))
        job = ap.plan.by_id().get(first_id)
        what = f"{job.kind} {job.method} x{job.ratio:g}" if job else "a job"
        raise AuditError(
            f"{summary.failed} audit job(s) failed and {summary.blocked} could not run (first: "
            f"{what}: {(err or '').splitlines()[0] if err else '?'}); the {summary.total - summary.failed - summary.blocked}"
            f" finished ones are kept in {out}: fix the cause and run the same audit again to "
            "resume")

    res = load_results(spec, plan=ap.results)
    counts = res.frame.drop(columns=["achieved_ratio", "seed"])
    runs = _runs(res.jobs, ap)
    found = tuple(checks(res))
    names = tuple(class_names) if class_names is not None else tuple(map(str, range(n_cls)))
    changed = load_exemplars(res, test_sets={dataset: (*sets["test"], names)})
    report_path = None
    if report:
        from prunescope.report import render_report

        report_path = render_report(res.frame, out / "report", study_name=f"audit of {name}",
                                    jobs=res.jobs, agreement=res.agreement, delta=delta,
                                    notices=found, exemplars=changed)
    agreement = res.agreement[["method", "ratio", "distribution", "agreement"]].reset_index(drop=True)
    result = _summarise(counts, runs, agreement, class_names, delta, top_k, found, out,
                        report_path)
    view = changed.images.drop(columns=["dataset", "arch"]).reset_index(drop=True)
    return replace(result, changed_images=view)


def _runs(jobs: pd.DataFrame, ap: _AuditPlan) -> pd.DataFrame:
    """One row per pruned model from the store: ratios, accuracies, fine-tuning steps, seconds."""
    with Store(ap.plan.spec.output, readonly=True) as store:
        rows = store.conn.execute(
            f"SELECT id, info FROM jobs WHERE id IN ({','.join('?' * len(ap.pruned_eval))})",
            list(ap.pruned_eval.values())).fetchall()
    right_after = {jid: float(json.loads(info)["accuracy"]) for jid, info in rows}

    ev = jobs[(jobs.kind == "evaluate") & (jobs.distribution == "nominal")]
    final = {(r.method, r.ratio): float(r.info["accuracy"]) for r in ev.itertuples()}
    dense = final[("dense", 1.0)]
    rows = []
    for r in jobs[jobs.kind == "prune_finetune"].itertuples():
        hist = (r.info or {}).get("history", [])
        key = (r.method, float(r.ratio))
        rows.append({"method": r.method, "ratio": float(r.ratio),
                     "achieved_ratio": float(r.achieved_ratio), "accuracy_dense": dense,
                     "accuracy_pruned": right_after[ap.pruned_eval[key]] if key in ap.pruned_eval
                     else final[key], "accuracy_final": final[key],
                     "finetuned": r.params["recipe"] is not None,
                     "finetune_steps": int(sum(e.get("steps", 0) for e in hist)),
                     "seconds": float(r.wall_s)})
    return pd.DataFrame(rows)


def _summarise(counts: pd.DataFrame, runs: pd.DataFrame, agreement: pd.DataFrame,
               class_names: Sequence[str] | None, delta: float, top_k: int,
               found: tuple[str, ...], out: Path, report: Path | None) -> AuditResult:
    """Turn the count frame into the audit's tables (an unbalanced test set is stated in the
    report; no Python warning is raised for it here)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", metrics.ImbalanceWarning)
        paired = metrics.intensification(counts, "recall")
    alphas = metrics.model_alpha(paired)
    classwise = paired.rename(columns={"value_before": "recall_before", "value_after": "recall_after"})
    classwise["recall_change"] = classwise["recall_after"] - classwise["recall_before"]
    names = list(class_names) if class_names is not None else None
    classwise["class_name"] = classwise["cls"].map(lambda c: names[c] if names else str(c))
    cols = ["method", "ratio", "distribution", "cls", "class_name", "recall_before", "recall_after",
            "recall_change", "Bn_before", "Bn_after", "I"]
    classwise = classwise[cols].sort_values(["method", "ratio", "distribution", "cls"], ignore_index=True)
    worst = (classwise.sort_values(["method", "ratio", "distribution", "recall_change", "cls"])
             .groupby(["method", "ratio", "distribution"], sort=False).head(top_k).copy())
    worst["rank"] = worst.groupby(["method", "ratio", "distribution"]).cumcount() + 1
    potential = metrics.prune_potential(metrics.error_frame(counts), delta=delta)
    return AuditResult(counts, classwise, alphas, worst.reset_index(drop=True), potential,
                       agreement, runs, found, out, report)


def audit_checkpoint(
    path: str | Path,
    *,
    data_dir: str | Path | None = None,
    train_data: DataLike | None = None,
    test_data: DataLike | None = None,
    finetune_epochs: int | None = None,
    device: torch.device | str = "cpu",
    trust_pickle: bool = False,
    **kwargs: Any,
) -> AuditResult:
    """:func:`audit` of a checkpoint written by prunescope (``prunescope train``).

    The dataset, its normalisation, class names, weight decay (UP's eps) and the validation split
    come from the checkpoint's sidecar. Fine-tuning uses the SPEC 4 fine-tuning recipe of its
    architecture: by default (``finetune_epochs=None``) one epoch of it capped at
    :data:`DEFAULT_FINETUNE_STEPS` optimiser steps, a short recovery that keeps an audit within
    minutes on a CPU; ``finetune_epochs=N`` runs the schedule scaled to N full epochs (the
    paper's: 15 for LeNet-5, 25 for ResNets); ``0`` = no fine-tuning. ``trust_pickle``: load a
    pickled module its sidecar names (prunescope 0.1 audits; it can run code, see
    :func:`prunescope.train.load_checkpoint`). Other keyword arguments are passed to :func:`audit`.
    """
    from prunescope import data as D
    from prunescope.prune.finetune import finetune_recipe

    model, meta, masks = load_model_file(path, device=device, trust_pickle=trust_pickle)
    if masks:
        raise AuditError(f"{path} holds a pruned model (it has masks); audit its dense parent")
    ds = meta.get("dataset")
    if ds not in D.names():
        raise AuditError(f"{path}: its sidecar names dataset {ds!r}, not one prunescope knows "
                         f"({', '.join(D.names())}); audit it with --model and --data instead")
    info = D.info(ds)
    if train_data is None or test_data is None:
        try:
            full = D.load(ds, "train", data_dir)
            test = D.load(ds, "test", data_dir)
        except Exception as e:  # noqa: BLE001 -- one line: what is missing and how to get it
            raise AuditError(f"dataset {ds} of {path} is not available: {e}; run `prunescope "
                             f"data fetch {ds}`") from e
        tr_idx, va_idx = D.train_val_indices(full.y, n_val=int(meta.get("n_val", 5000)),
                                             seed=int(meta.get("split_seed", 0)))
        train_data = train_data if train_data is not None else (full.x[tr_idx], full.y[tr_idx])
        kwargs.setdefault("val_data", (full.x[va_idx], full.y[va_idx]))
        test_data = test_data if test_data is not None else test
    if finetune_epochs is None:
        kwargs.setdefault("finetune", finetune_recipe(meta["arch"], 1, DEFAULT_FINETUNE_STEPS))
    elif finetune_epochs > 0:
        kwargs.setdefault("finetune", finetune_recipe(meta["arch"], finetune_epochs))
    elif finetune_epochs < 0:
        raise AuditError(f"finetune_epochs = {finetune_epochs} must be >= 0 (0: no fine-tuning)")
    kwargs.setdefault("class_names", info.classes)
    kwargs.setdefault("mean", info.mean)
    kwargs.setdefault("std", info.std)
    kwargs.setdefault("name", meta["arch"])
    kwargs.setdefault("dataset", ds)
    return audit(model, train_data, test_data, meta=meta, num_classes=info.num_classes,
                 _module=False, **kwargs)


def load_model_file(path: str | Path, device: torch.device | str = "cpu", *,
                    trust_pickle: bool = False
                    ) -> tuple[nn.Module, dict[str, Any], dict[str, torch.Tensor] | None]:
    """:func:`prunescope.train.load_checkpoint` with one-line errors (``AuditError``) that name
    the file and the way forward: missing, not a safetensors file (a ``.pt`` state dict),
    without its JSON sidecar, or truncated."""
    p = Path(path)
    if not p.is_file():
        raise AuditError(f"no checkpoint at {p}")
    if p.suffix != ".safetensors":
        raise AuditError(f"{p} is not a prunescope checkpoint (.safetensors with a .json "
                         "sidecar); for a state dict of your own model use `prunescope audit "
                         f"{p} --model package.module:build --data FOLDER`")
    try:
        return load_checkpoint(p, device=device, trust_pickle=trust_pickle)
    except CheckpointError as e:
        raise AuditError(str(e)) from e
    except FileNotFoundError as e:
        raise AuditError(f"{p} has no sidecar {p}.json, so its architecture and dataset are "
                         "unknown: audit it as your own model with `--model package.module:build "
                         "--data FOLDER`, or keep the .json `prunescope train` wrote beside it"
                         ) from e
    except Exception as e:  # noqa: BLE001 -- truncated / corrupt files raise many types
        raise AuditError(f"{p} cannot be read ({type(e).__name__}: {str(e).splitlines()[0]}); "
                         "it may be truncated or not a checkpoint: write it again with "
                         "`prunescope train`") from e


from prunescope.compare import CompareResult, audit_channels, compare  # noqa: E402

__all__ = ["DEFAULT_FINETUNE_STEPS", "AuditError", "AuditResult", "CompareResult", "Estimate",
           "as_arrays", "audit", "audit_channels", "audit_checkpoint", "compare", "describe",
           "load_model_file"]
