"""The architecture names of SPEC 4, read by every layer (no torch here, like
:mod:`prunescope.methods`: ``stats`` and ``report`` import this module).

:mod:`prunescope.models` builds these names, the study spec and the CLI check them
(:mod:`prunescope.choices`), and the statistics and the report order table rows and columns
by :data:`DISPLAY_ORDER`. :func:`param_count` counts an architecture's parameters from its layer
shapes, so validating a study spec builds no model.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

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
#: ``{LeNet variant: (conv kernel size, conv1 padding)}`` (:class:`prunescope.models.LeNet5`)
LENET_KERNELS: dict[str, tuple[int, int]] = {"classic": (5, 2), "shrinkbench": (3, 0)}
#: widths of the LeNets' layers: conv1, conv2 output channels, then fc1, fc2 outputs
LENET_WIDTHS: tuple[int, int, int, int] = (6, 16, 120, 84)
#: output channels of the CIFAR ResNets' stem and three stages
RESNET_WIDTHS: tuple[int, int, int] = (16, 32, 64)


@dataclass(frozen=True)
class Param:
    """One parameter tensor of a built model: its qualified name (as ``named_parameters``
    gives it), the layer it belongs to (``conv``, ``linear`` or ``batchnorm``) and its shape."""

    name: str
    layer: str
    shape: tuple[int, ...]

    @property
    def numel(self) -> int:
        """Number of scalars."""
        return math.prod(self.shape)


def lenet_side(variant: str, image_size: int) -> int:
    """Side of the LeNet's last feature map (pixels) for square ``image_size`` inputs: conv1
    (padded) then 2x2 pool, conv2 (unpadded) then 2x2 pool; < 1 when the image is too small."""
    kernel, pad = LENET_KERNELS[variant]
    return ((image_size + 2 * pad - kernel + 1) // 2 - kernel + 1) // 2


def parameters(arch: str, num_classes: int, in_channels: int = 3, *,
               image_size: int = 28) -> list[Param]:
    """Every parameter of ``build_model(arch, num_classes, in_channels, image_size=...)`` in
    ``named_parameters`` order, from the layer shapes alone (no torch, nothing built); the
    final Linear is ``classifier``."""
    if arch not in ARCHS:
        raise ValueError(f"unknown architecture {arch!r}; choose one of {', '.join(ARCHS)}")

    def conv(name: str, out: int, inp: int, k: int, bias: bool) -> list[Param]:
        return [Param(f"{name}.weight", "conv", (out, inp, k, k))] + (
            [Param(f"{name}.bias", "conv", (out,))] if bias else [])

    def linear(name: str, out: int, inp: int) -> list[Param]:
        return [Param(f"{name}.weight", "linear", (out, inp)), Param(f"{name}.bias", "linear", (out,))]

    def bn(name: str, c: int) -> list[Param]:
        return [Param(f"{name}.weight", "batchnorm", (c,)), Param(f"{name}.bias", "batchnorm", (c,))]

    if arch in LENET_ARCHS:
        variant = LENET_ARCHS[arch]
        k = LENET_KERNELS[variant][0]
        c1, c2, f1, f2 = LENET_WIDTHS
        side = lenet_side(variant, image_size)
        return [*conv("conv1", c1, in_channels, k, True), *conv("conv2", c2, c1, k, True),
                *linear("fc1", f1, c2 * side * side), *linear("fc2", f2, f1),
                *linear("classifier", num_classes, f2)]
    n = RESNET_DEPTHS[int(arch[len("resnet"):])]
    out = [*conv("conv1", RESNET_WIDTHS[0], in_channels, 3, False), *bn("bn1", RESNET_WIDTHS[0])]
    width = RESNET_WIDTHS[0]
    for stage, planes in enumerate(RESNET_WIDTHS, start=1):
        for block in range(n):
            at = f"layer{stage}.{block}"
            out += [*conv(f"{at}.conv1", planes, width, 3, False), *bn(f"{at}.bn1", planes),
                    *conv(f"{at}.conv2", planes, planes, 3, False), *bn(f"{at}.bn2", planes)]
            width = planes
    return out + linear("classifier", num_classes, width)


def param_count(arch: str, num_classes: int, in_channels: int = 3, *, image_size: int = 28,
                prune_classifier: bool = False, prune_biases: bool = False) -> tuple[int, int]:
    """``(all parameters, prunable ones)`` of ``arch`` built for ``num_classes`` classes and
    ``in_channels x image_size x image_size`` inputs, without torch: the numerator of the
    compression ratio (SPEC 3) and the size of the default prunable set
    (:func:`prunescope.prune.prunable`: Conv/Linear weights, their biases with
    ``prune_biases``, the classifier only with ``prune_classifier``; BatchNorm never)."""
    params = parameters(arch, num_classes, in_channels, image_size=image_size)
    prunable = sum(p.numel for p in params if p.layer != "batchnorm"
                   and (prune_biases or p.name.endswith(".weight"))
                   and (prune_classifier or not p.name.startswith("classifier.")))
    return sum(p.numel for p in params), prunable
