"""The plan: a :class:`~prunescope.study.spec.StudySpec` expanded into content-addressed jobs.

Job kinds, in dependency order (:data:`KINDS`):

* ``train(dataset, arch, seed)``: the dense model of one seed (SPEC 4); a cell with a long-tailed
  training split adds ``imbalance`` (profile, ratio, seed and the per-class counts) to it.
* ``gradients(train)``: the data-loss gradient of that dense model (SPEC 3), shared by GP and UP.
* ``prune_finetune(train, method, ratio)``: one-shot pruning from the dense parent, then
  fine-tuning with the mask held; GP/UP depend on the ``gradients`` job as well.
* ``rewind(dataset, arch, seed, rewind_steps)`` (cells with ``lth``): the dense run's state after
  ``[lth] rewind_steps`` optimiser steps, recomputed by rerunning the same seeded ``fit`` and
  stopping there (so the ``train`` job and its id are the same with or without ``lth``).
* ``structured(train, method, ratio)``: ``l1-filter``/``chip`` channel removal from the dense
  parent, then fine-tuning of the smaller network (no masks).
* ``lth_level(previous level, rewind, level)``: one level of iterative magnitude pruning: mask
  from the previous level's trained weights (level 1: the dense model), rewind, retrain with
  the mask held. One job per level, chained, so a killed run redoes at most the level in flight.
* ``evaluate(model job, distribution)``: the per-class confusion matrix of a dense or pruned
  model on one test distribution.

A job's id is the sha256 of the canonical JSON (sorted keys, no whitespace) of its ``params``:
exactly what determines its result (dataset, arch, seed, recipe, method, ratio, scope, gradient
mode, parent ids, the validation split, :data:`RESULTS_VERSION`) and nothing else: no output
path, device, model index label or study name. Parent ids are inside the params, so a changed
training recipe changes every id downstream of it.
"""
from __future__ import annotations

import functools
import hashlib
import json
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from prunescope.identity import id_field, identity
from prunescope.choices import gradient_batches
from prunescope.catalog import methods as registry
from prunescope.catalog.protocol import PruneOptions
from prunescope.study.feasibility import lth_schedule
from prunescope.study.spec import StudySpec
from prunescope.train.recipe import Recipe

#: Bump when a code change alters the result of an unchanged job (ids then change, nothing
#: stale is reused). Part of every job id.
RESULTS_VERSION = 1
#: job kinds in dependency order (the plan's phases). An audit (:func:`prunescope.audit.audit`)
#: adds one more before them, ``source``: its dense model, imported rather than trained (the
#: audit writes its checkpoint and records it done before the run, so no worker runs it).
KINDS = ("train", "rewind", "gradients", "prune_finetune", "structured", "lth_level", "evaluate")


# ---- the typed parameters of each job kind --------------------------------------------------
# A job id hashes prunescope.identity.identity(params): a field without a default always, a
# field with one only when it differs from it (or when its ``when`` says). Give every field
# added from now on a default, so that the ids of finished jobs stay (tests/study/test_job_ids.py).
@dataclass(frozen=True)
class TrainParams:
    """A ``train`` job: the dense model of one seed, trained with ``recipe`` on the train split
    (or its long-tailed subset ``imbalance``) less a validation hold-out of ``n_val`` images
    (drawn with ``split_seed``)."""

    dataset: str
    arch: str
    seed: int
    recipe: Recipe
    n_val: int
    split_seed: int
    #: a long-tailed training split: ``{"profile", "ratio", "seed", "counts"}``
    #: (:func:`prunescope.data.training_split`), ``None`` for the balanced split
    imbalance: dict[str, Any] | None = None
    #: :data:`~prunescope.catalog.protocol.VALIDATIONS`: ``test`` trains on the whole split
    #: (``n_val`` 0) and keeps the epoch of lowest test loss (SPEC 8)
    validation: str = "held-out"
    #: :data:`~prunescope.catalog.protocol.NORMALISATIONS`
    normalisation: str = "dataset"


@dataclass(frozen=True)
class RewindParams(TrainParams):
    """A ``rewind`` job: the ``train`` job's run, stopped after ``rewind_steps`` optimiser
    steps (a keyword)."""

    rewind_steps: int = field(kw_only=True)


def _sampled(p: GradientsParams) -> bool:
    return p.mode != "full"


@dataclass(frozen=True)
class GradientsParams:
    """A ``gradients`` job: the data-loss gradient of dense model ``parent`` by ``mode``;
    ``n_batches`` batches of ``batch_size`` drawn with ``seed`` unless ``mode`` is ``full``,
    cropped and flipped when ``augment`` (``shrinkbench`` mode of an augmenting recipe)."""

    parent: str
    mode: str
    n_batches: int | None = id_field(None, when=_sampled)
    batch_size: int | None = id_field(None, when=_sampled)
    seed: int | None = id_field(None, when=_sampled)
    augment: bool = False


@dataclass(frozen=True)
class _FromDense:
    """A pruned model made from dense model ``parent`` by ``method`` at ``ratio`` (``scope``),
    then fine-tuned with ``recipe`` (model seed ``seed``)."""

    parent: str
    method: str
    ratio: float
    scope: str
    #: ``None``: pruned and not fine-tuned (an audit's "right after pruning" copies)
    recipe: Recipe | None
    seed: int


@dataclass(frozen=True)
class PruneFinetuneParams(_FromDense):
    """A ``prune_finetune`` job: one-shot pruning (:class:`_FromDense`) under the cell's
    :class:`~prunescope.catalog.protocol.PruneOptions` (its fields, flat); GP/UP score with the
    ``gradients`` job's gradient."""

    prune_classifier: bool = False
    prune_biases: bool = False
    gradients: str | None = None
    #: the fine-tuning objective (:mod:`prunescope.catalog.objectives`) and all its options as
    #: ``((option, value), ...)``; ``ce`` (no options) stays out of the id
    objective: str = "ce"
    objective_options: tuple[tuple[str, float], ...] = ()
    keep_rule: str = "exact"
    up_score: str = "absolute"
    rp_count: str = "exact"

    @property
    def options(self) -> PruneOptions:
        """The prunable set and mask rule of this job."""
        return PruneOptions(**{k: getattr(self, k) for k in PruneOptions.__dataclass_fields__})


@dataclass(frozen=True)
class StructuredParams(_FromDense):
    """A ``structured`` job: channel removal (:class:`_FromDense`) with per-layer ``config``
    (``uniform``: every group the same fraction); CHIP scores average over ``chip_images``
    training images."""

    chip_images: int | None = None
    config: str = "uniform"


@dataclass(frozen=True)
class LthLevelParams:
    """An ``lth_level`` job: level ``level`` of iterative magnitude pruning from ``parent`` (the
    previous level, level 1: the dense model), rewound to the ``rewind`` job's state and
    retrained with ``recipe`` from optimiser step ``start_step`` on (``[lth] retrain =
    "rewind"``: the rewinding step; 0, from the start, is left out of the id)."""

    parent: str
    rewind: str
    method: str
    level: int
    prune_fraction: float
    scope: str
    recipe: Recipe
    seed: int
    prune_classifier: bool = False
    prune_biases: bool = False
    start_step: int = 0


@dataclass(frozen=True)
class EvaluateParams:
    """An ``evaluate`` job: model ``parent`` on test ``distribution`` (corrupted with
    ``corruption_seed`` unless nominal), on the stratified ``test_subset`` drawn with
    ``split_seed`` when one is set. ``quantize``: how corrupted pixels become uint8 levels
    (:func:`prunescope.data.corruptions.corrupt`), ``"truncate"`` as the published CIFAR-10-C
    for every corrupted set since issue 13 (so no result made with rounding is reused), ``None``
    for the nominal set."""

    parent: str
    distribution: str
    corruption_seed: int | None = None
    test_subset: int | None = None
    split_seed: int | None = None
    quantize: str | None = None


@dataclass(frozen=True)
class SourceParams:
    """A ``source`` job: an audit's dense model, imported rather than trained
    (:func:`prunescope.audit.audit` writes its checkpoint and records it done, no worker runs
    it): sha256 of its ``weights`` (safetensors bytes) and of its ``data`` (train, validation
    and test arrays), its ``structure`` (``repr`` of the module), normalisation, UP's
    ``weight_decay`` and ``num_classes``."""

    weights: str
    structure: str
    data: str
    mean: tuple[float, ...]
    std: tuple[float, ...]
    weight_decay: float | None
    num_classes: int


JobParams = (SourceParams | TrainParams | RewindParams | GradientsParams | PruneFinetuneParams
             | StructuredParams | LthLevelParams | EvaluateParams)
#: the parameter type of each job kind
PARAMS: dict[str, type] = {
    "train": TrainParams, "rewind": RewindParams, "gradients": GradientsParams,
    "prune_finetune": PruneFinetuneParams, "structured": StructuredParams,
    "lth_level": LthLevelParams, "evaluate": EvaluateParams, "source": SourceParams}
_KIND_OF = {cls: kind for kind, cls in PARAMS.items()}


def params_from_dict(kind: str, d: dict[str, Any]) -> Any:
    """The typed parameters of a job of ``kind`` from its hashed dict (``Job.params``; keys
    left out of the hash take their defaults)."""
    kw = {k: v for k, v in d.items() if k not in ("kind", "version")}
    if kw.get("recipe") is not None:
        kw["recipe"] = Recipe.from_dict(kw["recipe"])
    return PARAMS[kind](**kw)


@dataclass(frozen=True, eq=False)
class Job:
    """One unit of work.

    Attributes:
        id: 64 hex chars, sha256 of :func:`canonical_json` (``params``).
        kind: one of :data:`KINDS`.
        params: what determines the result: ``{"kind", "version", **identity(typed
            parameters)}`` (JSON-able; the ids of parents included; stored with the job).
            Workers read the typed :attr:`args`, rebuilt from it, so nothing outside the id
            can steer a result.
        deps: ids of the jobs whose artifacts this one reads.
        dataset, arch, seed: the dense model's dataset, architecture and seed.
        model: the model index within the study (a label, not in the id).
        method: ``dense`` for train/gradients and evaluations of dense models, else the pruning
            method; ratio: the requested compression ratio (1.0 for dense).
        distribution: the test distribution of an ``evaluate`` job, else ``None``.
        imbalance: the long-tailed training split's label (``lt10``, ``step100``: see
            :attr:`prunescope.study.spec.ImbalanceSpec.label`) of every job of such a cell,
            ``None`` for the full training split.
        objective: the fine-tuning objective of a ``prune_finetune`` job and its evaluations
            (``ce`` for every other job).
        level: the LTH level (1, 2, ...) of ``lth_level`` jobs and their evaluations, else
            ``None``. Their ``ratio`` is the smallest requested ``lth`` ratio that this level is
            the first to reach (achieved ratio >= it), or, for a level in between, the level's
            own achieved ratio (exact from parameter counts): see :func:`lth_ratio_labels`.
    """

    id: str
    kind: str
    params: dict[str, Any]
    deps: tuple[str, ...]
    dataset: str
    arch: str
    seed: int
    model: int
    method: str = "dense"
    ratio: float = 1.0
    distribution: str | None = None
    level: int | None = None
    imbalance: str | None = None
    objective: str = "ce"

    @functools.cached_property
    def args(self) -> Any:
        """The typed parameters (:data:`PARAMS` ``[kind]``) of :attr:`params`."""
        return params_from_dict(self.kind, self.params)


@dataclass(frozen=True, eq=False)
class Plan:
    """All jobs of a study, parents before children (``jobs`` in :data:`KINDS` order)."""

    spec: StudySpec
    jobs: tuple[Job, ...]

    def by_id(self) -> dict[str, Job]:
        """``{job id: job}``."""
        return {j.id: j for j in self.jobs}

    def counts(self) -> dict[str, int]:
        """Number of jobs per kind, every kind present (0 when none)."""
        c = Counter(j.kind for j in self.jobs)
        return {k: c.get(k, 0) for k in KINDS}


def canonical_json(obj: Any) -> str:
    """JSON with sorted keys and no whitespace; floats in Python's shortest round-trip form."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), allow_nan=False)


def job_id(params: dict[str, Any]) -> str:
    """sha256 hex of :func:`canonical_json` (``params``)."""
    return hashlib.sha256(canonical_json(params).encode()).hexdigest()


def model_seed(study_seed: int, index: int) -> int:
    """Seed of model ``index`` (0-based) of a study: the first 4 bytes of
    sha256("prunescope-model/<study seed>/<index>") as an int in [0, 2**31)."""
    digest = hashlib.sha256(f"prunescope-model/{int(study_seed)}/{int(index)}".encode()).digest()
    return int.from_bytes(digest[:4], "little") & 0x7FFFFFFF


def lth_ratio_labels(achieved: list[float], requested: tuple[float, ...]) -> list[float]:
    """The ``ratio`` label of each LTH level (``achieved[L-1]`` = level L's achieved ratio).

    A level that is the first to reach one or more requested ratios (achieved >= r, the level
    before < r) is labelled with the smallest of them, so LTH rows sit in the same ratio cells as
    one-shot MP at the requested ratios (their ``achieved_ratio`` column holds the exact, usually
    somewhat larger, ratio). Levels in between are labelled with their achieved ratio.
    """
    out = []
    prev = 1.0
    for a in achieved:
        hit = [r for r in requested if prev < r <= a]
        out.append(min(hit) if hit else a)
        prev = a
    return out


class JobSet:
    """The jobs of a plan being built, each once: a job reached twice (two grid entries, or an
    audit rerun) is the same job. ``by_id``: ``{job id: Job}`` in the order first added."""

    def __init__(self) -> None:
        self.by_id: dict[str, Job] = {}

    def add(self, args: Any, deps: tuple[str, ...], **labels: Any) -> Job:
        """The job of the typed parameters ``args`` (a :data:`PARAMS` type), its id hashed from
        them as every plan hashes them, with ``deps`` and its ``labels``."""
        kind = _KIND_OF[type(args)]
        full = {"kind": kind, "version": RESULTS_VERSION, **identity(args)}
        jid = job_id(full)
        if jid not in self.by_id:
            self.by_id[jid] = Job(jid, kind, full, deps, **labels)
        return self.by_id[jid]


def make_plan(spec: StudySpec) -> Plan:
    """Expand ``spec`` into its jobs (deterministic order: kind, then cell, model, method,
    ratio, distribution). A job reached from two grid entries appears once."""
    planned = JobSet()
    add = planned.add
    for cell in spec.cells:
        train_recipe = spec.recipe(cell.arch, "train")
        ft_recipe = spec.recipe(cell.arch, "finetune")
        methods = dict(cell.methods)
        for m in range(spec.models):
            seed = model_seed(spec.seed, m)
            labels = dict(dataset=cell.dataset, arch=cell.arch, seed=seed, model=m)
            imbalance = None
            if cell.imbalance is not None:  # only then, so that balanced cells keep their ids
                imb = cell.imbalance
                labels["imbalance"] = imb.label
                imbalance = {"profile": imb.profile, "ratio": imb.ratio, "seed": imb.seed,
                             "counts": list(imb.counts(cell.dataset))}
            held_out = spec.validation == "held-out"
            train = add(TrainParams(cell.dataset, cell.arch, seed, train_recipe,
                                    spec.n_val if held_out else 0, spec.split_seed,
                                    imbalance=imbalance, **spec.training.non_default()),
                        (), **labels)
            models = [train]
            grads = None
            if any(registry.method(meth).needs_gradients for meth in methods):
                g = spec.gradients
                sampled = g.mode != "full"
                grads = add(GradientsParams(
                    train.id, g.mode, n_batches=g.n_batches if sampled else None,
                    batch_size=train_recipe.batch_size if sampled else None,
                    seed=seed if sampled else None,
                    augment=g.augment and train_recipe.augment), (train.id,), **labels)
            for meth, ratios in methods.items():
                kind = registry.method(meth).kind
                if kind == "iterative":
                    models.extend(_lth_jobs(spec, cell, add, train, meth, ratios, labels))
                    continue
                if kind == "structured":
                    st = spec.structured
                    for r in ratios:
                        models.append(add(StructuredParams(
                            train.id, meth, r, st.scope, ft_recipe, seed,
                            chip_images=(st.chip_images if registry.method(meth).needs_feature_maps
                                         else None),
                            config=st.config_of(meth)),
                            (train.id,), method=meth, ratio=r, **labels))
                    continue
                for r in ratios:
                    gid = grads.id if registry.method(meth).needs_gradients else None
                    for objective, options in cell.objectives_of(meth):
                        models.append(add(PruneFinetuneParams(
                            train.id, meth, r, spec.scope, ft_recipe, seed, gradients=gid,
                            objective=objective, objective_options=options,
                            **vars(cell.pruning)), (train.id,) if gid is None else (train.id, gid),
                            method=meth, ratio=r, objective=objective, **labels))
            for model_job in models:
                for dist in spec.distributions:
                    subset = spec.test_subset
                    add(EvaluateParams(
                        model_job.id, dist,
                        corruption_seed=None if dist == "nominal" else spec.corruption_seed,
                        test_subset=subset,
                        split_seed=None if subset is None else spec.split_seed,
                        quantize=None if dist == "nominal" else "truncate"),
                        (model_job.id,), method=model_job.method, ratio=model_job.ratio,
                        distribution=dist, level=model_job.level, objective=model_job.objective,
                        **labels)
    jobs = sorted(planned.by_id.values(), key=lambda j: KINDS.index(j.kind))  # stable: plan order
    return Plan(spec, tuple(jobs))


def _lth_jobs(spec: StudySpec, cell: Any, add: Any, train: Job, meth: str,
              ratios: tuple[float, ...], labels: dict[str, Any]) -> list[Job]:
    """The ``rewind`` job and the chain of ``lth_level`` jobs of one dense model; returns the
    level jobs (the models to evaluate)."""
    lth = spec.lth
    tp = train.args
    rewind = add(RewindParams(**vars(tp), rewind_steps=lth.rewind_steps), (), **labels)
    resumed = lth.retrain == "rewind"  # the [train] schedule from the rewinding step on
    recipe = spec.recipe(cell.arch, "train" if resumed else lth.retrain)
    achieved = lth_schedule(spec, cell)
    out = []
    parent = train
    for level, label in enumerate(lth_ratio_labels(achieved, ratios), start=1):
        parent = add(LthLevelParams(
            parent.id, rewind.id, meth, level, lth.prune_fraction, spec.scope, recipe, tp.seed,
            prune_classifier=cell.pruning.prune_classifier,
            prune_biases=cell.pruning.prune_biases, start_step=lth.rewind_steps if resumed else 0),
            (parent.id, rewind.id), method=meth, ratio=label, level=level, **labels)
        out.append(parent)
    return out


def dataset_sizes(dataset: str) -> tuple[int, int]:
    """``(train split size, test split size)`` in images, from the data registry's constants."""
    from prunescope.data import expected

    counts = expected(dataset).counts
    return sum(counts["train"]), sum(counts["test"])


def job_work(job: Job, n_val: int) -> tuple[int, int]:
    """``(epochs, images)`` of one job, estimated without running it: images = single-image
    forward passes: for train/prune_finetune, epochs x (min(train images, max_steps_per_epoch x
    batch size) + one validation pass of ``n_val``) (likewise structured and lth_level); a rewind
    job's ``rewind_steps x batch size``; the gradient pass's images; the test
    images of an evaluation."""
    n_train_all, n_test = dataset_sizes(job.dataset)
    p = job.args
    if getattr(p, "imbalance", None) is not None:
        n_train_all = sum(p.imbalance["counts"])
    n_train = n_train_all - n_val
    if job.kind == "rewind":
        return 0, p.rewind_steps * p.recipe.batch_size
    if job.kind in ("train", "prune_finetune", "structured", "lth_level"):
        r = p.recipe
        per_epoch = n_train if r.max_steps_per_epoch is None else min(
            n_train, r.max_steps_per_epoch * r.batch_size)
        skipped = getattr(p, "start_step", 0) * r.batch_size  # LTH retrain = "rewind"
        return r.epochs, r.epochs * (per_epoch + n_val) - skipped
    if job.kind == "gradients":
        steps = gradient_batches(p.mode, p.n_batches)
        return 0, n_train if steps is None else min(n_train, steps * p.batch_size)
    return 0, n_test if p.test_subset is None else p.test_subset


def estimate_work(plan: Plan) -> dict[str, dict[str, float]]:
    """Estimated work per kind, without running anything: ``{kind: {"jobs": n, "epochs":
    total epochs, "images": single-image forward passes}}`` summed over :func:`job_work`."""
    out = {k: {"jobs": 0.0, "epochs": 0.0, "images": 0.0} for k in KINDS}
    for job in plan.jobs:
        epochs, images = job_work(job, plan.spec.n_val)
        row = out[job.kind]
        row["jobs"] += 1
        row["epochs"] += epochs
        row["images"] += images
    return out
