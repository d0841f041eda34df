"""CPU training throughput (images/s) of LeNet-5 and ResNet-20, batch 128, fp32, eager.

Two figures per architecture, both on synthetic uint8 images of the real shapes (MNIST
28x28x1 for LeNet-5, CIFAR 32x32x3 for ResNet-20, crop+flip augmentation for the ResNet as in
its recipe):

* ``fit``: the real training loop (``prunescope.train.fit``: device-resident batches,
  augmentation, normalisation, SGD Nesterov with weight decay, loss check), training time only;
* ``step``: forward + backward + SGD step on one fixed pre-normalised batch (the model's cost
  without the data path), for comparison.

The machine's 1-minute load average is printed before and after: on a shared machine the
numbers are only as good as the idle CPU behind them.

Usage: ``python bench/train_cpu.py [--threads N] [--steps 60] [--json out.json]``
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import time

import numpy as np
import torch
import torch.nn.functional as F

from prunescope.data.device import DeviceImages
from prunescope.models import build_model
from prunescope.train import Recipe, fit

BATCH = 128
CASES = {"lenet5": ((28, 28, 1), False), "resnet20": ((32, 32, 3), True)}


def fit_throughput(arch: str, steps: int) -> float:
    """Images/s of ``fit`` over ``steps`` training steps (after a 5-step warm-up run)."""
    (h, w, c), augment = CASES[arch]
    rng = np.random.default_rng(0)
    n = steps * BATCH
    images = DeviceImages(rng.integers(0, 256, (n, h, w, c), dtype=np.uint8),
                          rng.integers(0, 10, n), [0.5] * c, [0.25] * c)
    val = images.subset(np.arange(BATCH))
    model = build_model(arch, 10, c, seed=0, image_size=h)
    fit(model, images, val, Recipe(schedule=((1, 0.01),), augment=augment, max_steps_per_epoch=5), 0)
    res = fit(model, images, val, Recipe(schedule=((1, 0.01),), augment=augment), 0)
    return res.history[0]["images_per_s"]


def step_throughput(arch: str, steps: int) -> float:
    """Images/s of forward + backward + SGD step on one fixed batch (5 warm-up steps)."""
    (h, _, c), _ = CASES[arch]
    model = build_model(arch, 10, c, seed=0, image_size=h)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, nesterov=True,
                          weight_decay=5e-4)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(BATCH, c, h, h, generator=gen)
    y = torch.randint(0, 10, (BATCH,), generator=gen)
    for i in range(steps + 5):
        if i == 5:
            t0 = time.perf_counter()
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return steps * BATCH / (time.perf_counter() - t0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=None,
                        help="torch intra-op threads (default: torch's choice)")
    parser.add_argument("--steps", type=int, default=60, help="timed steps per measurement")
    parser.add_argument("--json", default=None, help="also write the results to this JSON file")
    args = parser.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    load_before = os.getloadavg()[0]
    rows = []
    for arch in CASES:
        rows.append({"arch": arch, "fit_images_per_s": fit_throughput(arch, args.steps),
                     "step_images_per_s": step_throughput(arch, args.steps)})
    meta = {"batch": BATCH, "dtype": "float32", "threads": torch.get_num_threads(),
            "cpus": os.cpu_count(), "cpu": platform.processor() or platform.machine(),
            "torch": torch.__version__, "steps": args.steps,
            "load_1min_before": load_before, "load_1min_after": os.getloadavg()[0]}
    print(f"torch {meta['torch']}, {meta['threads']} threads on {meta['cpus']} CPUs, batch "
          f"{BATCH}, fp32; 1-min load average {meta['load_1min_before']:.1f} -> "
          f"{meta['load_1min_after']:.1f}")
    print("| model | fit (images/s) | model step only (images/s) |")
    print("|---|---:|---:|")
    for r in rows:
        print(f"| {r['arch']} | {r['fit_images_per_s']:,.0f} | {r['step_images_per_s']:,.0f} |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"meta": meta, "results": rows}, f, indent=1)


if __name__ == "__main__":
    main()
