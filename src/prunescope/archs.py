"""The architecture names of SPEC 4, read by every layer (no torch here, like
:mod:`prunescope.methods`: ``stats`` and ``report`` import this module).

:mod:`prunescope.models` builds these names, the study spec and the CLI check them
(:mod:`prunescope.choices`), and the statistics and the report order table rows and columns
by :data:`DISPLAY_ORDER`.
"""
from __future__ import annotations

#: ``{architecture name: LeNet5 variant}`` of the LeNets (MNIST-like data)
LENET_ARCHS: dict[str, str] = {"lenet5": "classic", "lenet5-shrinkbench": "shrinkbench"}
#: CIFAR ResNet depth -> residual blocks per stage n (depth = 6n + 2), smallest first
RESNET_DEPTHS: dict[int, int] = {20: 3, 32: 5, 44: 7, 56: 9, 110: 18}
#: the CIFAR ResNets in increasing size (SPEC 5 family 2 compares neighbours)
RESNET_ARCHS: tuple[str, ...] = tuple(f"resnet{d}" for d in RESNET_DEPTHS)
#: every architecture name :func:`prunescope.models.build_model` accepts
ARCHS: tuple[str, ...] = (*LENET_ARCHS, *RESNET_ARCHS)
#: the order of architectures in tables and figures: the paper's ShrinkBench LeNet first
DISPLAY_ORDER: tuple[str, ...] = ("lenet5-shrinkbench", "lenet5", *RESNET_ARCHS)
