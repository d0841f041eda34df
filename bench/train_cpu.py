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

``--compare R`` (issue 22) instead times LeNet-5 ``fit`` R times in each of four variants, in
turn within each repeat: the loop before issue 22 (foreach SGD step, ReLU before the 2x2
max-pool), each change alone, and both (the loop now). The figure is images per CPU-second
(``time.process_time``: the process's own CPU time, so other processes on the machine inflate
it much less than wall time), and each variant's ratio to "before" within the same repeat.

Usage: ``python bench/train_cpu.py [--threads N] [--steps 60] [--json out.json]``
       ``python bench/train_cpu.py --threads 1 --steps 100 --compare 5``
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import time

import statistics
import types

import numpy as np
import torch
import torch.nn.functional as F

from prunescope.data.device import DeviceImages
from prunescope.models import LeNet5, build_model
from prunescope.train import Recipe, fit
from prunescope.train.loop import PackOptions

BATCH = 128
CASES = {"lenet5": ((28, 28, 1), False), "resnet20": ((32, 32, 3), True)}
#: ``--compare``: ``{variant: (fused SGD step, ReLU before the max-pool)}``, "before" first
VARIANTS = {"before": (False, True), "fused SGD": (True, True),
            "ReLU after pool": (False, False), "both (now)": (True, False)}


def _relu_before_pool(self: LeNet5, x: torch.Tensor) -> torch.Tensor:
    """LeNet5.forward before issue 22: ReLU, then the 2x2 max-pool (bitwise the same logits)."""
    x = F.max_pool2d(F.relu(self.conv1(x)), 2)
    x = F.max_pool2d(F.relu(self.conv2(x)), 2)
    x = F.relu(self.fc2(F.relu(self.fc1(torch.flatten(x, 1)))))
    return self.classifier(x)


def fit_throughput(arch: str, steps: int, fused: bool = True,
                   relu_before_pool: bool = False) -> tuple[float, float]:
    """``(images per wall second, images per CPU-second)`` of ``fit`` over ``steps`` training
    steps (after a 5-step warm-up run); ``fused``: the fused SGD step (else foreach);
    ``relu_before_pool``: LeNet-5's forward before issue 22."""
    (h, w, c), augment = CASES[arch]
    rng = np.random.default_rng(0)
    n = steps * BATCH
    images = DeviceImages(rng.integers(0, 256, (n, h, w, c), dtype=np.uint8),
                          rng.integers(0, 10, n), [0.5] * c, [0.25] * c)
    val = images.subset(np.arange(BATCH))
    model = build_model(arch, 10, c, seed=0, image_size=h)
    if relu_before_pool:
        model.forward = types.MethodType(_relu_before_pool, model)
    options = PackOptions(fused_optimizer=fused)
    fit(model, images, val, Recipe(schedule=((1, 0.01),), augment=augment, max_steps_per_epoch=5),
        0, options=options)
    cpu0 = time.process_time()
    res = fit(model, images, val, Recipe(schedule=((1, 0.01),), augment=augment), 0,
              options=options)
    return res.history[0]["images_per_s"], n / (time.process_time() - cpu0)


def compare(steps: int, repeats: int) -> dict[str, list[float]]:
    """LeNet-5 ``fit``, images per CPU-second, ``repeats`` rounds of every :data:`VARIANTS`
    entry in turn: ``{variant: [rate per repeat]}``."""
    rates: dict[str, list[float]] = {v: [] for v in VARIANTS}
    for _ in range(repeats):
        for variant, (fused, relu_first) in VARIANTS.items():
            rates[variant].append(fit_throughput("lenet5", steps, fused, relu_first)[1])
    return rates


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
    parser.add_argument("--compare", type=int, default=0, metavar="R",
                        help="instead: R repeats of LeNet-5 fit before/after issue 22's changes")
    args = parser.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    load_before = os.getloadavg()[0]
    if args.compare:
        rates = compare(args.steps, args.compare)
        print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, LeNet-5 fit, "
              f"{args.steps} steps of {BATCH}, {args.compare} repeats; 1-min load average "
              f"{load_before:.1f} -> {os.getloadavg()[0]:.1f}")
        print("| variant | images per CPU-second (median) | each repeat | ratio to before "
              "(median of repeats) |")
        print("|---|---:|---|---:|")
        for variant, r in rates.items():
            ratios = [a / b for a, b in zip(r, rates["before"])]
            print(f"| {variant} | {statistics.median(r):,.0f} | "
                  f"{' / '.join(f'{v:,.0f}' for v in r)} | {statistics.median(ratios):.3f} |")
        if args.json:
            with open(args.json, "w") as f:
                json.dump({"steps": args.steps, "rates": rates}, f, indent=1)
        return
    rows = []
    for arch in CASES:
        rows.append({"arch": arch, "fit_images_per_s": fit_throughput(arch, args.steps)[0],
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
