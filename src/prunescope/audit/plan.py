"""The jobs of one audit: a ``source`` job holding the user's dense model and its data, then
the study's ``gradients``, ``prune_finetune`` and ``evaluate`` jobs with the typed parameters
the study worker reads, hashed as :func:`prunescope.study.plan.make_plan` hashes them."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from prunescope.audit.inputs import Options
from prunescope.catalog import methods as registry
from prunescope.study.artifacts import ArtifactDamaged, Artifacts
from prunescope.study.plan import (KINDS, EvaluateParams, GradientsParams, Job, JobSet, Plan,
                                   PruneFinetuneParams, SourceParams)
from prunescope.study.spec import StudySpec
from prunescope.train import Recipe, derive_seed, save_checkpoint

__all__ = ["AUDIT_KINDS", "AuditPlan", "data_sha", "make_audit_plan", "sha", "write_data", "write_source"]

#: an audit's job kinds in dependency order: its imported dense model, then the study's kinds
AUDIT_KINDS = ("source", *KINDS)



def sha(*parts: bytes) -> str:
    """sha256 (hex) of the sha256 digests of ``parts``, in order."""
    h = hashlib.sha256()
    for p in parts:
        h.update(hashlib.sha256(p).digest())
    return h.hexdigest()


def data_sha(sets: dict[str, tuple[np.ndarray, np.ndarray]]) -> str:
    """:func:`sha` of every split's images and labels with their shapes (the ``source`` job's
    ``data``)."""
    return sha(*(a.tobytes() + repr(a.shape).encode() for x, y in sets.values() for a in (x, y)))


@dataclass
class AuditPlan:
    """The audit's jobs: ``plan`` (everything to run), ``results`` (the plan results are read
    from: without the pruned-only models), ``pruned_eval``: ``(method, ratio) -> id`` of the
    nominal evaluation right after pruning (fine-tuned audits only)."""

    plan: Plan
    results: Plan
    source: Job
    pruned_eval: dict[tuple[str, float], str] = field(default_factory=dict)


def make_audit_plan(spec: StudySpec, source_params: SourceParams, opts: Options,
               recipe: Recipe | None, scope: str, grad_mode: str, grad_batches: int | None,
               seed: int, labels: dict[str, Any],
               objective: tuple[str, tuple[tuple[str, float], ...]] = ("ce", ())) -> AuditPlan:
    """The jobs of one audit: the typed parameters the study worker reads, hashed as
    :func:`prunescope.study.plan.make_plan` hashes them; ``objective``: the fine-tuning
    objective of every pruned model and its resolved options (``("ce", ())``: cross-entropy)."""
    planned = JobSet()

    def add(args: Any, deps: tuple[str, ...], **lab: Any) -> Job:
        return planned.add(args, deps, **(labels | lab))

    source = add(source_params, ())
    grads = None
    if any(registry.method(m).needs_gradients for m in opts.methods):
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
            if registry.method(m).needs_gradients:
                assert grads is not None
                g, deps = grads.id, (source.id, grads.id)
            args = PruneFinetuneParams(source.id, m, r, scope, recipe, seed, gradients=g,
                                       objective=objective[0], objective_options=objective[1])
            models.append(add(args, deps, method=m, ratio=r, objective=objective[0]))
            if recipe is not None:  # right after pruning: no objective yet, shared by all
                pruned_only[(m, r)] = add(replace(args, recipe=None, objective="ce",
                                                  objective_options=()), deps, method=m, ratio=r)
    for job in models:
        for d in opts.distributions:
            shifted = d != "nominal"
            add(EvaluateParams(job.id, d, corruption_seed=seed if shifted else None,
                               quantize="truncate" if shifted else None),
                (job.id,), method=job.method, ratio=job.ratio, distribution=d,
                objective=job.objective)
    pruned_eval = {key: add(EvaluateParams(j.id, "nominal"), (j.id,), method=j.method,
                            ratio=j.ratio, distribution="nominal").id
                   for key, j in pruned_only.items()}
    order = lambda js: tuple(sorted(js, key=lambda j: AUDIT_KINDS.index(j.kind)))  # noqa: E731
    skip = {j.id for j in pruned_only.values()} | set(pruned_eval.values())
    jobs = planned.by_id
    return AuditPlan(Plan(spec, order(jobs.values())),
                      Plan(spec, order(j for j in jobs.values() if j.id not in skip)),
                      source, pruned_eval)


def write_data(arts: Artifacts, sets: dict[str, tuple[np.ndarray, np.ndarray]],
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


def write_source(arts: Artifacts, source: Job, model: nn.Module, meta: dict[str, Any],
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
