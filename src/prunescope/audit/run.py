"""Running an audit: :func:`audit` (checks, plan, estimate, the study driver, the tables read
back) and :func:`audit_checkpoint` (its arguments from a prunescope checkpoint's sidecar)."""
from __future__ import annotations

import copy
import io
import sys
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TextIO

import numpy as np
import pandas as pd
import torch
from torch import nn

from prunescope import choices, metrics
from prunescope.audit.estimate import Estimate, Weighted, describe, estimate, job_seconds, probe
from prunescope.audit.inputs import (AuditError, DataLike, as_arrays, as_recipe, check_data,
                                     check_options, model_device, normalisation)
from prunescope.audit.plan import (AuditPlan, data_sha, make_audit_plan, sha, write_data,
                                  write_source)
from prunescope.catalog import methods as registry, objectives
from prunescope.catalog.protocol import TrainOptions
from prunescope.data.device import DeviceImages
from prunescope.data.splits import train_val_indices
from prunescope.study.artifacts import Artifacts
from prunescope.study.plan import SourceParams
from prunescope.study.progress import RunDisplay
from prunescope.study.spec import ExecutorSpec, StudySpec
from prunescope.study.store import JobResult, Store
from prunescope.train import CheckpointError, Recipe, load_checkpoint

__all__ = ["DEFAULT_FINETUNE_STEPS", "AuditResult", "audit", "audit_checkpoint",
           "checkpoint_arguments", "load_model_file", "summarise"]

#: optimiser steps of the default (short) fine-tuning of :func:`audit_checkpoint`: one epoch of
#: the architecture's SPEC 4 fine-tuning recipe capped at this many steps (measured to keep the
#: README's audit examples within a few minutes on a 2-core CPU, docs/benchmarks.md)
DEFAULT_FINETUNE_STEPS = 100


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


def audit(
    model: nn.Module,
    train_data: DataLike,
    test_data: DataLike,
    *,
    methods: Sequence[str] | None = None,
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
    objective: str = "ce",
    objective_options: Mapping[str, float] | None = None,
) -> AuditResult:
    """Prune ``model`` with every method at every ratio and measure what changes (SPEC 2, 3, 7).

    Every option, the data and the ratios are checked before any work; what will run is printed
    to ``log`` with an estimate from a short measured probe. The jobs run as a study in
    ``out_dir`` (module docstring): each finished model is kept, a rerun resumes.

    Args:
        model: a trained classifier mapping float ``(B, C, H, W)`` to logits ``(B, classes)``;
            it is never modified (each pruned model is made from a saved copy). Its classes
            must be importable where the jobs run (with ``workers > 1``: in a fresh process),
            as for any pickled object.
        train_data: training images (gradients of GP and UP; fine-tuning). See the module doc.
        test_data: test images; only measured, never used to choose anything.
        methods: one-shot pruning criteria (SPEC 3: ``mp``, ``gp``, ``up``, ``rp``); default
            every one-shot method of :mod:`prunescope.catalog.methods`.
        ratios: compression ratios ``t = all params / nonzero params``, each > 1 and reachable.
        finetune: ``None``/``False`` = no fine-tuning; a ``Recipe`` (or dict of its fields) =
            fine-tune with the mask held, keeping the epoch with the lowest validation loss.
        val_data: validation images for that choice; default: a seeded stratified hold-out of
            ``n_val`` images (at most a tenth) from ``train_data``.
        distributions: test distributions: ``"nominal"``, ``"<corruption>-<1..5>"``,
            ``"noise-<std>"`` (prunescope.data.corruptions); ``"nominal"`` is always included.
        class_names: names of the classes (worst-hit table); num_classes: the model's outputs
            (checked against it; default: read from it); every label must be one of them.
        weight_decay: UP's eps, the model's training decay (required for UP unless ``meta`` has it).
        mean, std: per-channel input normalisation on the 0..1 scale (default: from train_data).
        scope: ``"global"`` or ``"layer"``; grad_mode, grad_batches: how GP/UP's data gradient
            is accumulated (computed once).
        seed: seeds RP, the gradient batches, fine-tuning and the corruptions.
        delta: prune-potential tolerance in points of test error (0.5 = half a point, as
            :func:`prunescope.metrics.prune_potential` reads it); top_k: classes listed per
            (method, ratio, distribution) in ``worst_classes``.
        out_dir, report: the audit's folder (``study.sqlite``, ``artifacts/``, ``report/``),
            whether to write ``<out_dir>/report/report.html``.
        workers: jobs run at once, each in a process of one torch thread (1: in this process).
        name, dataset: the ``arch`` and ``dataset`` labels of the frames and the report; meta:
            a checkpoint sidecar (UP's ``weight_decay``, the under-training check's history).
        display: progress sink (:mod:`prunescope.study.progress`; default: a line per finished
            job on ``log``); log: where the plan, the estimate and progress lines go: a text
            stream, ``"stderr"`` (``sys.stderr`` at the call) or ``None`` (nowhere).
        objective, objective_options: every pruned model's fine-tuning objective (``ce``,
            ``kd``, ``equalized-loss``, ``ceag``: docs/mitigation.md) and options to override.

    Returns an :class:`AuditResult`; raises :class:`AuditError` for a bad option, model or data
    (before any work) or failed jobs (after the run; the finished ones are kept).
    """
    meta = dict(meta or {})
    weight_decay = _recorded(meta, "weight_decay") if weight_decay is None else weight_decay
    opts = check_options(model, registry.names("one-shot") if methods is None else methods,
                         ratios, distributions, scope, grad_mode, grad_batches, delta, top_k,
                         workers, weight_decay)
    recipe, device = as_recipe(finetune), model_device(model)
    sets, where = _splits(train_data, val_data, test_data, n_val, seed)
    mean, std = normalisation(sets["train"][0], mean, std)
    n_cls = check_data(model, sets, mean, std, device, num_classes, class_names, where)
    spec = _one_model_spec(name, seed, Path(out_dir).resolve(), device, sets, workers)
    source_params = SourceParams(_weights_sha(model), repr(model), data_sha(sets), tuple(mean),
                                 tuple(std), weight_decay, n_cls)
    ap = make_audit_plan(spec, source_params, opts, recipe, scope, grad_mode, grad_batches,
                         seed, dict(dataset=dataset, arch=name, seed=seed, model=0),
                         objective=_objective(objective, objective_options))
    status = _record_source(spec, ap, model, sets, meta, source_params, dataset,
                            name if _module else meta["arch"])
    _run_jobs(spec, ap, model, _module, sets, device, status, display, log,
              describe_run=lambda est: describe(est, opts, recipe, name))
    return _read_back(spec, ap, sets, class_names, n_cls, dataset, name, delta, top_k, report)


def _objective(name: str, options: Mapping[str, float] | None
               ) -> tuple[str, tuple[tuple[str, float], ...]]:
    """``(objective, resolved options)`` checked, or ``AuditError`` (one line)."""
    if (error := choices.objective_error(str(name).lower())) is not None:
        raise AuditError(f"objective {name!r}: allowed: {error}")
    rec = objectives.objective(name)
    try:
        resolved = rec.resolve(options)
    except ValueError as e:
        raise AuditError(str(e)) from None
    return rec.name, tuple(resolved.items()) if rec.name != objectives.DEFAULT else ()


def _recorded(meta: Mapping[str, Any], key: str) -> float | None:
    """``meta[key]`` as a float, ``None`` when the sidecar records none."""
    return None if meta.get(key) is None else float(meta[key])


def _one_model_spec(name: str, seed: int, out: Path, device: torch.device,
                    sets: dict[str, tuple[np.ndarray, np.ndarray]], workers: int) -> StudySpec:
    """The study an audit runs as: one model, no grid (its plan is the audit's own)."""
    return StudySpec(name=f"audit-{name}", seed=seed, models=1, cells=(), output=str(out),
                     artifacts=str(out / "artifacts"), device=str(device),
                     n_val=len(sets["val"][1]),
                     executor=ExecutorSpec(workers=workers, threads=1 if workers > 1 else 0))


def _splits(train_data: DataLike, val_data: DataLike | None, test_data: DataLike, n_val: int,
            seed: int) -> tuple[dict[str, tuple[np.ndarray, np.ndarray]], dict[str, str]]:
    """``({split: (x uint8 NHWC, y int64)}, {split: the argument it came from})`` of the
    ``train``, ``val`` (default: a seeded stratified hold-out of ``n_val`` training images, at
    most a tenth) and ``test`` splits."""
    x_train, y_train = as_arrays(train_data, "train_data")
    if val_data is None:
        n_hold = min(n_val, len(y_train) // 10)
        if n_hold < 1:
            raise AuditError(f"train_data has {len(y_train)} images: too few to hold out "
                             "validation images; give val_data")
        tr_idx, va_idx = train_val_indices(y_train, n_val=n_hold, seed=seed)
        sets = {"train": (x_train[tr_idx], y_train[tr_idx]),
                "val": (x_train[va_idx], y_train[va_idx])}
    else:
        sets = {"train": (x_train, y_train), "val": as_arrays(val_data, "val_data")}
    sets["test"] = as_arrays(test_data, "test_data")
    where = {"train": "train_data", "test": "test_data",
             "val": "train_data" if val_data is None else "val_data"}
    return sets, where


def _weights_sha(model: nn.Module) -> str:
    """sha256 of the model's state as safetensors bytes (the ``source`` job's identity)."""
    from safetensors.torch import save

    return sha(save({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}))


def _record_source(spec: StudySpec, ap: AuditPlan, model: nn.Module,
                   sets: dict[str, tuple[np.ndarray, np.ndarray]], meta: Mapping[str, Any],
                   source: SourceParams, dataset: str, arch: str) -> dict[str, str]:
    """Add the audit's ``source`` job to its store, done, with the dense model's weights (its
    sidecar: ``meta`` and what the audit knows of the model and data) and its data written
    (the data checked, and written anew when damaged), unless a finished one is there; returns
    every job's status."""
    h, _, c = sets["train"][0].shape[1:]
    side = {k: v for k, v in meta.items() if k not in ("data", "module", "job_id")}
    side |= {"arch": arch, "num_classes": source.num_classes, "in_channels": int(c),
             "image_size": int(h), "dataset": dataset, "weight_decay": source.weight_decay,
             "mean": list(source.mean), "std": list(source.std),
             "n_val": len(sets["val"][1]), "seed": spec.seed}
    data = write_data(Artifacts(spec.artifacts), sets, source.data)
    with Store(spec.output) as store:
        store.add_jobs([ap.source])
        status = store.statuses()
        done_arts = store.artifacts([ap.source.id]).get(ap.source.id, {})
        if status[ap.source.id] != "done" or not Path(done_arts.get("weights", "")).is_file():
            root = Artifacts(spec.artifacts)
            files = write_source(root, ap.source, model, side, data)
            store.record([JobResult(ap.source.id, "done", achieved_ratio=1.0, artifacts=files,
                                    checksums=root.written_by(ap.source.id),
                                    info={"history": meta.get("history", []),
                                          "best_epoch": meta.get("best_epoch")})])
            status[ap.source.id] = "done"
    return status


def _run_jobs(spec: StudySpec, ap: AuditPlan, model: nn.Module, module: bool,
              sets: dict[str, tuple[np.ndarray, np.ndarray]], device: torch.device,
              status: dict[str, str], display: RunDisplay | None, log: TextIO | str | None,
              describe_run: Callable[[Estimate], str]) -> None:
    """Print what runs and the estimate (a measured probe), then run the jobs with the study
    driver (a user's ``module`` handed to the jobs as this object, never read from a file);
    ``AuditError`` when some failed (the finished ones are kept)."""
    from prunescope.study.progress import LogDisplay
    from prunescope.study.run import StudyLocked, run_study

    log = sys.stderr if log == "stderr" else log  # the stream of the time of the call
    sizes = {k: len(y) for k, (_, y) in sets.items()}
    source = ap.source.args
    train = DeviceImages(*sets["train"], list(source.mean), list(source.std), device)
    step_s, image_s = probe(model, train, 128)
    if log is not None:
        workers = spec.executor.workers
        print(describe_run(estimate(ap.plan, status, sizes, step_s, image_s, workers)),
              file=log, flush=True)
    if display is None and log is not None:
        display = LogDisplay(log)
    weight = lambda j: job_seconds(j, sizes, step_s, image_s)  # noqa: E731
    pickled = None
    if module:  # the jobs rebuild the user's model from this object, never from a file
        buf = io.BytesIO()
        torch.save(copy.deepcopy(model).cpu(), buf)
        pickled = buf.getvalue()
    try:
        summary = run_study(spec, retry_failed=True, plan=ap.plan, user_model=pickled,
                            display=None if display is None else Weighted(display, weight))
    except StudyLocked as e:
        raise AuditError(f"{e} (an audit of the same folder is running)") from e
    if summary.failed or summary.blocked:
        first_id, err = next(iter(summary.errors.items()), ("", ""))
        job = ap.plan.by_id().get(first_id)
        what = f"{job.kind} {job.method} x{job.ratio:g}" if job else "a job"
        finished = summary.total - summary.failed - summary.blocked
        raise AuditError(
            f"{summary.failed} audit job(s) failed and {summary.blocked} could not run (first: "
            f"{what}: {(err or '').splitlines()[0] if err else '?'}); the {finished} finished "
            f"ones are kept in {spec.output}: fix the cause and run the same audit again to "
            "resume")


def _read_back(spec: StudySpec, ap: AuditPlan, sets: dict[str, tuple[np.ndarray, np.ndarray]],
               class_names: Sequence[str] | None, n_cls: int, dataset: str, name: str,
               delta: float, top_k: int, report: bool) -> AuditResult:
    """The finished audit's results from its store: tables, checks, changed images, report."""
    from prunescope.study.checks import checks
    from prunescope.study.results import load_exemplars, load_results

    out = Path(spec.output)
    res = load_results(spec, plan=ap.results)
    counts = res.frame.drop(columns=["achieved_ratio", "seed"])
    found = tuple(checks(res))
    names = tuple(class_names) if class_names is not None else tuple(map(str, range(n_cls)))
    changed = load_exemplars(res, test_sets={dataset: (*sets["test"], names)})
    report_path = None
    if report:
        from prunescope.report import render_report

        report_path = render_report(res.frame, out / "report", study_name=f"audit of {name}",
                                    jobs=res.jobs, agreement=res.agreement, delta=delta,
                                    notices=found, exemplars=changed)
    agreement = res.agreement[["method", "ratio", "distribution", "agreement"]]
    result = summarise(counts, _runs(res.jobs, ap), agreement.reset_index(drop=True),
                        class_names, delta, top_k, found, out, report_path)
    view = changed.images.drop(columns=["dataset", "arch"]).reset_index(drop=True)
    return replace(result, changed_images=view)


def _runs(jobs: pd.DataFrame, ap: AuditPlan) -> pd.DataFrame:
    """One row per pruned model from the store: ratios, accuracies, fine-tuning steps, seconds."""
    with Store(ap.plan.spec.output, readonly=True) as store:
        infos = store.infos(ap.pruned_eval.values())
    right_after = {jid: float(info["accuracy"]) for jid, info in infos.items()}

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


def summarise(counts: pd.DataFrame, runs: pd.DataFrame, agreement: pd.DataFrame,
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


def audit_checkpoint(path: str | Path, **kwargs: Any) -> AuditResult:
    """:func:`audit` of a checkpoint written by prunescope (``prunescope train``):
    ``audit(**checkpoint_arguments(path, **kwargs))``, the arguments read from its sidecar
    (``data_dir``, ``train_data``, ``test_data``, ``finetune_epochs``, ``device`` and any
    :func:`audit` keyword as :func:`checkpoint_arguments` takes them)."""
    return audit(**checkpoint_arguments(path, **kwargs))


def checkpoint_arguments(
    path: str | Path,
    *,
    data_dir: str | Path | None = None,
    train_data: DataLike | None = None,
    test_data: DataLike | None = None,
    finetune_epochs: int | None = None,
    device: torch.device | str = "cpu",
    trust_pickle: bool = False,
    **kwargs: Any,
) -> dict[str, Any]:
    """The keyword arguments of :func:`audit` for a prunescope checkpoint: its model, and from
    its sidecar the dataset, its normalisation and class names, the weight decay (UP's eps) and
    the training split it was trained on (the validation hold-out of ``n_val`` drawn with
    ``split_seed``, from the long-tailed split when it records an ``imbalance``:
    :func:`prunescope.data.training_split`, as every trainer builds it). Fine-tuning uses the
    SPEC 4 fine-tuning recipe of its architecture: by default (``finetune_epochs=None``) one
    epoch of it capped at :data:`DEFAULT_FINETUNE_STEPS` optimiser steps, a short recovery that
    keeps an audit within minutes on a CPU; ``finetune_epochs=N`` runs the schedule scaled to N
    full epochs (the paper's: 15 for LeNet-5, 25 for ResNets); ``0`` = no fine-tuning.
    ``trust_pickle``: load a pickled module its sidecar names (prunescope 0.1 audits; it can
    run code, see :func:`prunescope.train.load_checkpoint`). ``kwargs`` (any other
    :func:`audit` argument) win over what the sidecar gives."""
    from prunescope import data as D
    from prunescope.prune.finetune import finetune_recipe
    from prunescope.train.run import train_val_arrays

    model, meta, masks = load_model_file(path, device=device, trust_pickle=trust_pickle)
    if masks:
        raise AuditError(f"{path} holds a pruned model (it has masks); audit its dense parent")
    ds = meta.get("dataset")
    if ds not in D.names():
        raise AuditError(f"{path}: its sidecar names dataset {ds!r}, not one prunescope knows "
                         f"({', '.join(D.names())}); audit it with --model and --data instead")
    info = D.info(ds)
    training = TrainOptions.of(meta)  # the sidecar's validation and normalisation (SPEC 8)
    if train_data is None or test_data is None:
        try:
            full = D.load(ds, "train", data_dir)
            test = D.load(ds, "test", data_dir)
        except Exception as e:  # noqa: BLE001 -- one line: what is missing and how to get it
            raise AuditError(f"dataset {ds} of {path} is not available: {e}; run `prunescope "
                             f"data fetch {ds}`") from e
        loaded = {"train": (full.x, full.y), "test": (test.x, test.y)}
        train, val = train_val_arrays(int(meta.get("n_val", 5000)), int(meta.get("split_seed", 0)),
                                      meta.get("imbalance"), training, loaded.__getitem__)
        train_data = train_data if train_data is not None else train
        kwargs.setdefault("val_data", val)
        test_data = test_data if test_data is not None else test
    if finetune_epochs is None:
        kwargs.setdefault("finetune", finetune_recipe(meta["arch"], 1, DEFAULT_FINETUNE_STEPS))
    elif finetune_epochs > 0:
        kwargs.setdefault("finetune", finetune_recipe(meta["arch"], finetune_epochs))
    elif finetune_epochs < 0:
        raise AuditError(f"finetune_epochs = {finetune_epochs} must be >= 0 (0: no fine-tuning)")
    mean, std = training.mean_std(ds, (info.mean, info.std))
    defaults = {"class_names": info.classes, "mean": mean, "std": std,
                "name": meta["arch"], "dataset": ds}
    return {"model": model, "train_data": train_data, "test_data": test_data, "meta": meta,
            "num_classes": info.num_classes, "_module": False, **defaults, **kwargs}


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
