"""Time the pruning engine on ResNet-56 (issue 3) and write docs/benchmarks/pruning.md.

Measured in one run, on one device:

1. scoring (MP, GP, UP, RP) and masking (global and layer scope, ratio 10) of ResNet-56's
   848,304 prunable weights, best of ``--repeats`` after one warm-up;
2. the data-gradient pass GP and UP need: eval-mode images/s over ``--grad-images`` images
   (the default "full" mode visits the 45,000 CIFAR-10 training images, extrapolated from that
   rate) and the one-batch "shrinkbench" mode;
3. fine-tuning overhead of holding masks: ``prunescope.train.fit`` with and without masks on
   the same data and recipe (SGD Nesterov 0.9, weight decay 5e-4, batch 128), alternating,
   best seconds per training image of ``--ft-repeats`` runs each, plus a direct timing of the
   per-step mask multiplications that ``fit`` adds.

Every timing is reported as wall seconds and as process CPU seconds (all threads).

Images are random CIFAR-shaped uint8 (timings do not depend on the pixel values).

Usage: python bench/prune_timing.py [--device cpu|cuda] [--repeats 5] [--ft-steps 3] [--ft-repeats 3] [--threads N]
       [--out docs/benchmarks/pruning.md]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import torch

from prunescope.data.device import DeviceImages
from prunescope.models import build_model
from prunescope.catalog import methods as registry
from prunescope.prune import SCOPES, data_gradients, make_masks, prunable, score
from prunescope.train import Recipe, fit

CIFAR_MEAN, CIFAR_STD = (0.491, 0.482, 0.447), (0.247, 0.243, 0.262)
FULL_TRAIN_IMAGES = 45_000  # CIFAR-10 training split minus the 5,000-image validation hold-out


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(fn, device: torch.device, repeats: int, warmup: bool = True
           ) -> tuple[float, float, object]:
    """Best (minimum) wall seconds and best process CPU seconds (all threads) of ``fn()`` over
    ``repeats`` runs (after one warm-up run unless ``warmup=False``), and the last result.

    The minimum is the least disturbed run: on a shared machine wall seconds include waiting
    for a core, and other jobs inflate CPU seconds too (cache, thread spinning)."""
    out = fn() if warmup else None
    walls, cpus = [], []
    for _ in range(repeats):
        _sync(device)
        t0, c0 = time.perf_counter(), time.process_time()
        out = fn()
        _sync(device)
        walls.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - c0)
    return min(walls), min(cpus), out


def _images(n: int, seed: int, device: torch.device) -> DeviceImages:
    gen = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 256, (n, 32, 32, 3), generator=gen, dtype=torch.uint8)
    return DeviceImages(x, torch.randint(0, 10, (n,), generator=gen), CIFAR_MEAN, CIFAR_STD, device)


def run(device: torch.device, repeats: int, grad_images: int, ft_steps: int, ft_repeats: int
        ) -> dict:
    model = build_model("resnet56", 10, 3, seed=0).to(device)
    params = prunable(model)
    results: dict = {"device": str(device), "prunable_weights": sum(p.numel() for p in params.values())}

    images = _images(grad_images, 1, device)
    t_grad, c_grad, grads = _timed(lambda: data_gradients(model, images, batch_size=128),
                                   device, 1)
    t_sb, c_sb, _ = _timed(lambda: data_gradients(model, images, mode="shrinkbench"), device,
                           min(repeats, 2))
    results["gradient"] = {
        "full_wall_s_per_image": t_grad / grad_images,
        "full_cpu_s_per_image": c_grad / grad_images,
        "full_pass_45k_wall_s_extrapolated": FULL_TRAIN_IMAGES * t_grad / grad_images,
        "full_pass_45k_cpu_s_extrapolated": FULL_TRAIN_IMAGES * c_grad / grad_images,
        "shrinkbench_wall_s": t_sb,
        "shrinkbench_cpu_s": c_sb,
    }

    rows = {}
    for method in registry.names("one-shot"):
        t_score, c_score, scores = _timed(
            lambda m=method: score(m, model, params, grads=grads, eps=5e-4, seed=0), device, repeats)
        row = {"score_wall_s": t_score, "score_cpu_s": c_score}
        for scope in SCOPES:
            row[f"mask_{scope}_wall_s"], row[f"mask_{scope}_cpu_s"], _ = _timed(
                lambda s=scores, sc=scope: make_masks(model, s, 10.0, scope=sc), device, repeats)
        rows[method] = row
    results["score_and_mask"] = rows

    masks = make_masks(model, score("mp", model, params), 10.0).masks
    recipe = Recipe(schedule=((1, 0.01),), batch_size=128, max_steps_per_epoch=ft_steps,
                    val_batch_size=128)
    n_train = 128 * ft_steps
    train, val = _images(n_train, 2, device), _images(128, 3, device)
    dense_state = {k: v.clone() for k, v in model.state_dict().items()}
    walls: dict[str, list[float]] = {"no_masks": [], "masks": []}
    cpus: dict[str, list[float]] = {"no_masks": [], "masks": []}
    fit(model, train, val, recipe, seed=0)  # warm-up
    for _ in range(ft_repeats):
        for kind in ("no_masks", "masks"):
            model.load_state_dict(dense_state)
            wall, cpu, _ = _timed(
                lambda k=kind: fit(model, train, val, recipe, seed=0,
                                   masks=masks if k == "masks" else None),
                device, 1, warmup=False)
            walls[kind].append(wall / n_train)
            cpus[kind].append(cpu / n_train)
    med_w = {k: min(v) for k, v in walls.items()}
    med_c = {k: min(v) for k, v in cpus.items()}

    # the work fit adds per step when masks are held, measured directly (49 tensors, 848k weights)
    pairs = [(p, masks[n].to(device=p.device, dtype=p.dtype)) for n, p in params.items()]
    for p, _ in pairs:
        p.grad = torch.ones_like(p)

    def hold() -> None:
        with torch.no_grad():
            for p, m in pairs:
                p.grad.mul_(m)
                p.mul_(m)

    t_hold, c_hold, _ = _timed(hold, device, 20)
    results["finetune"] = {
        "steps_per_run": ft_steps,
        "runs_each": ft_repeats,
        "wall_s_per_image": med_w,
        "cpu_s_per_image": med_c,
        "overhead_wall_percent": 100.0 * (med_w["masks"] / med_w["no_masks"] - 1.0),
        "overhead_cpu_percent": 100.0 * (med_c["masks"] / med_c["no_masks"] - 1.0),
        "mask_ops_per_step_wall_s": t_hold,
        "mask_ops_per_step_cpu_s": c_hold,
        "mask_ops_percent_of_step_cpu": 100.0 * c_hold / (128 * med_c["no_masks"]),
        "runs_wall_s_per_image": walls,
        "runs_cpu_s_per_image": cpus,
    }
    return results


def markdown(results: dict, command: str) -> str:
    g, f = results["gradient"], results["finetune"]
    runs = f["runs_cpu_s_per_image"]["no_masks"]
    spread = 100.0 * (max(runs) / min(runs) - 1.0)
    lines = [
        "# Pruning engine timings (ResNet-56)",
        "",
        "Written by `bench/prune_timing.py` (issue 3). Command:",
        "",
        f"    {command}",
        "",
        f"Device: {results['device']}; {results['machine']}. Load average at the start: "
        f"{results['load_average']}. torch {results['torch']}, {results['threads']} threads.",
        "Wall = elapsed seconds; CPU = process CPU seconds over all threads. On a shared machine "
        "the wall times include waiting for a core, so compare CPU times.",
        *([] if results["device"].startswith("cuda") else [
            "", "No GPU was measured here (no CUDA device on this machine); "
            "`--device cuda` runs the same measurements on one."]),
        "",
        f"## Score and mask ({results['prunable_weights']:,} prunable weights, ratio 10)",
        "",
        "Best of the repeats after one warm-up. GP and UP reuse one precomputed gradient "
        "(below), so their score time excludes the gradient pass.",
        "",
        "| method | score wall / CPU (s) | mask global wall / CPU (s) | mask layer wall / CPU (s) |",
        "|---|---|---|---|",
    ]
    for method, r in results["score_and_mask"].items():
        lines.append(
            f"| {method.upper()} | {r['score_wall_s']:.4f} / {r['score_cpu_s']:.4f} | "
            f"{r['mask_global_wall_s']:.3f} / {r['mask_global_cpu_s']:.3f} | "
            f"{r['mask_layer_wall_s']:.3f} / {r['mask_layer_cpu_s']:.3f} |")
    lines += [
        "",
        "## Data gradient for GP and UP",
        "",
        f"* full mode (eval-mode BN, batch 128): {1e3 * g['full_wall_s_per_image']:.1f} ms wall / "
        f"{1e3 * g['full_cpu_s_per_image']:.1f} ms CPU per image; one pass over the 45,000 "
        "CIFAR-10 training images extrapolates to about "
        f"{g['full_pass_45k_cpu_s_extrapolated']:.0f} CPU seconds "
        f"({g['full_pass_45k_wall_s_extrapolated']:.0f} s wall on this shared machine);",
        f"* shrinkbench mode (one train-mode batch of 128): {g['shrinkbench_wall_s']:.2f} s wall / "
        f"{g['shrinkbench_cpu_s']:.2f} s CPU.",
        "",
        "## Fine-tuning overhead of holding masks",
        "",
        f"`prunescope.train.fit`, SGD Nesterov 0.9, weight decay 5e-4, batch 128, "
        f"{f['steps_per_run']} steps per run plus a 128-image validation, {f['runs_each']} runs each "
        "alternating "
        "(no masks, masks); best run's seconds per training image.",
        "",
        "| | wall ms/image | CPU ms/image |",
        "|---|---|---|",
        f"| no masks | {1e3 * f['wall_s_per_image']['no_masks']:.2f} | "
        f"{1e3 * f['cpu_s_per_image']['no_masks']:.2f} |",
        f"| masks held (grad *= mask, weight *= mask each step) | "
        f"{1e3 * f['wall_s_per_image']['masks']:.2f} | {1e3 * f['cpu_s_per_image']['masks']:.2f} |",
        "",
        f"Whole-run difference with masks: {f['overhead_cpu_percent']:+.1f}% CPU time "
        f"({f['overhead_wall_percent']:+.1f}% wall), while the unmasked runs alone spread by "
        f"{spread:.1f}% CPU (slowest / fastest). The added work is therefore also timed directly: "
        "multiplying the 49 gradients and "
        f"weights by their masks once (one step's extra work) takes "
        f"{1e3 * f['mask_ops_per_step_wall_s']:.2f} ms wall / {1e3 * f['mask_ops_per_step_cpu_s']:.2f} ms "
        f"CPU, {f['mask_ops_percent_of_step_cpu']:.2f}% of the CPU time of one unmasked "
        "128-image step.",
        "",
        "Raw numbers:",
        "",
        "```json",
        json.dumps(results, indent=1),
        "```",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--grad-images", type=int, default=256,
                    help="images of the timed full-mode gradient pass")
    ap.add_argument("--ft-steps", type=int, default=3, help="optimiser steps per fine-tuning run")
    ap.add_argument("--ft-repeats", type=int, default=3, help="fine-tuning runs with and without masks")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    ap.add_argument("--out", type=Path, default=None, help="write the Markdown report here")
    args = ap.parse_args(argv)
    device = torch.device(args.device)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    if device.type == "cuda" and not torch.cuda.is_available():
        sys.exit("--device cuda was given but no CUDA device is visible; use --device cpu")
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    results = run(device, args.repeats, args.grad_images, args.ft_steps, args.ft_repeats)
    results |= {
        "machine": (torch.cuda.get_device_name(device) if device.type == "cuda"
                    else f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs"),
        "load_average": [round(x, 2) for x in load] if load else None,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
    }
    command = "python bench/prune_timing.py " + " ".join(argv if argv is not None else sys.argv[1:])
    text = markdown(results, command.strip())
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
