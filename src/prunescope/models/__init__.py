"""Models of the study (SPEC 4): LeNet-5 (classic and ShrinkBench's) and the CIFAR ResNets (see docs/architecture.md).

``build_model(arch, num_classes, in_channels)`` builds one, initialised from an explicit seed;
``classifier_name(model)`` names its final Linear layer (never pruned by default, SPEC 3).
"""
from __future__ import annotations

import math

import torch
from torch import nn

from prunescope.catalog import architectures
from prunescope.models.lenet import LeNet5
from prunescope.models.resnet_cifar import BasicBlock, CifarResNet

__all__ = ["BasicBlock", "CifarResNet", "LeNet5", "build_model",
           "classifier_name", "init_weights", "skeleton"]


def skeleton(arch: str, num_classes: int = 10, in_channels: int = 3, *,
             image_size: int = 28) -> nn.Module:
    """``arch`` on the meta device: every shape, no storage, nothing drawn from any RNG.

    For counting parameters or activations, or as the template of a model to be filled in
    (``.to_empty(device=...)``). Arguments as in :func:`build_model`.
    """
    record = architectures.architecture(arch)
    sized = {"image_size": image_size} if record.sized else {}
    with torch.device("meta"):
        return record.model_class()(num_classes=num_classes, in_channels=in_channels, **sized,
                                    **dict(record.options))


def build_model(
    arch: str,
    num_classes: int,
    in_channels: int = 3,
    *,
    seed: int = 0,
    image_size: int = 28,
) -> nn.Module:
    """Build an architecture of SPEC 4 with deterministic initial weights.

    Args:
        arch: a name of :mod:`prunescope.catalog.architectures` (SPEC 4: the two LeNet-5s and
            the CIFAR ResNets 20, 32, 44, 56, 110).
        num_classes: number of classes C (10 or 100 in the study; any C >= 2 works).
        in_channels: input channels (1 for MNIST-like data, 3 for CIFAR).
        seed: seed of the initialisation (a private ``torch.Generator``; the global RNG is
            untouched). Same seed, same weights.
        image_size: input side length in pixels; only LeNet-5 (which has a fixed flatten
            width) uses it. The ResNets accept any size.

    Returns:
        The model on the CPU in float32, train mode.
    """
    if num_classes < 2:
        raise ValueError(f"num_classes must be >= 2, got {num_classes}")
    if in_channels < 1:
        raise ValueError(f"in_channels must be >= 1, got {in_channels}")
    # Built on the meta device so that construction draws nothing from the global RNG; the
    # storage is then allocated and every tensor initialised from the seed.
    model = skeleton(arch, num_classes, in_channels, image_size=image_size).to_empty(device="cpu")
    init_weights(model, seed, scheme=architectures.architecture(arch).init)
    return model


def init_weights(model: nn.Module, seed: int, scheme: str = "kaiming_normal") -> None:
    """Initialise every Conv2d/Linear/BatchNorm2d of ``model`` in place from ``seed``.

    Modules are visited in ``named_modules`` order with one ``torch.Generator``, so the result
    depends only on the seed and the architecture.

    Schemes:
        ``kaiming_normal``: conv and linear weights ~ N(0, 2 / fan_in) (He et al. 2015, as in
        the CIFAR ResNet paper); linear biases ~ U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
        ``torch_default``: PyTorch's default layer initialisation (Kaiming-uniform with
        a = sqrt(5) for weights, U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for biases), made seeded.
        BatchNorm: weight 1, bias 0, running statistics reset, in both schemes.
    """
    if scheme not in ("kaiming_normal", "torch_default"):
        raise ValueError(f"unknown init scheme {scheme!r}; use 'kaiming_normal' or 'torch_default'")
    gen = torch.Generator().manual_seed(int(seed))
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                w = module.weight
                fan_in = w[0].numel()
                if scheme == "kaiming_normal":
                    nn.init.kaiming_normal_(w, mode="fan_in", nonlinearity="relu", generator=gen)
                else:
                    nn.init.kaiming_uniform_(w, a=math.sqrt(5), generator=gen)
                if module.bias is not None:
                    bound = 1.0 / math.sqrt(fan_in)
                    nn.init.uniform_(module.bias, -bound, bound, generator=gen)
            elif isinstance(module, nn.BatchNorm2d):
                module.reset_parameters()


def classifier_name(model: nn.Module) -> str:
    """Qualified module name of the model's final ``nn.Linear`` (e.g. ``"classifier"``).

    "Final" means last in ``named_modules`` registration order, which for the models here and
    for ordinary ``nn.Sequential`` user models is the output layer. Its parameters are
    ``f"{name}.weight"`` and ``f"{name}.bias"``.
    """
    last = None
    for name, module in model.named_modules():
        if isinstance(module, nn.Linear):
            last = name
    if last is None:
        raise ValueError(
            f"{type(model).__name__} has no nn.Linear layer, so it has no classifier to name; "
            "prune it with prune_classifier=True or give it a Linear output layer"
        )
    return last
