"""Wall time each fine-tuning objective adds to fine-tuning (docs/mitigation.md): a benchmark,
not a test.

A LeNet (``lenet5-shrinkbench``, seeded, briefly trained) on Fashion-MNIST is pruned by MP to
ratio 20, then fine-tuned with each objective for the same optimiser steps (one epoch capped at
``--steps`` steps, batch 128, one torch thread, the CPU); the script prints the seconds per
optimiser step of each objective (best of ``--repeats`` runs, validation excluded) and its
ratio to ``ce``'s. ``ceag`` includes its one pass over the training split for the dense
parent's per-class accuracy and ``kd`` its copy of the parent, printed apart as the cost
paid once per job.

    PYTHONPATH=src python bench/objective_overhead.py --steps 100 --repeats 3
"""
from __future__ import annotations

import argparse
import copy
import time

import torch

from prunescope.catalog import objectives as registry
from prunescope.models import build_model
from prunescope.prune import prune_model
from prunescope.train import Recipe, device_splits, fit
from prunescope.train.objectives import build_objective, dense_reference


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=100, help="optimiser steps per run")
    ap.add_argument("--repeats", type=int, default=3, help="runs per objective (best kept)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    _, train, val, _ = device_splits("fashion-mnist", 5000, 0, "cpu", None)
    val = type(val)(val.x[:256], val.y[:256], val.mean, val.std)  # validation out of the way
    dense = build_model("lenet5-shrinkbench", 10, 1, seed=0)
    fit(dense, train, val, Recipe(schedule=((1, 0.01),), batch_size=128,
                                  max_steps_per_epoch=200), seed=0)
    recipe = Recipe(schedule=((1, 0.01),), batch_size=128, max_steps_per_epoch=args.steps)
    seconds: dict[str, float] = {}
    once: dict[str, float] = {}
    for name in registry.names():
        best = float("inf")
        for _ in range(args.repeats):
            model = copy.deepcopy(dense)
            res = prune_model(model, "mp", 20.0)
            t0 = time.perf_counter()
            loss = None
            if name != registry.DEFAULT:
                loss = build_objective(name, None, [dense_reference(name, dense, train, 10)])
            once[name] = time.perf_counter() - t0
            t0 = time.perf_counter()
            out = fit(model, train, val, recipe, seed=1, masks=res.masks, objective=loss)
            total = time.perf_counter() - t0
            val_s = out.history[0]["seconds"] - out.history[0]["steps"] * 128 / out.history[0][
                "images_per_s"]
            best = min(best, (total - val_s) / args.steps)
        seconds[name] = best
    for name, s in seconds.items():
        print(f"{name:>15}: {1000 * s:7.2f} ms/step  x{s / seconds[registry.DEFAULT]:.2f} of ce;"
              f" once per job: {once.get(name, 0.0):.2f} s (dense reference)")


if __name__ == "__main__":
    main()
