"""`prunescope audit`: prune a trained model with each method at each ratio and report what changes.

A thin wrapper over :func:`prunescope.audit.audit_checkpoint` (a prunescope checkpoint) and
:func:`prunescope.audit.audit` (``--model``: your own model and ``--data``). Every error is one
line; the audit's jobs are kept in ``--out``, so running the same command again resumes.
"""
from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Optional

import typer

from prunescope._console import console as make_console, styled
from prunescope import choices
from prunescope.catalog import methods as registry, objectives
from prunescope.cli._app import (DataDirOpt, DeviceOpt, ObjectiveOpt, ObjectiveOptionOpt,
                                 TrustPickleOpt, app, check, usable_device)

if TYPE_CHECKING:  # torch and the audit load when a command runs, not for --help
    import torch
    from rich.console import Console

    from prunescope.audit import AuditResult


def _csv(text: str, cast: type, option: str) -> list:
    from prunescope.audit import AuditError

    try:
        return [cast(v.strip()) for v in text.split(",") if v.strip()]
    except ValueError as e:
        raise AuditError(f"{option} {text!r}: not a comma-separated list of "
                         f"{'numbers' if cast is float else 'names'}") from e


def import_factory(factory: str, option: str = "--model") -> Callable[[], torch.nn.Module]:
    """The callable named ``package.module:callable``, imported with the current directory first
    on the path (as ``python -m`` does); every failure is an ``AuditError`` naming ``option``."""
    import torch

    from prunescope.audit import AuditError

    mod_name, _, fn_name = factory.partition(":")
    if not mod_name or not fn_name:
        raise AuditError(f"{option} must look like package.module:callable, got {factory!r}")
    cwd = os.getcwd()
    if cwd not in sys.path and "" not in sys.path:
        sys.path.insert(0, cwd)
    try:
        module = importlib.import_module(mod_name)
    except Exception as e:  # noqa: BLE001 -- import errors of user code take many forms
        raise AuditError(f"{option} {factory}: cannot import {mod_name!r} from {cwd} "
                         f"({type(e).__name__}: {e}); run from the folder that holds it or "
                         "install it") from e
    fn = getattr(module, fn_name, None)
    if not callable(fn):
        raise AuditError(f"{option} {factory}: {mod_name} has no callable {fn_name!r} "
                         f"({module.__file__})")

    def build() -> torch.nn.Module:
        try:
            model = fn()
        except Exception as e:  # noqa: BLE001
            raise AuditError(f"{option} {factory}: calling {fn_name}() raised "
                             f"{type(e).__name__}: {e}; it must take no arguments and return the "
                             "nn.Module") from e
        if not isinstance(model, torch.nn.Module):
            raise AuditError(f"{option} {factory}: {fn_name}() returned {type(model).__name__}, "
                             "not a torch.nn.Module")
        return model

    return build


def user_model(factory: str, weights: Path, device: str, trust_pickle: bool = False
               ) -> torch.nn.Module:
    """Build ``package.module:callable`` (:func:`import_factory`) and load its weights from
    ``.safetensors`` or a ``.pt`` state dict (:func:`prunescope.train.load_state_dict`: weights
    only unless ``trust_pickle``); every failure is an ``AuditError`` naming what to fix."""
    import torch

    from prunescope.audit import AuditError

    model = import_factory(factory)()
    if not weights.is_file():
        raise AuditError(f"no weights file at {weights}")
    from prunescope.train import CheckpointError, load_state_dict

    try:
        state = load_state_dict(weights, device, trust_pickle=trust_pickle)
    except CheckpointError as e:
        raise AuditError(f"{e}; save it again with torch.save(model.state_dict(), path)") from e
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise AuditError(f"{weights} holds a {type(state).__name__}, not a state dict; save it "
                         "with torch.save(model.state_dict(), path)")
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        first = str(e).splitlines()[1].strip() if len(str(e).splitlines()) > 1 else str(e)
        raise AuditError(f"the weights in {weights} do not fit the model {factory} builds: "
                         f"{first}") from e
    return model.to(device).eval()


def _print(con: Console, res: AuditResult) -> None:
    from rich.table import Table

    runs = Table(title="Pruned models (nominal test set)")
    for col in ("method", "ratio", "achieved", "acc dense", "acc pruned", "acc final",
                "agreement", "steps"):
        runs.add_column(col, justify="right")
    agree = res.agreement[res.agreement.distribution == "nominal"].set_index(["method", "ratio"]).agreement
    for r in res.runs.itertuples():
        runs.add_row(r.method, f"{r.ratio:g}", f"{r.achieved_ratio:.3f}", f"{r.accuracy_dense:.4f}",
                     f"{r.accuracy_pruned:.4f}", f"{r.accuracy_final:.4f}",
                     f"{agree[(r.method, r.ratio)]:.4f}", str(r.finetune_steps))
    con.print(runs)
    alpha = Table(title="Recall distortion: alpha (>1 intensifies class gaps) and worst-hit classes")
    for col in ("method", "ratio", "distribution", "alpha", "worst classes (recall change)"):
        alpha.add_column(col)
    worst = res.worst_classes.groupby(["method", "ratio", "distribution"], sort=False)
    for r in res.alphas.itertuples():
        w = worst.get_group((r.method, r.ratio, r.distribution))
        alpha.add_row(r.method, f"{r.ratio:g}", r.distribution, f"{r.alpha:.3f}",
                      ", ".join(f"{n} ({c:+.3f})" for n, c in zip(w.class_name, w.recall_change)))
    con.print(alpha)
    pot = Table(title="Prune potential (largest ratio within delta of the dense error)")
    for col in ("method", "distribution", "potential", "status"):
        pot.add_column(col)
    for r in res.prune_potential.itertuples():
        pot.add_row(r.method, r.distribution, f"{r.potential:g}", r.status)
    con.print(pot)
    for w in res.warnings:
        con.print(styled("warning:", "yellow", f" {w}"), highlight=False)


@app.command("audit")
def audit_cmd(
    checkpoint: Annotated[Path, typer.Argument(help="A checkpoint from `prunescope train`, or with "
                                                    "--model a state dict (.safetensors or .pt).")],
    model: Annotated[Optional[str], typer.Option(
        "--model", help="Your own model: package.module:callable (imported from the current "
                        "directory) returning the nn.Module whose weights CHECKPOINT holds "
                        "(needs --data).")] = None,
    data: Annotated[Optional[Path], typer.Option(
        "--data", help="Folder with train/ and test/ folders of one sub-folder of PNG/JPEG "
                        "images per class, or with train.npz and test.npz (arrays x: images, "
                        "y: labels).")] = None,
    methods: Annotated[str, typer.Option("--methods", help="Comma-separated one-shot methods.")
                       ] = ",".join(registry.names("one-shot")),
    ratios: Annotated[str, typer.Option("--ratios", help="Comma-separated compression ratios.")] = "2,4,10,20,50",
    finetune_epochs: Annotated[Optional[int], typer.Option(
        "--finetune-epochs", help="Fine-tuning epochs (0: none). Checkpoints: default one epoch "
                                  "of the SPEC 4 recipe capped at 100 steps (minutes on a CPU); "
                                  "N: the SPEC 4 schedule scaled to N full epochs (15: the "
                                  "paper's LeNet-5 fine-tuning). --model: SGD lr 0.01 for N "
                                  "epochs (default: 0).")] = None,
    distributions: Annotated[str, typer.Option(
        "--distributions", help="Comma-separated test distributions, e.g. "
                                "nominal,gaussian_noise-3,noise-0.1.")] = "nominal",
    weight_decay: Annotated[Optional[float], typer.Option(
        "--weight-decay", help="UP's eps: the decay your model was trained with (--model).")] = None,
    seed: Annotated[int, typer.Option("--seed")] = 0,
    workers: Annotated[int, typer.Option(
        "--workers", help="Jobs run at once, each in a process of one torch thread (1: in this "
                          "process).")] = 1,
    objective: ObjectiveOpt = objectives.DEFAULT,
    objective_option: ObjectiveOptionOpt = None,
    out: Annotated[Path, typer.Option(
        "--out", help="The audit's folder: its store (rerun to resume), report/report.html and "
                      "the CSV tables.")] = Path("runs/audit"),
    device: DeviceOpt = choices.DEFAULT_DEVICE,
    data_dir: DataDirOpt = None,
    trust_pickle: TrustPickleOpt = False,
) -> None:
    """Prune a trained model with each method at each ratio; print and write per-class recall
    changes, alpha, the worst-hit classes, prune potential and agreement, and report.html.
    Prints what will run and an estimate of how long first; rerun the same command to resume."""
    from prunescope.audit import AuditError, audit, audit_checkpoint
    from prunescope.cli.prune import objective_options
    from prunescope.data.folders import ImageFolderError
    from prunescope.study.progress import display_for
    from prunescope.train import Recipe

    con, err = make_console(), make_console(stderr=True)
    try:
        device = usable_device(device, AuditError)
        ratio_list = _csv(ratios, float, "--ratios")
        for r in ratio_list:
            check("--ratios", r, choices.ratio_error(r), AuditError)
        dist_list = _csv(distributions, str, "--distributions")
        for d in dist_list:
            check("--distributions", d, choices.distribution_error(d), AuditError)
        kwargs = dict(methods=_csv(methods, str, "--methods"), ratios=ratio_list,
                      seed=seed, out_dir=out, distributions=dist_list,
                      workers=workers, log=err.file, display=display_for(err),
                      objective=objective.lower(),
                      objective_options=objective_options(objective.lower(), objective_option))
        if model is None:
            if data is not None:
                raise AuditError("--data goes with --model (your own model); a prunescope "
                                 "checkpoint brings its dataset")
            res = audit_checkpoint(checkpoint, data_dir=data_dir, finetune_epochs=finetune_epochs,
                                   device=device, weight_decay=weight_decay,
                                   trust_pickle=trust_pickle, **kwargs)
        else:
            if data is None:
                raise AuditError("--model needs --data FOLDER with train/ and test/ image folders (one "
                                 "sub-folder per class) or train.npz and test.npz")
            if finetune_epochs is not None and finetune_epochs < 0:
                raise AuditError(f"--finetune-epochs {finetune_epochs} must be >= 0")
            recipe = (Recipe(schedule=((finetune_epochs, 0.01),),
                             weight_decay=5e-4 if weight_decay is None else weight_decay)
                      if finetune_epochs else None)
            from prunescope.data.folders import read_split

            train = read_split(data, "train")
            classes = getattr(train, "classes", None)
            test = read_split(data, "test", classes)
            net = user_model(model, checkpoint, device, trust_pickle)
            res = audit(net, train, test, finetune=recipe, class_names=classes,
                        weight_decay=weight_decay, name=Path(model.partition(":")[0]).name, **kwargs)
    except (AuditError, ImageFolderError) as e:
        err.print(styled("error:", "red", f" {e}"), highlight=False)
        raise typer.Exit(1) from e
    _print(con, res)
    for name in ("classwise", "alphas", "worst_classes", "prune_potential", "agreement", "runs",
                 "changed_images"):
        getattr(res, name).to_csv(out / f"{name}.csv", index=False)
    con.print(f"report: {res.report}; tables: {out}/*.csv", highlight=False)
