"""Channel pruning through Torch-Pruning (issue 27 item 3): the ratio reached, channel
fraction, parameters and CPU latency (batch 64, one thread, fastest of 20 passes) before and after, and the
seconds the bisection took, on prunescope's LeNet-5 (28x28x1) and the tests' MobileNetV2-like
net and ResNet with a projection branch (32x32x3). (prunescope's CIFAR ResNets have
zero-padding shortcuts Torch-Pruning does not trace: prune_channels refuses them.)
Usage: PYTHONPATH=src python bench/channel_pruning.py"""
import sys
import time
from pathlib import Path

import torch

from prunescope.models import build_model
from prunescope.prune.channels import prune_channels

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "compare"))
from nets import branchy_resnet, mobilenet_like  # noqa: E402

NETS = {"lenet5": (lambda: build_model("lenet5", 10, 1, seed=0), (1, 28, 28)),
        "mobilenet-like": (lambda: mobilenet_like(10), (3, 32, 32)),
        "branchy-resnet": (lambda: branchy_resnet(10), (3, 32, 32))}
torch.manual_seed(0)
print("| arch | importance | requested | achieved | channels removed | params before -> after "
      "| ms before -> after (batch 64) | seconds |")
print("|---|---|---|---|---|---|---|---|")
for arch, (build, shape) in NETS.items():
    net = build().eval()
    example = torch.randn(1, *shape)
    batches = [(torch.randn(64, *shape), torch.randint(0, 10, (64,)))]
    for imp in ("l1", "taylor"):
        for ratio in (2.0, 4.0):
            t0 = time.perf_counter()
            r = prune_channels(net, example, ratio, imp,
                               batches=batches if imp == "taylor" else None)
            print(f"| {arch} | {imp} | {ratio:g} | {r.achieved_ratio:.3f} | "
                  f"{r.channel_fraction:.1%} | {r.params_before:,} -> {r.params_after:,} | "
                  f"{r.latency_before_ms:.1f} -> {r.latency_after_ms:.1f} | "
                  f"{time.perf_counter() - t0:.1f} |", flush=True)
