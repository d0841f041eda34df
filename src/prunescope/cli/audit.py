"""`prunescope audit`: prune a trained model with each method at each ratio and report what changes."""
from __future__ import annotations

import importlib
from pathlib import Path
from typing import Annotated, Optional

import torch
import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn
from rich.table import Table

from prunescope._console import console as make_console, styled, text_column
from prunescope.audit import AuditResult, audit, audit_checkpoint
from prunescope.cli._app import DataDirOpt, DeviceOpt, app
from prunescope.train import Recipe


def _csv(text: str, cast: type) -> list:
    try:
        return [cast(v.strip()) for v in text.split(",") if v.strip()]
    except ValueError as e:
        raise typer.BadParameter(f"cannot read {text!r} as a comma-separated list of {cast.__name__}") from e


def _user_model(factory: str, weights: Path, device: str) -> torch.nn.Module:
    """Build ``module:callable`` and load a state dict from ``.safetensors`` or ``.pt``."""
    mod_name, _, fn_name = factory.partition(":")
    if not fn_name:
        raise typer.BadParameter(f"--model must look like package.module:callable, got {factory!r}")
    model = getattr(importlib.import_module(mod_name), fn_name)()
    if weights.suffix == ".safetensors":
        from safetensors.torch import load_file

        state = load_file(str(weights), device=device)
    else:
        state = torch.load(weights, map_location=device, weights_only=True)
    model.load_state_dict(state)
    return model.to(device).eval()


def _print(console: Console, res: AuditResult) -> None:
    runs = Table(title="Pruned models (nominal test set)")
    for col in ("method", "ratio", "achieved", "acc dense", "acc pruned", "acc final", "agreement"):
        runs.add_column(col, justify="right")
    agree = res.agreement[res.agreement.distribution == "nominal"].set_index(["method", "ratio"]).agreement
    for r in res.runs.itertuples():
        runs.add_row(r.method, f"{r.ratio:g}", f"{r.achieved_ratio:.3f}", f"{r.accuracy_dense:.4f}",
                     f"{r.accuracy_pruned:.4f}", f"{r.accuracy_final:.4f}", f"{agree[(r.method, r.ratio)]:.4f}")
    console.print(runs)
    alpha = Table(title="Recall distortion: alpha (>1 intensifies class gaps) and worst-hit classes")
    for col in ("method", "ratio", "distribution", "alpha", "worst classes (recall change)"):
        alpha.add_column(col)
    worst = res.worst_classes.groupby(["method", "ratio", "distribution"], sort=False)
    for r in res.alphas.itertuples():
        w = worst.get_group((r.method, r.ratio, r.distribution))
        alpha.add_row(r.method, f"{r.ratio:g}", r.distribution, f"{r.alpha:.3f}",
                      ", ".join(f"{n} ({c:+.3f})" for n, c in zip(w.class_name, w.recall_change)))
    console.print(alpha)
    pot = Table(title="Prune potential (largest ratio within delta of the dense error)")
    for col in ("method", "distribution", "potential", "status"):
        pot.add_column(col)
    for r in res.prune_potential.itertuples():
        pot.add_row(r.method, r.distribution, f"{r.potential:g}", r.status)
    console.print(pot)


@app.command("audit")
def audit_cmd(
    checkpoint: Annotated[Path, typer.Argument(help="A checkpoint from `prunescope train`, or with "
                                                    "--model a state dict (.safetensors or .pt).")],
    model: Annotated[Optional[str], typer.Option(
        "--model", help="Your own model: package.module:callable returning the nn.Module whose "
                        "weights CHECKPOINT holds (needs --data).")] = None,
    data: Annotated[Optional[Path], typer.Option(
        "--data", help="Folder with train.npz and test.npz (arrays x: images, y: labels).")] = None,
    methods: Annotated[str, typer.Option("--methods", help="Comma-separated: mp,gp,up,rp.")] = "mp,gp,up,rp",
    ratios: Annotated[str, typer.Option("--ratios", help="Comma-separated compression ratios.")] = "2,4,10,20,50",
    finetune_epochs: Annotated[Optional[int], typer.Option(
        "--finetune-epochs", help="Fine-tuning epochs (0: none). Checkpoints: the SPEC 4 schedule "
                                  "scaled to N (default: full). --model: SGD lr 0.01 (default: 0).")] = None,
    distributions: Annotated[str, typer.Option(
        "--distributions", help="Comma-separated test distributions, e.g. "
                                "nominal,gaussian_noise-3,noise-0.1.")] = "nominal",
    weight_decay: Annotated[Optional[float], typer.Option(
        "--weight-decay", help="UP's eps: the decay your model was trained with (--model).")] = None,
    seed: Annotated[int, typer.Option("--seed")] = 0,
    out: Annotated[Path, typer.Option("--out", help="Folder for report.html and the CSV tables.")] = Path("runs/audit"),
    device: DeviceOpt = "cpu",
    data_dir: DataDirOpt = None,
) -> None:
    """Prune a trained model with each method at each ratio; print and write per-class recall
    changes, alpha, the worst-hit classes, prune potential and agreement, and report.html."""
    console = make_console()
    kwargs = dict(methods=_csv(methods, str), ratios=_csv(ratios, float), seed=seed, out_dir=out,
                  distributions=_csv(distributions, str))
    with Progress(text_column("{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeRemainingColumn(), console=console) as bar:
        task = bar.add_task("pruning", total=len(kwargs["methods"]) * len(kwargs["ratios"]))
        kwargs["progress"] = lambda done, total, what: bar.update(task, completed=done, description=what)
        try:
            if model is None:
                res = audit_checkpoint(checkpoint, data_dir=data_dir, finetune_epochs=finetune_epochs,
                                       device=device, weight_decay=weight_decay, **kwargs)
            else:
                if data is None:
                    raise typer.BadParameter("--model needs --data FOLDER with train.npz and test.npz")
                recipe = (Recipe(schedule=((finetune_epochs, 0.01),),
                                 weight_decay=5e-4 if weight_decay is None else weight_decay)
                          if finetune_epochs else None)
                res = audit(_user_model(model, checkpoint, device), data / "train.npz", data / "test.npz",
                            finetune=recipe, weight_decay=weight_decay, **kwargs)
        except (FileNotFoundError, KeyError, ValueError, TypeError) as e:
            console.print(styled("error:", "red", f" {e}"))
            raise typer.Exit(1) from e
    _print(console, res)
    out.mkdir(parents=True, exist_ok=True)
    for name in ("classwise", "alphas", "worst_classes", "prune_potential", "agreement", "runs"):
        getattr(res, name).to_csv(out / f"{name}.csv", index=False)
    console.print(f"report: {res.report}; tables: {out}/*.csv")
