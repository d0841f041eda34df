"""Interoperation with ``torch.nn.utils.prune``.

:func:`to_torch_prune` re-expresses prunescope masks in PyTorch's pruning form (``<name>_orig``
parameter, ``<name>_mask`` buffer, a forward pre-hook recomputing ``<name> = orig * mask``), so
``torch.nn.utils.prune.is_pruned(model)`` is true and the effective weights equal the masked ones.
:func:`from_torch_prune` reads the masks back from a model pruned that way (by prunescope or by
any ``torch.nn.utils.prune`` method) and makes the model plain again (weights = orig * mask).
"""
from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn
from torch.nn.utils import prune as torch_prune


def _split(name: str) -> tuple[str, str]:
    module, _, attr = name.rpartition(".")
    return module, attr


def to_torch_prune(model: nn.Module, masks: Mapping[str, torch.Tensor]) -> None:
    """Attach ``masks`` to ``model`` in place with ``torch.nn.utils.prune.custom_from_mask``.

    Args:
        model: a plain model (its masked parameters not already under torch pruning).
        masks: ``{param name: bool or 0/1 tensor of the param's shape}``, True/1 = kept.

    After the call ``model.<module>.<attr>`` is ``<attr>_orig * <attr>_mask`` and
    ``torch.nn.utils.prune.is_pruned(model)`` is True.

    Raises:
        KeyError: a mask names no parameter of ``model``.
        ValueError: a mask's shape differs from its parameter's.
    """
    named = dict(model.named_parameters())
    for name, mask in masks.items():
        if name not in named:
            raise KeyError(
                f"mask {name!r} names no plain parameter of {type(model).__name__} "
                "(is it already under torch.nn.utils.prune? call from_torch_prune first)"
            )
        if mask.shape != named[name].shape:
            raise ValueError(
                f"mask {name!r} has shape {tuple(mask.shape)}, parameter has "
                f"{tuple(named[name].shape)}"
            )
        module_name, attr = _split(name)
        module = model.get_submodule(module_name)
        param = named[name]
        torch_prune.custom_from_mask(
            module, name=attr, mask=mask.to(device=param.device, dtype=param.dtype)
        )


def from_torch_prune(model: nn.Module) -> dict[str, torch.Tensor]:
    """Take the masks out of a model pruned with ``torch.nn.utils.prune`` and make it plain.

    Every pruned ``module.attr`` becomes an ordinary parameter equal to ``attr_orig * attr_mask``
    (``torch.nn.utils.prune.remove``), so masked weights are exactly zero.

    Returns:
        ``{param name: bool tensor}`` (True = kept), names as in ``model.named_parameters()`` of
        the plain model; empty if nothing was pruned.
    """
    masks: dict[str, torch.Tensor] = {}
    for module_name, module in list(model.named_modules()):
        hooks = [
            h for h in module._forward_pre_hooks.values()
            if isinstance(h, torch_prune.BasePruningMethod)
        ]
        for hook in hooks:
            attr = hook._tensor_name
            prefix = f"{module_name}." if module_name else ""
            masks[prefix + attr] = getattr(module, attr + "_mask").detach().to(torch.bool).clone()
            torch_prune.remove(module, attr)
    return masks
