"""Stated vs achieved compression of the authors' code's pruning (SPEC 8, issue 25).

For dense models trained with the paper-code recipe (weight decay 0, the epoch of lowest test
loss kept, the fork's normalisation), prune at stated ratios 2, 4, 10, 20, 50 with the fork's
rules (``keep_rule = "shrinkbench"``, ``up_score = "signed-5e-4"``, the gradient of one shuffled
train-mode batch of 128) and report the achieved ratio of MP and UP, the share of UP's kept
weights whose signed score is negative (kept by the symmetric threshold), and, for reference,
the achieved ratio of SPEC 3's exact rule. Masks only: nothing is fine-tuned.

Either train one model here for a fixed number of epochs of the architecture's paper schedule
(``--train-epochs``; on a CPU a ResNet-20 gets what about 20 minutes allow), or read the dense
models of a finished study (``--checkpoints``: their safetensors files, e.g. the ``train``
artifacts of ``studies/paper-lenet.toml``).

Usage::

    python bench/up_achieved.py --arch resnet20 --dataset cifar10 --train-epochs 6 \\
        --csv docs/reproduction/up_achieved_resnet20.csv
    python bench/up_achieved.py --checkpoints runs/paper-lenet/artifacts/train/*.safetensors \\
        --csv docs/reproduction/up_achieved_lenet.csv
"""
from __future__ import annotations

import argparse
import dataclasses
import time

import pandas as pd
import torch

from prunescope.catalog.protocol import PruneOptions, TrainOptions
from prunescope.prune.gradients import data_gradients
from prunescope.prune.oneshot import one_shot_masks
from prunescope.prune.params import prunable
from prunescope.prune.scores import score
from prunescope.train import Recipe, device_splits, load_checkpoint, train_on_dataset

RATIOS = (2, 4, 10, 20, 50)
FORK = PruneOptions(keep_rule="shrinkbench", up_score="signed-5e-4", rp_count="binomial")
FORK_TRAINING = TrainOptions(validation="test", normalisation="fork")


def achieved_rows(model, meta, train, seed: int) -> list[dict]:
    """One row per stated ratio: achieved ratios of the fork's MP and UP and of SPEC 3's UP."""
    grads = data_gradients(model, train, mode="shrinkbench", seed=seed)
    signed = score("up", model, prunable(model), grads=grads, signed=True)
    rows = []
    for ratio in RATIOS:
        up = one_shot_masks(model, "up", ratio, grads=grads, options=FORK, meta=meta)
        kept = sum(up.kept.values())
        negative = sum(int((s[up.masks[n]] < 0).sum()) for n, s in signed.items())
        rows.append(dict(
            model=meta.get("seed"), stated=ratio,
            mp_fork=one_shot_masks(model, "mp", ratio, options=FORK).achieved_ratio,
            up_fork=up.achieved_ratio, up_fork_negative_kept=negative / kept,
            up_exact=one_shot_masks(model, "up", ratio, grads=grads, meta=meta,
                                    options=PruneOptions()).achieved_ratio))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--arch", default="resnet20")
    ap.add_argument("--dataset", default="cifar10")
    ap.add_argument("--train-epochs", type=int, default=6,
                    help="epochs of the arch's paper schedule, scaled (Recipe.with_epochs)")
    ap.add_argument("--checkpoints", nargs="*", default=None,
                    help="dense checkpoints to read instead of training one")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--csv", default=None)
    args = ap.parse_args()
    torch.set_num_threads(1)
    rows = []
    if args.checkpoints:
        for path in args.checkpoints:
            model, meta, _ = load_checkpoint(path)
            _, train, _, _ = device_splits(meta["dataset"], int(meta["n_val"]),
                                           int(meta["split_seed"]), "cpu",
                                           training=TrainOptions.of(meta))
            rows += [r | {"arch": meta["arch"], "dataset": meta["dataset"], "epochs":
                          meta["epochs"], "test_acc": meta.get("metrics", {}).get("test_acc")}
                     for r in achieved_rows(model, meta, train, args.seed)]
    else:
        recipe = dataclasses.replace(Recipe.paper(args.arch), weight_decay=0.0).with_epochs(
            args.train_epochs)
        t0 = time.perf_counter()
        run = train_on_dataset(args.dataset, args.arch, args.seed, recipe, training=FORK_TRAINING)
        minutes = (time.perf_counter() - t0) / 60
        print(f"trained {args.arch} on {args.dataset} for {recipe.epochs} epochs "
              f"{list(recipe.schedule)} in {minutes:.1f} min: test accuracy "
              f"{run.test_accuracy:.4f}")
        _, train, _, _ = device_splits(args.dataset, 0, 0, "cpu", training=FORK_TRAINING)
        rows = [r | {"arch": args.arch, "dataset": args.dataset, "epochs": recipe.epochs,
                     "test_acc": run.test_accuracy, "train_minutes": minutes}
                for r in achieved_rows(run.model, run.meta, train, args.seed)]
    frame = pd.DataFrame(rows)
    summary = frame.groupby(["dataset", "arch", "stated"]).agg(
        models=("model", "nunique"), mp_fork=("mp_fork", "mean"), up_fork=("up_fork", "mean"),
        up_fork_negative_kept=("up_fork_negative_kept", "mean"), up_exact=("up_exact", "mean"))
    print("mean over models:")
    print(summary.to_string(float_format=lambda v: f"{v:.3f}"))
    if args.csv:
        frame.to_csv(args.csv, index=False)


if __name__ == "__main__":
    main()
