"""What an audit will run and how long it should take, printed before any work: a short
measured probe of the model's training step and forward pass, scaled by each job's work."""
from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from prunescope.audit.inputs import Options
from prunescope.audit.plan import AUDIT_KINDS
from prunescope.choices import gradient_batches
from prunescope.data.device import DeviceImages
from prunescope.study.plan import Job, Plan
from prunescope.study.progress import RunDisplay
from prunescope.train import Recipe

__all__ = ["JOB_OVERHEAD_S", "Estimate", "Weighted", "describe", "estimate", "job_seconds",
           "probe"]


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


def probe(model: nn.Module, images: DeviceImages, batch_size: int) -> tuple[float, float]:
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


def estimate(plan: Plan, status: Mapping[str, str], n: Mapping[str, int], step_s: float,
              image_s: float, workers: int) -> Estimate:
    """:class:`Estimate` of the jobs of ``plan`` not done yet (``workers`` share the work, at
    most two on a 2-core CPU)."""
    todo = [j for j in plan.jobs if status.get(j.id) != "done"]
    secs = sum(job_seconds(j, n, step_s, image_s) for j in todo)
    kinds = {k: sum(j.kind == k for j in todo) for k in AUDIT_KINDS
             if any(j.kind == k for j in todo)}
    return Estimate(kinds, len(plan.jobs) - len(todo), secs / max(1, min(workers, 2)),
                    step_s, image_s)


def fmt_s(s: float) -> str:
    s = max(0.0, s)
    return f"{s:.0f} s" if s < 90 else f"{s / 60:.0f} min" if s < 5400 else f"{s / 3600:.1f} h"


def describe(est: Estimate, opts: Options, recipe: Recipe | None, name: str) -> str:
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
        lines.append(f"estimated time: about {fmt_s(est.seconds)} (probe: "
                     f"{1e3 * est.step_s:.1f} ms per training step of 128 images, "
                     f"{1e6 * est.image_s:.1f} us per image evaluated)")
    return "\n".join(lines)


class Weighted(RunDisplay):
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
