"""The plan: a :class:`~prunescope.study.spec.StudySpec` expanded into content-addressed jobs.

Job kinds, in dependency order (:data:`KINDS`):

* ``train(dataset, arch, seed)``: the dense model of one seed (SPEC 4).
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

import hashlib
import json
from collections import Counter
from dataclasses import dataclass
from typing import Any

from prunescope.prune.gradients import gradient_batches
from prunescope.study.spec import GRADIENT_METHODS, STRUCTURED_METHODS, StudySpec, lth_schedule

#: Bump when a code change alters the result of an unchanged job (ids then change, nothing
#: stale is reused). Part of every job id.
RESULTS_VERSION = 1
#: job kinds in dependency order (the plan's phases). An audit (:func:`prunescope.audit.audit`)
#: adds one more before them, ``source``: its dense model, imported rather than trained (the
#: audit writes its checkpoint and records it done before the run, so no worker runs it).
KINDS = ("train", "rewind", "gradients", "prune_finetune", "structured", "lth_level", "evaluate")


@dataclass(frozen=True, eq=False)
class Job:
    """One unit of work.

    Attributes:
        id: 64 hex chars, sha256 of :func:`canonical_json` (``params``).
        kind: one of :data:`KINDS`.
        params: what determines the result (JSON-able; the ids of parents included).
        deps: ids of the jobs whose artifacts this one reads.
        dataset, arch, seed: the dense model's dataset, architecture and seed.
        model: the model index within the study (a label, not in the id).
        method: ``dense`` for train/gradients and evaluations of dense models, else the pruning
            method; ratio: the requested compression ratio (1.0 for dense).
        distribution: the test distribution of an ``evaluate`` job, else ``None``.
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


def make_plan(spec: StudySpec) -> Plan:
    """Expand ``spec`` into its jobs (deterministic order: kind, then cell, model, method,
    ratio, distribution). A job reached from two grid entries appears once."""
    seen: dict[str, Job] = {}

    def add(kind: str, params: dict[str, Any], deps: tuple[str, ...], **labels: Any) -> Job:
        full = {"kind": kind, "version": RESULTS_VERSION, **params}
        jid = job_id(full)
        if jid not in seen:
            seen[jid] = Job(jid, kind, full, deps, **labels)
        return seen[jid]

    for cell in spec.cells:
        train_recipe = spec.recipe(cell.arch, "train").to_dict()
        ft_recipe = spec.recipe(cell.arch, "finetune").to_dict()
        methods = dict(cell.methods)
        for m in range(spec.models):
            seed = model_seed(spec.seed, m)
            labels = dict(dataset=cell.dataset, arch=cell.arch, seed=seed, model=m)
            train = add("train", {
                "dataset": cell.dataset, "arch": cell.arch, "seed": seed, "recipe": train_recipe,
                "n_val": spec.n_val, "split_seed": spec.split_seed,
            }, (), **labels)
            models = [train]
            grads = None
            if any(meth in GRADIENT_METHODS for meth in methods):
                g = spec.gradients
                gparams: dict[str, Any] = {"parent": train.id, "mode": g.mode}
                if g.mode != "full":
                    gparams |= {"n_batches": g.n_batches, "batch_size": train_recipe["batch_size"],
                                "seed": seed}
                grads = add("gradients", gparams, (train.id,), **labels)
            for meth, ratios in methods.items():
                if meth == "lth":
                    models.extend(_lth_jobs(spec, cell, add, train, ratios, labels))
                    continue
                if meth in STRUCTURED_METHODS:
                    st = spec.structured
                    for r in ratios:
                        sparams: dict[str, Any] = {
                            "parent": train.id, "method": meth, "ratio": r, "scope": st.scope,
                            "recipe": ft_recipe, "seed": seed}
                        if meth == "chip":
                            sparams["chip_images"] = st.chip_images
                        # only when set, so that uniform jobs keep their ids
                        if st.config_of(meth) != "uniform":
                            sparams["config"] = st.config_of(meth)
                        models.append(add("structured", sparams, (train.id,), method=meth,
                                          ratio=r, **labels))
                    continue
                for r in ratios:
                    params: dict[str, Any] = {
                        "parent": train.id, "method": meth, "ratio": r, "scope": spec.scope,
                        "recipe": ft_recipe, "seed": seed,
                    }
                    # only when set, so that default studies keep their ids
                    if cell.prune_classifier:
                        params["prune_classifier"] = True
                    if cell.prune_biases:
                        params["prune_biases"] = True
                    deps: tuple[str, ...] = (train.id,)
                    if meth in GRADIENT_METHODS:
                        assert grads is not None
                        params["gradients"] = grads.id
                        deps = (train.id, grads.id)
                    models.append(add("prune_finetune", params, deps, method=meth, ratio=r,
                                      **labels))
            for model_job in models:
                for dist in spec.distributions:
                    eparams: dict[str, Any] = {"parent": model_job.id, "distribution": dist}
                    if dist != "nominal":
                        eparams["corruption_seed"] = spec.corruption_seed
                    if spec.test_subset is not None:
                        eparams |= {"test_subset": spec.test_subset,
                                    "split_seed": spec.split_seed}
                    add("evaluate", eparams, (model_job.id,), method=model_job.method,
                        ratio=model_job.ratio, distribution=dist, level=model_job.level,
                        **labels)
    jobs = sorted(seen.values(), key=lambda j: KINDS.index(j.kind))  # stable: keeps plan order
    return Plan(spec, tuple(jobs))


def _lth_jobs(spec: StudySpec, cell: Any, add: Any, train: Job, ratios: tuple[float, ...],
              labels: dict[str, Any]) -> list[Job]:
    """The ``rewind`` job and the chain of ``lth_level`` jobs of one dense model; returns the
    level jobs (the models to evaluate)."""
    lth = spec.lth
    tp = train.params
    rewind = add("rewind", {
        "dataset": tp["dataset"], "arch": tp["arch"], "seed": tp["seed"], "recipe": tp["recipe"],
        "n_val": tp["n_val"], "split_seed": tp["split_seed"], "rewind_steps": lth.rewind_steps,
    }, (), **labels)
    recipe = spec.recipe(cell.arch, lth.retrain).to_dict()
    achieved = lth_schedule(spec, cell)
    out = []
    parent = train
    for level, label in enumerate(lth_ratio_labels(achieved, ratios), start=1):
        params: dict[str, Any] = {
            "parent": parent.id, "rewind": rewind.id, "method": "lth", "level": level,
            "prune_fraction": lth.prune_fraction, "scope": spec.scope, "recipe": recipe,
            "seed": tp["seed"]}
        if cell.prune_classifier:
            params["prune_classifier"] = True
        if cell.prune_biases:
            params["prune_biases"] = True
        parent = add("lth_level", params, (parent.id, rewind.id), method="lth", ratio=label,
                     level=level, **labels)
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
    n_train = n_train_all - n_val
    p = job.params
    if job.kind == "rewind":
        r = p["recipe"]
        return 0, p["rewind_steps"] * r["batch_size"]
    if job.kind in ("train", "prune_finetune", "structured", "lth_level"):
        r = p["recipe"]
        epochs = sum(e for e, _ in r["schedule"])
        per_epoch = n_train if r["max_steps_per_epoch"] is None else min(
            n_train, r["max_steps_per_epoch"] * r["batch_size"])
        return epochs, epochs * (per_epoch + n_val)
    if job.kind == "gradients":
        steps = gradient_batches(p["mode"], p.get("n_batches"))
        return 0, n_train if steps is None else min(n_train, steps * p["batch_size"])
    return 0, p.get("test_subset", n_test)


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
