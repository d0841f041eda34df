"""Real inference speedup of structurally pruned CIFAR ResNets (default ResNet-56) vs the dense net.

For each ratio the dense network is pruned with L1-filter scores (layer scope, the inner channels
of every basic block; see prunescope.prune.structured) and the smaller model is timed. Weights
are a seeded initialisation: speed depends on shapes, not on values.

Timing: ``torch.inference_mode``, eval mode, float32, input already on the device; ``--warmup``
untimed rounds, then ``--repeats`` timed rounds; a round times every model once (interleaved, so
load changes on a shared machine hit all models alike); the median (and min/max) per (model,
batch) is reported.
On CUDA each pass is bracketed by ``torch.cuda.synchronize``.

Usage:
    python bench/structured_speedup.py                       # CPU, ResNet-56, ratios 2 4 10 max,
                                                             # NCHW and channels_last
    python bench/structured_speedup.py --device cuda --repeats 50
    python bench/structured_speedup.py --json out.json       # also write the table as JSON

Prints one markdown row per (device, layout, batch, model): params, achieved ratio, median ms per batch,
MACs of the Conv/Linear layers, images/s and speedup over dense at the same layout and batch
size, from the medians and from the minima (on a shared machine the minimum is the run least
disturbed by other processes).
"""
from __future__ import annotations

import argparse
import itertools
import json
import platform
import statistics
import time

import torch

from prunescope.models import build_model
from prunescope.prune import count_parameters
from prunescope.prune.channel_scores import l1_filter_scores
from prunescope.prune.structured import structured_prune


def time_models(models: list[torch.nn.Module], x: torch.Tensor, repeats: int, warmup: int
                ) -> list[list[float]]:
    """Seconds per forward pass on ``x``: ``repeats`` timed passes per model, interleaved
    (round r times every model once), so that a load change on a shared machine hits every
    model alike instead of whichever was being timed."""
    cuda = x.device.type == "cuda"
    times: list[list[float]] = [[] for _ in models]
    with torch.inference_mode():
        for r in range(warmup + repeats):
            for i, model in enumerate(models):
                if cuda:
                    torch.cuda.synchronize()
                t0 = time.perf_counter()
                model(x)
                if cuda:
                    torch.cuda.synchronize()
                if r >= warmup:
                    times[i].append(time.perf_counter() - t0)
    return times


def conv_linear_macs(model: torch.nn.Module, image_hw: tuple[int, int] = (32, 32)) -> int:
    """Multiply-accumulates of the Conv2d and Linear layers for one image (BN, ReLU, adds and
    pooling not counted)."""
    total = 0

    def count(module: torch.nn.Module, _inp: object, out: torch.Tensor) -> None:
        nonlocal total
        if isinstance(module, torch.nn.Conv2d):
            per_out = module.in_channels // module.groups * module.kernel_size[0] * \
                module.kernel_size[1]
        else:
            per_out = module.in_features
        total += out[0].numel() * per_out

    handles = [m.register_forward_hook(count) for m in model.modules()
               if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
    try:
        with torch.inference_mode():
            model(torch.zeros(1, 3, *image_hw, device=next(model.parameters()).device))
    finally:
        for h in handles:
            h.remove()
    return total


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--arch", default="resnet56")
    ap.add_argument("--ratios", type=float, nargs="*", default=[2.0, 4.0, 10.0],
                    help="target ratios; the largest reachable ratio is always added")
    ap.add_argument("--batches", type=int, nargs="*", default=[128, 1])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--formats", nargs="*", default=["nchw", "channels_last"],
                    choices=["nchw", "channels_last"],
                    help="memory layouts of weights and input (default: both)")
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (CPU)")
    ap.add_argument("--json", default=None, help="write the rows to this JSON file")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    dense = build_model(args.arch, 10, 3, seed=0).eval()
    scores = l1_filter_scores(dense)
    models = [("dense", 1.0, dense)]
    max_ratio = None
    for r in args.ratios:
        res = structured_prune(dense, scores, r)
        models.append((f"t={r:g}", res.achieved_ratio, res.model.eval()))
        max_ratio = res.max_ratio
    if max_ratio is not None:
        res = structured_prune(dense, scores, max_ratio)
        models.append(("t=max", res.achieved_ratio, res.model.eval()))
    gen = torch.Generator().manual_seed(0)
    print(f"# {args.arch}, {platform.processor() or platform.machine()}, torch "
          f"{torch.__version__}, threads {torch.get_num_threads()}, device {device}"
          + (f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else ""))
    print("| device | layout | batch | model | params | ratio | MMACs | MAC ratio | median ms "
          "| min ms | max ms | images/s | speedup (median) | speedup (min) |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    macs = [conv_linear_macs(m) for _, _, m in models]
    rows = []
    for fmt, batch in itertools.product(args.formats, args.batches):
        layout = torch.channels_last if fmt == "channels_last" else torch.contiguous_format
        x = torch.randn(batch, 3, 32, 32, generator=gen).to(device, memory_format=layout)
        timed = time_models([m.to(device, memory_format=layout) for _, _, m in models], x,
                            args.repeats, args.warmup)
        base, base_min = statistics.median(timed[0]), min(timed[0])
        for (name, ratio, model), ts, mac in zip(models, timed, macs):
            med = statistics.median(ts)
            row = {"device": str(device), "layout": fmt, "batch": batch, "model": name,
                   "params": count_parameters(model), "ratio": ratio, "macs": mac,
                   "mac_ratio": macs[0] / mac, "median_ms": med * 1e3,
                   "min_ms": min(ts) * 1e3, "max_ms": max(ts) * 1e3,
                   "images_per_s": batch / med, "speedup": base / med,
                   "speedup_min": base_min / min(ts),
                   "repeats": args.repeats, "threads": torch.get_num_threads()}
            rows.append(row)
            print(f"| {device} | {fmt} | {batch} | {name} | {row['params']:,} | {ratio:.2f} | "
                  f"{mac / 1e6:.1f} | {row['mac_ratio']:.2f} | "
                  f"{row['median_ms']:.2f} | {row['min_ms']:.2f} | {row['max_ms']:.2f} | "
                  f"{row['images_per_s']:.0f} | {row['speedup']:.2f}x | {row['speedup_min']:.2f}x |",
                  flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
