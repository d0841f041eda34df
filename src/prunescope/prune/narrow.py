"""A structurally pruned network, made real: the same module tree with narrower layers
(:func:`narrow_model`), the equivalent masks on the unpruned model (:func:`structured_masks`),
and reading such a model back from its checkpoint (:func:`load_structured_checkpoint`).

The smaller model is the same module tree with the producer/BN/consumer modules replaced by
narrower ``nn.Conv2d``/``nn.BatchNorm2d``/``nn.Linear`` (kept channels copied in order), so it is
an ordinary ``nn.Module``: ``prunescope.train.fit`` fine-tunes it, ``save_checkpoint`` writes it,
and :func:`load_structured_checkpoint` reads it back from the widths stored in the sidecar
(``meta["structured"]["widths"]``, see :func:`structured_meta`).

:func:`structured_masks` gives the same network as 0/1 masks on the unpruned model: producer
filters (and biases), BN weight and bias, and consumer input columns of removed channels. A
removed channel then outputs ``relu(0 * xhat + 0) = 0`` in eval and train mode alike, so the
masked model computes what the smaller one computes, and its nonzero-by-mask count equals the
smaller model's parameter count.
"""
from __future__ import annotations

import copy
import os
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn
from torch.nn.utils import skip_init

from prunescope.prune.channel_groups import channel_groups, group_rows
from prunescope.train.checkpoint import load_checkpoint, model_from_meta, sidecar_path

__all__ = ["load_structured_checkpoint", "narrow_model", "structured_masks"]


def structured_masks(model: nn.Module, keep: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """0/1 masks on the unpruned ``model`` equivalent to keeping the channels ``keep``.

    Masks: producer ``weight`` rows and ``bias`` entries, BN ``weight`` and ``bias`` entries of
    removed channels, and the consumers' input columns reading them (True = kept). Groups missing
    from ``keep`` are kept whole (no masks). For residual streams the masked model equals the
    smaller one when every stream channel a shortcut carries into the next stage is kept there
    (as :func:`structured_prune` selects): a removed stream channel is then zero everywhere.

    Returns:
        ``{param name: bool tensor of the param's shape, on its device}``.
    """
    params = dict(model.named_parameters())
    masks: dict[str, torch.Tensor] = {}

    def mask_of(name: str) -> torch.Tensor:
        if name not in masks:
            masks[name] = torch.ones_like(params[name], dtype=torch.bool)
        return masks[name]

    for g in channel_groups(model, streams=True):
        if g.name not in keep:
            continue
        removed = torch.ones(g.channels, dtype=torch.bool)
        removed[torch.as_tensor(keep[g.name], dtype=torch.int64)] = False
        removed = removed.to(params[f"{g.producers[0][0]}.weight"].device)
        for n in (f"{m}.{attr}" for m in group_rows(g) for attr in ("weight", "bias")):
            if n in params:
                mask_of(n)[removed] = False
        for consumer, span in g.consumers:
            mask_of(f"{consumer}.weight")[:, removed.repeat_interleave(span)] = False
    return masks


def _set_module(model: nn.Module, name: str, module: nn.Module) -> None:
    parent, _, attr = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, attr, module)


@torch.no_grad()
def narrow_model(model: nn.Module, keep: Mapping[str, torch.Tensor]) -> nn.Module:
    """A copy of ``model`` with only the channels ``keep[group]`` of each group (same order).

    Producer convolutions, their BatchNorms and the consumers are replaced by narrower modules
    of the same types and hyper-parameters on the same device and dtype (built without their
    random initialisation, ``torch.nn.utils.skip_init``), holding the kept slices of the
    weights, biases and BN running statistics. Groups missing from ``keep`` stay whole.
    Where a residual stream is narrowed, the option-A shortcut from the previous stage becomes
    a channel map (``BasicBlock.shortcut_index``): a kept output channel copies its source
    channel when that is kept, and is zero otherwise (padding or a removed source).

    Returns:
        The smaller model, in ``model``'s train/eval mode.

    Raises:
        ValueError: unknown group names or bad indices; a stream of a model whose streams were
            narrowed already.
    """
    groups = {g.name: g for g in channel_groups(model, streams=True)}
    new = copy.deepcopy(model)
    modules = dict(new.named_modules())
    out_idx: dict[str, torch.Tensor] = {}
    in_idx: dict[str, tuple[torch.Tensor, int]] = {}
    kept: dict[str, torch.Tensor] = {}
    for name, idx in keep.items():
        if name not in groups:
            raise ValueError(f"keep names unknown group {name!r}; groups: {list(groups)[:3]}...")
        g = groups[name]
        idx = torch.as_tensor(idx, dtype=torch.int64).cpu()
        if idx.numel() < 1 or idx.unique().numel() != idx.numel() or int(idx.min()) < 0 or \
                int(idx.max()) >= g.channels:
            raise ValueError(f"keep[{name!r}] must be 1..{g.channels} distinct channel indices "
                             f"in 0..{g.channels - 1}, got {idx.tolist()}")
        idx = idx.sort().values
        kept[name] = idx
        for module in group_rows(g):
            out_idx[module] = idx
        for consumer, span in g.consumers:
            in_idx[consumer] = (idx, span)
    for g in groups.values():
        if g.shortcut is None or not (g.name in kept or g.shortcut[1] in kept):
            continue
        block, source, offset = g.shortcut
        if modules[block].shortcut_index is not None:
            raise ValueError(f"{block}: its residual streams were narrowed already; narrow the "
                             "unpruned model instead")
        src = kept.get(source, torch.arange(groups[source].channels))
        dst = kept.get(g.name, torch.arange(g.channels))
        position = torch.full((max(g.channels, groups[source].channels + offset),), len(src))
        position[src + offset] = torch.arange(len(src))  # dense out channel -> kept input slot
        modules[block].shortcut_index = position[dst].to(modules[block].conv2.weight.device)
    for name in sorted(set(out_idx) | set(in_idx)):
        old = modules[name]
        dev = {"device": old.weight.device, "dtype": old.weight.dtype}
        o = out_idx.get(name)
        i = in_idx.get(name)
        if isinstance(old, nn.BatchNorm2d):
            sel = o.to(old.weight.device)
            m = skip_init(nn.BatchNorm2d, len(sel), eps=old.eps, momentum=old.momentum,
                          affine=old.affine, track_running_stats=old.track_running_stats, **dev)
            for attr in ("weight", "bias", "running_mean", "running_var"):
                src = getattr(old, attr)
                if src is not None:
                    getattr(m, attr).copy_(src[sel])
            if old.num_batches_tracked is not None:
                m.num_batches_tracked.copy_(old.num_batches_tracked)
        elif isinstance(old, nn.Conv2d):
            if old.groups != 1:
                raise ValueError(f"{name}: grouped convolutions cannot be narrowed here")
            w = old.weight
            if o is not None:
                w = w[o.to(w.device)]
            if i is not None:
                w = w[:, i[0].to(w.device)]
            m = skip_init(nn.Conv2d, w.shape[1], w.shape[0], old.kernel_size, stride=old.stride,
                          padding=old.padding, dilation=old.dilation, bias=old.bias is not None,
                          padding_mode=old.padding_mode, **dev)
            m.weight.copy_(w)
            if old.bias is not None:
                m.bias.copy_(old.bias if o is None else old.bias[o.to(w.device)])
        elif isinstance(old, nn.Linear):
            idx, span = i  # a Linear is only ever a consumer here
            cols = (idx.view(-1, 1) * span + torch.arange(span)).reshape(-1).to(old.weight.device)
            m = skip_init(nn.Linear, len(cols), old.out_features, bias=old.bias is not None, **dev)
            m.weight.copy_(old.weight[:, cols])
            if old.bias is not None:
                m.bias.copy_(old.bias)
        else:
            raise TypeError(f"{name} is a {type(old).__name__}; cannot narrow it")
        m.train(old.training)
        _set_module(new, name, m)
    return new


def load_structured_checkpoint(
    path: str | os.PathLike[str], device: torch.device | str = "cpu"
) -> tuple[nn.Module, dict[str, Any]]:
    """Read a structurally pruned checkpoint written with :func:`structured_meta`.

    :func:`prunescope.train.load_checkpoint` with a ``build`` that rebuilds the architecture
    (:func:`~prunescope.train.checkpoint.model_from_meta`) and narrows it to the stored widths
    (:func:`narrow_model` with the first ``width`` channels; the stored weights then replace
    them); the weights are loaded strictly.

    Returns:
        ``(model, meta)``: the smaller model on ``device`` in eval mode, and the sidecar dict.

    Raises:
        FileNotFoundError: no checkpoint or no sidecar at ``path``.
        ValueError: the sidecar has no ``structured.widths`` (not a structurally pruned
            checkpoint), or another checkpoint format.
    """
    side = sidecar_path(path)

    def narrowed(meta: dict[str, Any]) -> nn.Module:
        if "structured" not in meta or "widths" not in meta["structured"]:
            raise ValueError(f"{side} has no 'structured.widths'; it is not a structurally "
                             "pruned checkpoint (load it with prunescope.train.load_checkpoint)")
        widths = meta["structured"]["widths"]
        return narrow_model(model_from_meta(meta),
                            {n: torch.arange(int(w)) for n, w in widths.items()})

    model, meta, _ = load_checkpoint(path, device, build=narrowed)
    return model, meta
