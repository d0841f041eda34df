"""`prunescope train`: train one model with the SPEC 4 recipe, save it, print test recall."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from prunescope import choices, data as D
from prunescope._console import console as make_console, styled, text_column
from prunescope.cli._app import DataDirOpt, DeviceOpt, app, check, usable_device
from prunescope.catalog import architectures


@app.command("train")
def train_cmd(
    dataset: Annotated[str, typer.Option("--dataset", help=f"One of: {', '.join(D.names())}.")],
    arch: Annotated[str, typer.Option("--arch", help=f"One of: {', '.join(architectures.names())}.")],
    seed: Annotated[int, typer.Option("--seed", help="Model seed: initialisation and data order.")] = 0,
    epochs: Annotated[Optional[int], typer.Option(
        "--epochs", help="Shorten (or lengthen) the SPEC 4 schedule to this many epochs, "
                         "scaling every learning-rate block proportionally.")] = None,
    max_steps_per_epoch: Annotated[Optional[int], typer.Option(
        "--max-steps-per-epoch", help="Cap the optimiser steps per epoch (quick runs).")] = None,
    out: Annotated[Optional[Path], typer.Option(
        "--out", help="Checkpoint path (default runs/train/DATASET-ARCH-seedSEED.safetensors); "
                      "the sidecar is PATH.json.")] = None,
    device: DeviceOpt = choices.DEFAULT_DEVICE,
    data_dir: DataDirOpt = None,
    n_val: Annotated[int, typer.Option("--n-val", help="Validation images held out of train.")] = 5000,
    threads: Annotated[Optional[int], typer.Option(
        "--threads", help="CPU threads for torch (default: torch's choice; 1 is fastest on a "
                          "busy shared machine).")] = None,
) -> None:
    """Train one model with the SPEC 4 recipe; save the checkpoint; print test accuracy and
    per-class recall."""
    import numpy as np
    import torch
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn
    from rich.table import Table
    from rich.text import Text

    from prunescope.train import Recipe, TrainingDiverged, train_on_dataset

    console = make_console()
    if dataset not in D.names():
        raise typer.BadParameter(f"unknown dataset {dataset!r}; choose from {', '.join(D.names())}")
    check("--arch", arch, choices.choice_error(arch, architectures.names()))
    check("--arch", arch, choices.arch_error(dataset, arch))
    device = usable_device(device)
    if threads is not None:
        if threads < 1:
            raise typer.BadParameter(f"--threads must be >= 1, got {threads}")
        torch.set_num_threads(threads)
    recipe = Recipe.paper(arch)
    if epochs is not None:
        recipe = recipe.with_epochs(epochs)
    if max_steps_per_epoch is not None:
        recipe = Recipe.from_dict({**recipe.to_dict(), "max_steps_per_epoch": max_steps_per_epoch})
    out = out if out is not None else Path("runs/train") / f"{dataset}-{arch}-seed{seed}.safetensors"
    console.print(f"training {arch} on {dataset}, seed {seed}, {recipe.epochs} epochs "
                  f"{list(recipe.schedule)}, device {device}")

    columns = (text_column("{task.description}"), BarColumn(), MofNCompleteColumn(),
               text_column("{task.fields[status]}"), TimeRemainingColumn())
    with Progress(*columns, console=console) as bars:
        task = bars.add_task("steps", total=None, status="")

        def progress(step: int, total: int, info: dict[str, Any]) -> None:
            if "val_loss" in info:
                console.print(
                    f"epoch {info['epoch']:>3}  lr {info['lr']:.4g}  train loss "
                    f"{info['train_loss']:.4f}  val loss {info['val_loss']:.4f}  val acc "
                    f"{info['val_acc']:.4f}  {info['images_per_s']:.0f} img/s")
            elif "loss" in info:  # read every sync_every-th step only
                bars.update(task, completed=step, total=total,
                            status=f"epoch {info['epoch']} loss {info['loss']:.3f}")
            else:
                bars.update(task, completed=step, total=total)

        try:
            run = train_on_dataset(dataset, arch, seed, recipe, device=device, data_dir=data_dir,
                                   n_val=n_val, progress=progress)
        except (TrainingDiverged, D.FetchError, ValueError) as e:
            console.print(styled("error:", "red", f" {e}"))
            raise typer.Exit(1) from e
    path = run.save(out)
    recall = run.test_recall
    acc = run.test_accuracy
    table = Table(title=f"test recall per class ({dataset}, {arch}, seed {seed})")
    for col in ("class", "name", "support", "recall", "recall - acc"):
        table.add_column(col, justify="right")
    support = run.confusion.sum(axis=1)
    for c, name in enumerate(run.classes):
        table.add_row(str(c), name, str(int(support[c])), f"{recall[c]:.4f}", f"{recall[c] - acc:+.4f}")
    console.print(table)
    console.print(Text.assemble(
        f"best epoch {run.fit.best_epoch} (lowest validation loss); test accuracy ",
        (f"{acc:.4f}", "bold"), f"; recall variance {np.var(recall):.3g}"))
    console.print(f"checkpoint: {path} (+ {path.name}.json)")
