"""Training throughput: the naive one-model baseline against prunescope's packs (issue 7).

In one process, on synthetic data already on the device (CIFAR-10-shaped uint8 32x32x3 for the
ResNets, MNIST-shaped 28x28x1 for LeNet-5; crop/flip augmentation for the ResNets, as in
training), this times

* baseline: ``prunescope.train.fit`` on one model: fp32, eager, batch 128, SGD Nesterov with
  weight decay, the loss read back every step (the ShrinkBench-style loop);
* pack: ``prunescope.train.pack.fit_pack`` on G models with ``PackOptions.for_device`` (on CUDA:
  bf16 autocast, channels_last, torch.compile with CUDA graphs, fused SGD; on the CPU: fp32
  eager).

Each run is 2 epochs of ``--steps`` full batches plus a half batch (an epoch's smaller last
batch, as in a study); the first epoch warms up (compilation, CUDA graph capture, allocator) and
the second epoch's training images/s (validation excluded) is reported.
Printed per architecture: images/s per model and summed over the pack, the ratio of the summed
figure to the baseline, and on CUDA the achieved fraction of the GPU's dense bf16 peak
(training FLOPs = 3 x forward FLOPs of the convolutions and linear layers), and the prediction
rate of one model as an evaluate job predicts (fp32, batch 1000). With ``--project`` the study's
time is projected from these rates (:func:`projection`).

    python bench/throughput.py                       # CUDA: ResNet-20/56/110, auto pack size
    nice python bench/throughput.py --device cpu --steps 5   # CPU: LeNet-5 and ResNet-20, G=4
    python bench/throughput.py --json out.json --archs resnet56 --pack-size 32 --no-compile
    python bench/throughput.py --project studies/paper.toml  # + the study's projected time
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from dataclasses import asdict
from typing import Any

import numpy as np
import torch
from torch import nn

from prunescope.catalog import architectures
from prunescope.data.device import DeviceImages
from prunescope.models import build_model, skeleton
from prunescope.study.worker import job_settings, out_of_memory, release_device_memory
from prunescope.train import Recipe, fit, predict
from prunescope.train.options import device_profile
from prunescope.train.pack import PackOptions, auto_pack_size, fit_pack, memory_per_model

#: dense bf16 tensor-core peak, FLOP/s, by a substring of torch.cuda.get_device_name()
BF16_PEAK = {"H200": 989.4e12, "H100 SXM": 989.4e12, "H100 80GB HBM3": 989.4e12,
             "H100 PCIe": 756.0e12, "H100": 989.4e12, "A100": 312.0e12, "L40S": 362.1e12}

#: pack size measured on the CPU (auto_pack_size gives 1 there: packs do not pay on a CPU)
CPU_BENCH_G = 4

def image_shape(arch: str) -> tuple[int, int, int]:
    """``(H, W, C)`` of the synthetic images for ``arch``: its catalog record's (MNIST's for
    the LeNets, CIFAR's for the ResNets)."""
    return architectures.architecture(arch).image_shape


def forward_flops(arch: str) -> int:
    """Forward FLOPs of one image (2 x multiply-accumulates of every Conv2d and Linear), counted
    on the meta device."""
    h, w, c = image_shape(arch)
    model = skeleton(arch, 10, c, image_size=h)
    macs = 0

    def count(mod: nn.Module, _inp: Any, out: torch.Tensor) -> None:
        nonlocal macs
        if isinstance(mod, nn.Conv2d):
            macs += out[0].numel() * (mod.in_channels // mod.groups) * mod.kernel_size[0] \
                * mod.kernel_size[1]
        else:
            macs += mod.in_features * mod.out_features

    hooks = [m.register_forward_hook(count) for m in model.modules()
             if isinstance(m, (nn.Conv2d, nn.Linear))]
    model(torch.empty(1, c, h, w, device="meta"))
    for hk in hooks:
        hk.remove()
    return 2 * macs


def synthetic(arch: str, n: int, device: torch.device, seed: int) -> DeviceImages:
    """``n`` random uint8 images of ``arch``'s input shape with labels 0..9, on ``device``."""
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, (n, *image_shape(arch)), dtype=np.uint8)
    y = rng.integers(0, 10, n)
    c = x.shape[-1]
    return DeviceImages(x, y, [0.5] * c, [0.25] * c, device=device)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def run_arch(arch: str, device: torch.device, steps: int, g: int, options: PackOptions,
             batch: int, repeat: int = 1) -> dict[str, Any]:
    """Time the baseline and a pack of ``g`` for ``arch`` (each ``repeat`` times, alternating,
    keeping the best rate of each); returns one result row."""
    # a smaller last batch and (on CUDA) validation batches of 1000, as in a study, so the
    # compiled path runs every graph shape a study's epoch runs
    train = synthetic(arch, steps * batch + batch // 2, device, seed=0)
    n_val = 1000 if device.type == "cuda" else batch
    val = synthetic(arch, n_val, device, seed=1)
    h, _, c = image_shape(arch)
    augment = Recipe.paper(arch).augment  # crop/flip as the paper recipe has it
    recipe = Recipe(schedule=((2, 0.05),), batch_size=batch, augment=augment,
                    val_batch_size=n_val)

    def make(seed: int) -> nn.Module:
        return build_model(arch, 10, c, seed=seed, image_size=h).to(device)

    base_ips, per_model, pack_wall, predict_ips, peak = 0.0, 0.0, 0.0, 0.0, 0
    for _ in range(repeat):  # alternate, keep the best of each: robust to a busy machine
        model = make(0)
        base = fit(model, train, val, recipe, seed=0)
        base_ips = max(base_ips, base.history[-1]["images_per_s"])
        predict(model, train)  # warm-up; then as an evaluate job predicts (fp32, batch 1000)
        _sync(device)
        t0 = time.perf_counter()
        predict(model, train)  # ends with a copy to the host: synchronised
        predict_ips = max(predict_ips, len(train) / (time.perf_counter() - t0))
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        t0 = time.perf_counter()
        results = fit_pack([make(s) for s in range(g)], train, val, recipe,
                           seeds=list(range(g)), options=options)
        pack_wall = time.perf_counter() - t0
        if device.type == "cuda":
            peak = max(peak, torch.cuda.max_memory_allocated(device))
        per_model = max(per_model, results[0].history[-1]["images_per_s"])
    row: dict[str, Any] = {
        "arch": arch, "device": str(device), "pack_size": g, "batch": batch, "steps": steps,
        "repeat": repeat,
        "baseline_images_per_s": base_ips, "pack_images_per_s_per_model": per_model,
        "pack_images_per_s_total": per_model * g, "speedup": per_model * g / base_ips,
        "pack_wall_s_incl_warmup": pack_wall, "predict_images_per_s": predict_ips,
        "options": asdict(options),
        "train_flops_per_image": 3 * forward_flops(arch),
        # auto_pack_size's estimate for this G, and (CUDA) the pack's measured peak allocation
        # (data sets and the baseline's model included): the estimate plans for 60% of the
        # free memory, so a peak above it is a warning, not yet an error
        "pack_mem_estimate_gib": g * memory_per_model(arch, batch_size=batch, in_channels=c,
                                                      image_size=h, options=options) / 2**30,
        "pack_peak_mem_gib": peak / 2**30 if device.type == "cuda" else None,
    }
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        peak = next((v for k, v in BF16_PEAK.items() if k in name), None)
        row["gpu"] = name
        row["bf16_peak_flops"] = peak
        for key in ("baseline", "pack"):
            ips = base_ips if key == "baseline" else per_model * g
            row[f"{key}_peak_fraction"] = (None if peak is None
                                           else ips * row["train_flops_per_image"] / peak)
    return row


#: how each job kind runs in a study on a GPU: in stacked packs, alone (fp32 eager, forward and
#: backward), or as a forward-only evaluation
KIND_PATH = {"train": "pack", "prune_finetune": "pack", "lth_level": "pack", "structured": "solo",
             "rewind": "solo", "gradients": "solo", "evaluate": "predict"}


#: cost of a forward-only pass relative to a training pass (forward + backward ~ 3 forwards)
FORWARD_SHARE = 1 / 3


def study_work(spec_path: str) -> dict[str, dict[str, float]]:
    """Training-pass equivalents a study makes per architecture and path (``pack``, ``solo``,
    ``predict``; see :data:`KIND_PATH`), summed over its plan with
    :func:`prunescope.study.plan.job_work`: epochs x training images of fitted jobs, the
    gradient pass, the rewind steps, the test images of every evaluation (``predict``, timed
    at the measured prediction rate); the validation pass after every epoch of a fitted job
    runs in that job's path and counts :data:`FORWARD_SHARE` of a training pass per image."""
    from prunescope.study import load_spec, make_plan
    from prunescope.study.plan import job_work

    plan = make_plan(load_spec(spec_path))
    out: dict[str, dict[str, float]] = {}
    for job in plan.jobs:
        row = out.setdefault(job.arch, {"pack": 0.0, "solo": 0.0, "predict": 0.0})
        epochs, images = job_work(job, plan.spec.n_val)
        validation = epochs * plan.spec.n_val  # forward only, in the job's own (packed) path
        row[KIND_PATH[job.kind]] += images - validation + validation * FORWARD_SHARE
    return out


RATES = ("pack_images_per_s_total", "baseline_images_per_s", "predict_images_per_s")


def estimated_row(arch: str, rows: list[dict[str, Any]]) -> dict[str, Any] | None:
    """Rates for an architecture that was not measured, scaled from the measured one of the same
    family (LeNet or ResNet) nearest in training FLOPs per image: each rate times
    ``flops(measured) / flops(arch)`` (a deeper ResNet of the same widths runs at about the same
    FLOP/s). ``None`` without a measured architecture of the family. The row says which
    architecture it was scaled from (``estimated_from``)."""
    recipe = architectures.architecture(arch).recipe  # one family per paper recipe
    family = [r for r in rows if architectures.architecture(r["arch"]).recipe == recipe]
    if not family:
        return None
    flops = 3 * forward_flops(arch)
    ref = min(family, key=lambda r: abs(np.log(r["train_flops_per_image"] / flops)))
    scale = ref["train_flops_per_image"] / flops
    return {"arch": arch, "estimated_from": ref["arch"], **{k: ref[k] * scale for k in RATES}}


def project(spec_path: str, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The study's projected time per architecture: its passes (millions, :func:`study_work`)
    and hours from the measured rates: packed jobs at the pack rate (summed over models), solo
    jobs at the baseline training rate, evaluations at the prediction rate; ``hours_all_solo``
    runs the packed work at the baseline rate too. An architecture not measured takes
    :func:`estimated_row`'s rates (``estimated_from`` set) or, without one, has no hours."""
    by_arch = {r["arch"]: r for r in rows}
    out = []
    for arch, work in study_work(spec_path).items():
        r = by_arch.get(arch) or estimated_row(arch, rows)
        row: dict[str, Any] = {"arch": arch, **{f"{k}_M": work[k] / 1e6 for k in work},
                               "estimated_from": None if r is None else r.get("estimated_from")}
        if r is not None:
            h = [work["pack"] / r["pack_images_per_s_total"] / 3600,
                 work["solo"] / r["baseline_images_per_s"] / 3600,
                 work["predict"] / r["predict_images_per_s"] / 3600]
            row.update(hours_packed=h[0], hours_solo=h[1], hours_evaluating=h[2], hours=sum(h),
                       hours_all_solo=(work["pack"] + work["solo"]) / r["baseline_images_per_s"]
                       / 3600 + h[2])
        out.append(row)
    return out


def projection(spec_path: str, rows: list[dict[str, Any]]) -> str:
    """Markdown of :func:`project`: passes per architecture and path, and projected hours;
    estimated architectures are marked, unmeasured ones without an estimate listed as such."""
    lines = [f"projected time of {spec_path} (passes / measured rate):",
             "| arch | packed (M) | solo (M) | evaluated (M) | hours packed | hours solo | "
             "hours evaluating | hours | hours if all solo |",
             "|---|---|---|---|---|---|---|---|---|"]
    proj = project(spec_path, rows)
    for p in proj:
        m = " | ".join(f"{p[f'{k}_M']:,.1f}" for k in ("pack", "solo", "predict"))
        if "hours" not in p:
            lines.append(f"| {p['arch']} | {m} | not measured | | | | |")
            continue
        name = p["arch"] if p["estimated_from"] is None else \
            f"{p['arch']} (scaled from {p['estimated_from']} by FLOPs)"
        lines.append(f"| {name} | {m} | {p['hours_packed']:.2f} | {p['hours_solo']:.2f} | "
                     f"{p['hours_evaluating']:.2f} | {p['hours']:.2f} | "
                     f"{p['hours_all_solo']:.2f} |")
    done = [p for p in proj if "hours" in p]
    lines.append(f"| total | | | | | | | {sum(p['hours'] for p in done):.2f} | "
                 f"{sum(p['hours_all_solo'] for p in done):.2f} |")
    missing = [p["arch"] for p in proj if "hours" not in p]
    if missing:
        lines.append(f"(incomplete: {', '.join(missing)} not measured; rerun with --archs)")
    return "\n".join(lines)


def markdown(rows: list[dict[str, Any]]) -> str:
    """The result rows as a Markdown table."""
    head = ("| arch | device | G | baseline img/s | pack img/s per model | pack img/s summed "
            "| ratio | peak fraction (baseline / pack) | predict img/s |\n"
            "|---|---|---|---|---|---|---|---|---|")
    lines = [head]
    for r in rows:
        frac = "n/a (CPU)" if "gpu" not in r else (
            "unknown GPU peak" if r["bf16_peak_flops"] is None else
            f"{r['baseline_peak_fraction']:.2%} / {r['pack_peak_fraction']:.2%}")
        lines.append(f"| {r['arch']} | {r.get('gpu', r['device'])} | {r['pack_size']} | "
                     f"{r['baseline_images_per_s']:,.0f} | "
                     f"{r['pack_images_per_s_per_model']:,.0f} | "
                     f"{r['pack_images_per_s_total']:,.0f} | {r['speedup']:.2f}x | {frac} | "
                     f"{r['predict_images_per_s']:,.0f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--archs", nargs="+", help="default: resnet20 resnet56 resnet110 on CUDA, "
                    "lenet5 resnet20 on the CPU")
    ap.add_argument("--steps", type=int, default=None,
                    help="timed steps per epoch (default 50 on CUDA, 5 on the CPU)")
    ap.add_argument("--pack-size", type=int, default=None,
                    help="G (default: auto_pack_size on CUDA, 4 on the CPU, where a study's "
                         "auto pack size is 1)")
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--repeat", type=int, default=1,
                    help="time baseline and pack this many times each, alternating, and keep "
                         "the best rate of each (use 3 on a shared CPU)")
    for flag in ("bf16", "channels-last", "compile", "cuda-graphs", "fused-optimizer"):
        ap.add_argument(f"--no-{flag}", action="store_true", help=f"turn {flag} off (CUDA)")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    ap.add_argument("--deterministic", choices=("auto", "on", "off"), default="auto",
                    help="torch deterministic algorithms as a study's [executor] deterministic "
                         "sets them (auto: on for the CPU; off with cuDNN autotuning on CUDA)")
    ap.add_argument("--project", metavar="STUDY.toml",
                    help="also print this study's projected time from the measured rates "
                         "(default archs: the study's)")
    ap.add_argument("--json", help="also write the rows (and the command) to this JSON file")
    ap.add_argument("--previous", nargs="+", default=[], metavar="JSON",
                    help="rows of earlier --json runs to include in the table and projection "
                         "(architectures measured in this run replace them)")
    args = ap.parse_args(argv)

    device = torch.device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    cuda = device.type == "cuda"
    archs = args.archs or (list(study_work(args.project)) if args.project else
                           ["resnet20", "resnet56", "resnet110"] if cuda else ["lenet5", "resnet20"])
    steps = args.steps or (50 if cuda else 5)
    options = PackOptions.for_device(device, **{
        f.replace("-", "_"): False for f in
        ("bf16", "channels-last", "compile", "cuda-graphs", "fused-optimizer")
        if getattr(args, "no_" + f.replace("-", "_"))})
    command = "python " + " ".join(["bench/throughput.py", *(sys.argv[1:] if argv is None
                                                            else argv)])
    rows = []
    for arch in archs:
        g = args.pack_size or (auto_pack_size(arch, device, options=options,
                                              in_channels=image_shape(arch)[2],
                                              image_size=image_shape(arch)[0],
                                              batch_size=args.batch) if cuda else CPU_BENCH_G)
        row, tried = None, []
        while row is None:
            tried.append(g)
            try:
                with job_settings(device_profile(device, pack_options=options, deterministic={
                        "auto": None, "on": True, "off": False}[args.deterministic])):
                    row = run_arch(arch, device, steps, g, options, args.batch, args.repeat)
            except Exception as e:  # noqa: BLE001 -- out of memory: retried with a smaller G
                if g == 1 or not out_of_memory(e):
                    raise
            if row is None:  # outside the except block, whose traceback holds the tensors
                release_device_memory(device_profile(device, pack_options=options))
                g = max(1, g // 2)
                print(f"{arch}: out of memory at G = {tried[-1]}, retrying with G = {g}",
                      flush=True)
        row["deterministic"] = args.deterministic
        row["pack_sizes_tried"] = tried  # the first is auto_pack_size's (or --pack-size)
        rows.append(row)
        print(markdown(rows[-1:]).splitlines()[-1], flush=True)
        write_json(args.json, command, rows)  # after every architecture: a killed run keeps them
    measured = {r["arch"] for r in rows}
    for path in args.previous:
        with open(path) as fh:
            rows += [r for r in json.load(fh)["rows"] if r["arch"] not in measured]
    print()
    print(f"command: {command}")
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"torch {torch.__version__}, python {platform.python_version()}, "
          f"{torch.get_num_threads()} CPU threads, {os.cpu_count()} cores, "
          f"1-min load average {load:.1f} at the end")
    print(markdown(rows))
    if args.project:
        print()
        print(projection(args.project, rows))
    write_json(args.json, command, rows,
               project(args.project, rows) if args.project else None)
    return 0


def write_json(path: str | None, command: str, rows: list[dict[str, Any]],
               projected: list[dict[str, Any]] | None = None) -> None:
    """Write ``{"command", "torch", "rows", "projection"?}`` to ``path`` (nothing without one);
    ``projection``: :func:`project`'s rows."""
    if path is None:
        return
    out: dict[str, Any] = {"command": command, "torch": torch.__version__, "rows": rows}
    if projected is not None:
        out["projection"] = projected
    with open(path, "w") as fh:
        json.dump(out, fh, indent=2)


if __name__ == "__main__":
    raise SystemExit(main())
