"""The architectures of SPEC 4, one record each, owning their facts (no torch here).

A record says which class builds the model (:attr:`Architecture.model`, imported on first use
by :func:`prunescope.models.skeleton`), with which options, for which input shape, with which
initialisation and paper recipe, where it sits in tables and figures, whether packs of it train
as one stacked network, and its layer layout: the Conv/Linear/BatchNorm parameter shapes that
count its parameters and its prunable set without building it (:meth:`Architecture.param_count`,
:meth:`Architecture.prunable_count`), which the study spec checks ratios with. Adding an
architecture is one model file plus one record here (docs/architecture.md, "Add an
architecture"). Every list is derived from :data:`REGISTRY` when asked for.
"""
from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

__all__ = ["LENET_WIDTHS", "REGISTRY", "Architecture", "Layer", "architecture", "display_order",
           "for_shape", "lenet_side",
           "name_of", "names", "size_order"]


@dataclass(frozen=True)
class Layer:
    """One parameterised layer of a layout: ``weight`` and ``bias`` scalar counts (0: none)."""

    name: str
    kind: Literal["conv", "linear", "norm"]
    weight: int
    bias: int


#: ``layout(num_classes, in_channels, image_size) -> layers in registration order``
Layout = Callable[[int, int, int], tuple[Layer, ...]]


@dataclass(frozen=True)
class Architecture:
    """One architecture.

    Attributes:
        name: the name studies, the CLI and result frames use.
        model: ``"module:Class"``; ``Class(num_classes=, in_channels=, **options)`` (plus
            ``image_size=`` when ``sized``) builds it, its final ``nn.Linear`` named
            ``classifier``.
        options: keyword arguments of ``Class`` that make this architecture.
        image_shape: ``(H, W, C)`` of the data it is for; a dataset of that shape can use it.
        sized: the model is built for one input side (a fixed flatten width).
        init: the seeded initialisation scheme (:func:`prunescope.models.init_weights`).
        recipe: ``Recipe.paper_<recipe>()`` trains it, ``paper_<recipe>_finetune()`` fine-tunes
            it (SPEC 4).
        order: position in tables and figures.
        size_rank: position among architectures compared with their next larger one (SPEC 5
            family 2); ``None`` for none.
        dataset_rank: preference as the architecture of a dataset in the across-dataset
            families (SPEC 5 family 3; 0 first); ``None``: never chosen.
        layout: its layers (torch-free), for the parameter counts.
    """

    name: str
    model: str
    options: tuple[tuple[str, Any], ...]
    image_shape: tuple[int, int, int]
    sized: bool
    init: str
    recipe: str
    order: int
    size_rank: int | None
    dataset_rank: int | None
    layout: Layout

    def model_class(self) -> Any:
        """The ``nn.Module`` subclass named by :attr:`model`, imported now (needs torch)."""
        module, _, cls = self.model.partition(":")
        return getattr(importlib.import_module(module), cls)

    def param_count(self, num_classes: int = 10, in_channels: int | None = None,
                    image_size: int | None = None) -> int:
        """Every parameter of the model (weights, biases, BatchNorm, classifier), counted from
        the layout; defaults: the channels and side of :attr:`image_shape`."""
        return sum(layer.weight + layer.bias for layer in self._layers(num_classes, in_channels,
                                                                       image_size))

    def prunable_count(self, num_classes: int = 10, in_channels: int | None = None,
                       image_size: int | None = None, *, prune_classifier: bool = False,
                       prune_biases: bool = False) -> int:
        """The parameters :func:`prunescope.prune.prunable` selects (Conv/Linear weights, the
        classifier's, the last Linear of the layout, with ``prune_classifier``; their biases
        with ``prune_biases``)."""
        layers = self._layers(num_classes, in_channels, image_size)
        classifier = max(i for i, layer in enumerate(layers) if layer.kind == "linear")
        return sum(layer.weight + (layer.bias if prune_biases else 0)
                   for i, layer in enumerate(layers)
                   if layer.kind != "norm" and (prune_classifier or i != classifier))

    def _layers(self, num_classes: int, in_channels: int | None,
                image_size: int | None) -> tuple[Layer, ...]:
        h, _, c = self.image_shape
        return self.layout(num_classes, c if in_channels is None else in_channels,
                           h if image_size is None else image_size)


def _conv(name: str, c_in: int, c_out: int, k: int, bias: bool) -> Layer:
    return Layer(name, "conv", c_in * c_out * k * k, c_out if bias else 0)


def _linear(name: str, n_in: int, n_out: int) -> Layer:
    return Layer(name, "linear", n_in * n_out, n_out)


#: widths of the LeNets' layers: conv1, conv2 output channels, then fc1, fc2 outputs
LENET_WIDTHS: tuple[int, int, int, int] = (6, 16, 120, 84)


def lenet_side(kernel: int, pad: int, image_size: int) -> int:
    """Side of a LeNet's last feature map (pixels) for square ``image_size`` inputs: conv1
    (``kernel``, padded by ``pad``) then 2x2 pool, conv2 (unpadded) then 2x2 pool; < 1 when the
    image is too small."""
    return ((image_size + 2 * pad - kernel + 1) // 2 - kernel + 1) // 2


def _lenet_layout(kernel: int, pad: int) -> Layout:
    """LeNet-5 (:class:`prunescope.models.lenet.LeNet5`): two convolutions, three Linears."""
    def layout(num_classes: int, in_channels: int, image_size: int) -> tuple[Layer, ...]:
        c1, c2, f1, f2 = LENET_WIDTHS
        side = lenet_side(kernel, pad, image_size)
        return (_conv("conv1", in_channels, c1, kernel, True), _conv("conv2", c1, c2, kernel, True),
                _linear("fc1", c2 * side * side, f1), _linear("fc2", f1, f2),
                _linear("classifier", f2, num_classes))
    return layout


def _resnet_layout(blocks: int) -> Layout:
    """A CIFAR ResNet (:class:`prunescope.models.resnet_cifar.CifarResNet`) of ``blocks``
    basic blocks per stage: bias-free convolutions, each followed by a BatchNorm."""
    def layout(num_classes: int, in_channels: int, image_size: int) -> tuple[Layer, ...]:
        layers = [_conv("conv1", in_channels, 16, 3, False), Layer("bn1", "norm", 16, 16)]
        planes_in = 16
        for stage, planes in enumerate((16, 32, 64), start=1):
            for b in range(blocks):
                at = f"layer{stage}.{b}"
                layers += [_conv(f"{at}.conv1", planes_in, planes, 3, False),
                           Layer(f"{at}.bn1", "norm", planes, planes),
                           _conv(f"{at}.conv2", planes, planes, 3, False),
                           Layer(f"{at}.bn2", "norm", planes, planes)]
                planes_in = planes
        return (*layers, _linear("classifier", 64, num_classes))
    return layout


_LENET = "prunescope.models.lenet:LeNet5"
_RESNET = "prunescope.models.resnet_cifar:CifarResNet"
#: CIFAR ResNet depth -> residual blocks per stage n (depth = 6n + 2), smallest first
_RESNET_DEPTHS: dict[int, int] = {20: 3, 32: 5, 44: 7, 56: 9, 110: 18}

#: every architecture (SPEC 4)
REGISTRY: tuple[Architecture, ...] = (
    Architecture("lenet5", _LENET, (("variant", "classic"),), (28, 28, 1), True,
                 "torch_default", "lenet", 1, None, 1, _lenet_layout(5, 2)),
    Architecture("lenet5-shrinkbench", _LENET, (("variant", "shrinkbench"),), (28, 28, 1), True,
                 "torch_default", "lenet", 0, None, 0, _lenet_layout(3, 0)),
    *(Architecture(f"resnet{depth}", _RESNET, (("depth", depth),), (32, 32, 3), False,
                   "kaiming_normal", "resnet", 2 + i, i, 0 if depth == 56 else None,
                   _resnet_layout(n))
      for i, (depth, n) in enumerate(_RESNET_DEPTHS.items())),
)


def names() -> tuple[str, ...]:
    """Every architecture name, registry order."""
    return tuple(a.name for a in REGISTRY)


def recipe_families() -> tuple[str, ...]:
    """The recipe families (the records' ``recipe``: ``lenet``, ``resnet``), sorted."""
    return tuple(sorted({a.recipe for a in REGISTRY}))


def architecture(name: str) -> Architecture:
    """The record of ``name``; an unknown name raises ``ValueError`` listing the known ones."""
    found = [a for a in REGISTRY if a.name == name]
    if not found:
        raise ValueError(f"unknown architecture {name!r}; choose one of {', '.join(names())}")
    return found[0]


def for_shape(image_shape: tuple[int, int, int]) -> tuple[str, ...]:
    """The architectures made for images of ``(H, W, C)``, registry order."""
    return tuple(a.name for a in REGISTRY if a.image_shape == tuple(image_shape))


def display_order() -> tuple[str, ...]:
    """Every architecture by :attr:`Architecture.order` (tables and figures)."""
    return tuple(a.name for a in sorted(REGISTRY, key=lambda a: a.order))


def size_order() -> tuple[str, ...]:
    """The architectures SPEC 5 family 2 compares, smallest first (each with the next)."""
    ranked = [a for a in REGISTRY if a.size_rank is not None]
    return tuple(a.name for a in sorted(ranked, key=lambda a: a.size_rank))


def name_of(model: str, **options: Any) -> str:
    """The name of the architecture whose record builds ``model`` (``"module:Class"``) with
    ``options``; ``ValueError`` when none does."""
    found = [a for a in REGISTRY if a.model == model and dict(a.options) == options]
    if not found:
        raise ValueError(f"no architecture is {model} with {options}; choose one of "
                         f"{', '.join(names())}")
    return found[0].name
