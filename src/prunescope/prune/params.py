"""Which parameters a pruning criterion may remove (SPEC 3, "Prunable parameters").

Prunable by default: the ``weight`` of every convolution (``nn.Conv1d/2d/3d`` and their transposed
variants) and every ``nn.Linear``, except the final classifier. Biases, BatchNorm parameters and the
classifier are never pruned unless the caller asks (``prune_biases``, ``prune_classifier``);
BatchNorm parameters are never prunable. This default is also what the paper's code pruned (its
ShrinkBench fork marks the classifier and masks no bias, SPEC 8).
"""
from __future__ import annotations

from torch import nn

from prunescope.models import classifier_name

_PRUNABLE_TYPES = (nn.modules.conv._ConvNd, nn.Linear)


def prunable(
    model: nn.Module,
    prune_classifier: bool = False,
    prune_biases: bool = False,
    classifier: str | None = None,
) -> dict[str, nn.Parameter]:
    """The parameters of ``model`` that pruning may zero, in registration order.

    Args:
        model: any ``nn.Module``.
        prune_classifier: include the final classifier's weight (and bias with ``prune_biases``).
        prune_biases: include the biases of the Conv/Linear layers (BatchNorm stays excluded).
        classifier: qualified module name of the final classifier; default
            :func:`prunescope.models.classifier_name` (the last registered
            ``nn.Linear``). Ignored with ``prune_classifier``.

    Returns:
        ``{qualified parameter name: parameter}`` (names as in ``model.named_parameters()``),
        ordered as the modules are registered. This order fixes the flat index used for tie-breaks.

    Raises:
        ValueError: ``classifier`` names no module of ``model``, or the result would be empty.
    """
    modules = dict(model.named_modules())
    if prune_classifier:
        excluded = None
    else:
        excluded = classifier if classifier is not None else classifier_name(model)
        if excluded not in modules:
            raise ValueError(
                f"classifier={excluded!r} is not a module of {type(model).__name__}; "
                f"choose one of {[n for n, m in modules.items() if isinstance(m, _PRUNABLE_TYPES)]}"
            )
    out: dict[str, nn.Parameter] = {}
    for qual, module in modules.items():
        if not isinstance(module, _PRUNABLE_TYPES) or qual == excluded:
            continue
        prefix = f"{qual}." if qual else ""
        if isinstance(module.weight, nn.Parameter):
            out[prefix + "weight"] = module.weight
        if prune_biases and isinstance(module.bias, nn.Parameter):
            out[prefix + "bias"] = module.bias
    if not out:
        raise ValueError(
            f"{type(model).__name__} has no prunable Conv/Linear weights "
            f"(prune_classifier={prune_classifier}, prune_biases={prune_biases})"
        )
    return out


def count_parameters(model: nn.Module) -> int:
    """Number of scalar parameters of ``model``, every tensor counted (weights, biases, BatchNorm,
    classifier); buffers such as BatchNorm running statistics are not parameters.

    This is the numerator of the pruning ratio of SPEC 3.
    """
    return sum(p.numel() for p in model.parameters())
