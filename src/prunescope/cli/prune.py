"""`prunescope prune`: one-shot prune a trained checkpoint, fine-tune with the mask held, save it."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from prunescope import choices, data as D
from prunescope._console import console as make_console, styled
from prunescope.cli._app import (DataDirOpt, DeviceOpt, ObjectiveOpt, ObjectiveOptionOpt,
                                 TrustPickleOpt, app, check, invalid,
                                 usable_device)
from prunescope.catalog import methods as registry, objectives
from prunescope.catalog.protocol import (KEEP_RULES, RP_COUNTS, UP_SCORES, PruneOptions,
                                         TrainOptions)


def _default_out(checkpoint: Path, method: str, ratio: float, scope: str) -> Path:
    suffix = "" if scope == "global" else f"-{scope}"
    return Path("runs/prune") / f"{checkpoint.name.removesuffix('.safetensors')}-{method}-r{ratio:g}{suffix}.safetensors"


@app.command("prune")
def prune_cmd(
    checkpoint: Annotated[Path, typer.Argument(help="Dense checkpoint from `prunescope train` "
                                                    "(PATH.safetensors with PATH.safetensors.json).")],
    method: Annotated[str, typer.Option("--method", help=f"One of: "
                                        f"{', '.join(registry.names('one-shot'))}.")
                      ] = registry.names("one-shot")[0],
    ratio: Annotated[float, typer.Option(
        "--ratio", help="Compression ratio: all parameters / nonzero parameters (> 1).")] = 10.0,
    scope: Annotated[str, typer.Option(
        "--scope", help=f"One of: {', '.join(choices.SCOPES)}.")] = "global",
    finetune_epochs: Annotated[Optional[int], typer.Option(
        "--finetune-epochs", help="Fine-tuning epochs; the SPEC 4 fine-tuning schedule of the "
                                  "architecture is scaled to N epochs (default: the full schedule; "
                                  "0: no fine-tuning).")] = None,
    max_steps_per_epoch: Annotated[Optional[int], typer.Option(
        "--max-steps-per-epoch", help="Cap the optimiser steps per fine-tuning epoch (quick runs).")] = None,
    grad_mode: Annotated[str, typer.Option(
        "--grad-mode",
        help=f"Data gradient of GP/UP: {', '.join(choices.GRADIENT_MODES)}.")] = "full",
    grad_batches: Annotated[Optional[int], typer.Option(
        "--grad-batches", help="Batches of 128 for --grad-mode batches.")] = None,
    eps: Annotated[Optional[float], typer.Option(
        "--eps", help="UP's eps; default: the weight decay recorded in the checkpoint.")] = None,
    seed: Annotated[int, typer.Option("--seed", help="Seeds RP, gradient batches and fine-tuning "
                                                     "data order.")] = 0,
    prune_classifier: Annotated[bool, typer.Option("--prune-classifier",
                                                   help="Also prune the final Linear.")] = False,
    prune_biases: Annotated[bool, typer.Option("--prune-biases",
                                               help="Also prune Conv/Linear biases.")] = False,
    keep_rule: Annotated[str, typer.Option(
        "--keep-rule", help=f"One of: {', '.join(KEEP_RULES)} (shrinkbench: the authors' code's "
                            "keep fraction and symmetric threshold, docs/pruning.md).")] = "exact",
    up_score: Annotated[str, typer.Option(
        "--up-score", help=f"One of: {', '.join(UP_SCORES)} (signed-5e-4: the authors' "
                           "code's UP score).")] = "absolute",
    rp_count: Annotated[str, typer.Option(
        "--rp-count", help=f"One of: {', '.join(RP_COUNTS)}.")] = "exact",
    objective: ObjectiveOpt = objectives.DEFAULT,
    objective_option: ObjectiveOptionOpt = None,
    out: Annotated[Optional[Path], typer.Option(
        "--out", help="Pruned checkpoint path (default runs/prune/NAME-METHOD-rRATIO.safetensors); "
                      "masks are stored in it, the sidecar is PATH.json.")] = None,
    device: DeviceOpt = choices.DEFAULT_DEVICE,
    data_dir: DataDirOpt = None,
    trust_pickle: TrustPickleOpt = False,
) -> None:
    """Prune CHECKPOINT to --ratio with --method, fine-tune with the mask held, write the pruned
    checkpoint with its masks, and print the achieved ratio and test accuracy before and after."""
    from prunescope.prune.finetune import finetune_recipe, prune_and_finetune
    from prunescope.train import TrainingDiverged, save_checkpoint

    console = make_console()
    method = method.lower()
    _check_options(method, ratio, scope, grad_mode, grad_batches, finetune_epochs)
    options = _prune_options(prune_classifier, prune_biases, keep_rule, up_score, rp_count)
    objective = objective.lower()
    objective_opts = objective_options(objective, objective_option)
    model, meta, (train, val, test) = _dense_and_splits(
        console, checkpoint, usable_device(device), trust_pickle, data_dir, options, ratio)
    dataset = meta["dataset"]
    recipe = finetune_recipe(meta["arch"], finetune_epochs or None, max_steps_per_epoch)
    do_finetune = finetune_epochs != 0
    console.print(f"pruning {checkpoint} ({meta['arch']}, {dataset}) with {method.upper()} to "
                  f"ratio {ratio:g} ({scope}); fine-tuning "
                  + (f"{recipe.epochs} epochs {list(recipe.schedule)}" if do_finetune else "off"))

    def progress(step: int, total: int, inf: dict[str, Any]) -> None:
        if "val_loss" in inf:
            console.print(f"epoch {inf['epoch']:>3}  lr {inf['lr']:.4g}  train loss "
                          f"{inf['train_loss']:.4f}  val loss {inf['val_loss']:.4f}  val acc "
                          f"{inf['val_acc']:.4f}")

    try:
        run = prune_and_finetune(
            model, meta, train, val, test, method, ratio, scope=scope, recipe=recipe,
            finetune=do_finetune, grad_mode=grad_mode,
            grad_batches=grad_batches, eps=eps, seed=seed, options=options, progress=progress,
            objective=objective, objective_options=objective_opts)
    except (ValueError, TrainingDiverged) as e:
        console.print(styled("error:", "red", f" {e}"))
        raise typer.Exit(1) from e
    out = out if out is not None else _default_out(checkpoint, method, ratio, scope)
    path = save_checkpoint(out, run.model, run.meta, masks=run.result.masks)
    _show(console, run, do_finetune)
    console.print(f"checkpoint: {path} (+ {path.name}.json, masks inside)")


def _prune_options(prune_classifier: bool, prune_biases: bool, keep_rule: str, up_score: str,
                   rp_count: str) -> PruneOptions:
    """The prunable set and mask rule of the command's flags, each checked (one line naming
    the flag when one is refused)."""
    for flag, value, allowed in (("--keep-rule", keep_rule, KEEP_RULES),
                                 ("--up-score", up_score, UP_SCORES),
                                 ("--rp-count", rp_count, RP_COUNTS)):
        check(flag, value, choices.choice_error(value, allowed))
    try:
        return PruneOptions(prune_classifier, prune_biases, keep_rule, up_score, rp_count)
    except ValueError as e:
        raise typer.BadParameter(str(e), param_hint="--keep-rule") from None


def _dense_and_splits(console: Any, checkpoint: Path, device: str, trust_pickle: bool,
                      data_dir: Any, options: PruneOptions, ratio: float) -> tuple[Any, ...]:
    """``(model, meta, (train, val, test))`` of a dense ``checkpoint``: the model on ``device``,
    its sidecar, and the splits it was trained on (its hold-out or, for the authors' protocol,
    the test split; its normalisation). Exits with one line when the checkpoint cannot be read,
    is not dense, cannot reach ``ratio`` (SPEC 3's exact rule) or its data cannot be loaded."""
    from prunescope.prune import count_parameters, prunable
    from prunescope.train import device_splits, load_checkpoint

    try:
        model, meta, old_masks = load_checkpoint(checkpoint, device=device, trust_pickle=trust_pickle)
    except (FileNotFoundError, ValueError) as e:
        console.print(styled("error:", "red", f" {e}"))
        raise typer.Exit(1) from e
    _check_dense(console, checkpoint, meta, old_masks)
    n_prunable = sum(p.numel() for p in prunable(model, prune_classifier=options.prune_classifier,
                                                 prune_biases=options.prune_biases).values())
    reach = choices.reach_error(count_parameters(model), n_prunable, ratio,
                                f"{meta['arch']} on {meta['dataset']}")
    if reach is not None and options.keep_rule == "exact":
        console.print(styled("error:", "red", " " + invalid("--ratio", ratio, reach)))
        raise typer.Exit(1)
    n_val, split_seed = int(meta.get("n_val", 5000)), int(meta.get("split_seed", 0))
    try:
        return model, meta, device_splits(meta["dataset"], n_val, split_seed, device, data_dir,
                                          imbalance=meta.get("imbalance"),
                                          training=TrainOptions.of(meta))[1:]
    except (D.FetchError, ValueError, FileNotFoundError) as e:
        console.print(styled("error:", "red", f" {e}"))
        raise typer.Exit(1) from e


def _check_dense(console: Any, checkpoint: Path, meta: dict[str, Any], masks: Any) -> None:
    """Exit with one line unless ``checkpoint`` is a dense model whose sidecar names its
    dataset (written by ``prunescope train``)."""
    if masks:
        console.print(styled("error:", "red", f" {checkpoint} is already pruned; prune the dense "
                             "parent (one-shot: every ratio starts from the same dense "
                             "checkpoint)"))
        raise typer.Exit(1)
    if "dataset" not in meta:
        console.print(styled("error:", "red", f" the sidecar of {checkpoint} names no 'dataset'; "
                             "it was not written by `prunescope train`"))
        raise typer.Exit(1)


def objective_options(objective: str, given: list[str] | None) -> dict[str, float]:
    """``--objective`` checked and its ``--objective-option NAME=VALUE`` pairs as numbers,
    checked against the objective's record (one-line refusals)."""
    check("--objective", objective, choices.objective_error(objective))
    out: dict[str, float] = {}
    for item in given or ():
        name, sep, value = item.partition("=")
        try:
            out[name.strip()] = float(value)
        except ValueError:
            sep = ""
        if not sep:
            raise typer.BadParameter(f"--objective-option {item!r}: give NAME=NUMBER, e.g. "
                                     "weight=0.5")
    try:
        return objectives.objective(objective).resolve(out)
    except ValueError as e:
        raise typer.BadParameter(f"--objective-option: {e}") from None


def _check_options(method: str, ratio: float, scope: str, grad_mode: str,
                   grad_batches: int | None, finetune_epochs: int | None) -> None:
    """Every option of ``prunescope prune`` checked with :mod:`prunescope.choices` (one line
    naming the option when one is refused)."""
    check("--method", method, choices.method_error(method, "one-shot"))
    check("--scope", scope, choices.choice_error(scope, choices.SCOPES))
    check("--grad-mode", grad_mode, choices.choice_error(grad_mode, choices.GRADIENT_MODES))
    if not registry.method(method).needs_gradients and (grad_mode != "full"
                                                        or grad_batches is not None):
        raise typer.BadParameter(f"--grad-mode/--grad-batches only apply to methods that read "
                                 f"the data gradient "
                                 f"({', '.join(registry.names(needs_gradients=True))}), not "
                                 f"{registry.method(method).label}")
    check("--grad-batches", grad_batches, choices.grad_batches_error(grad_mode, grad_batches))
    if finetune_epochs is not None and finetune_epochs < 0:
        raise typer.BadParameter(f"--finetune-epochs must be >= 0, got {finetune_epochs}")
    check("--ratio", ratio, choices.ratio_error(ratio))


def _show(console: Any, run: Any, finetuned: bool) -> None:
    """The pruned layers, the achieved ratio and the test accuracies of ``run``
    (:class:`~prunescope.prune.finetune.PruneRun`)."""
    from rich.table import Table
    from rich.text import Text

    res = run.result
    table = Table(title="pruned layers (kept / total, density)")
    for col in ("parameter", "kept", "total", "density"):
        table.add_column(col, justify="right")
    for name, density in res.densities.items():
        table.add_row(name, str(res.kept[name]), str(res.masks[name].numel()), f"{density:.4f}")
    console.print(table)
    console.print(Text.assemble(
        f"requested ratio {res.requested_ratio:g}, achieved ratio ",
        (f"{res.achieved_ratio:.4f}", "bold"),
        f" ({res.n_nonzero} of {res.n_total} parameters nonzero)"))
    console.print(Text.assemble(
        f"test accuracy: dense {run.acc_dense:.4f}, pruned ",
        *((f"{run.acc_pruned:.4f}, fine-tuned ", (f"{run.acc_finetuned:.4f}", "bold"))
          if finetuned else ((f"{run.acc_pruned:.4f}", "bold"),))))
