"""Structured channel pruning (SPEC 3, last bullet): L1-norm filter pruning (Li et al., ICLR 2017)
and channel independence (CHIP, Sui et al., NeurIPS 2021), with channels removed for real.

**Channel groups.** A group is a set of channels that can be removed together without changing
any other shape: the output channels of a *producer* convolution, the matching entries of the
BatchNorm that follows it (if any) and the matching input channels of its *consumers*.

* CIFAR ResNets: one group per basic block, the block's inner channels (``conv1``/``bn1`` outputs,
  ``conv2`` inputs), named ``"layer2.3.conv1"``; with ``streams=True`` also one group per stage's
  residual stream, named ``"layer2"`` (the stem for stage 1, every block's ``conv2``/``bn2``,
  the ``conv1`` inputs reading it, the option-A shortcut into the next stage). The default
  config ``"uniform"`` narrows the inner groups by one fraction; the named configs
  (:data:`STRUCTURED_CONFIGS`: CHIP's and Li et al.'s published ResNet-56 settings) set per-group
  widths, CHIP's including the streams of stages 1-2 (:func:`config_widths`).
* LeNet-5: ``conv1`` (6 channels; consumer ``conv2``) and ``conv2`` (16 channels; consumer
  ``fc1``, 25 flattened inputs per channel on 28x28 images). The fully connected layers keep
  their widths.

**Scores** ``{group: float64 (n_channels,)}``, higher = keep:

* :func:`l1_filter_scores`: ``sum |W[c]|`` of the producer's filter c.
* :func:`chip_scores`: for one image, the group's post-ReLU feature maps form ``A`` (channels x
  H*W); channel c scores ``||A||_* - ||A with row c zeroed||_*`` (nuclear norms), averaged over
  ``n_images`` training images (eval mode, no augmentation).

**Removal** (:func:`structured_prune`): channels are ranked in a removal order and the shortest
prefix whose parameter count gives the ratio closest to the requested one is removed.
``scope="layer"`` (default: every group loses the same fraction) orders
removals by the fraction of its group removed; ``scope="global"`` by score across groups. Every
group keeps at least ``min_channels`` (default 1) channels; removing everything removable gives
the largest reachable ratio. The ratio is SPEC 3's ``all parameters before / all parameters
after`` (every tensor of the smaller model counted).

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
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import skip_init

from prunescope.catalog import methods
from prunescope.data.device import DeviceImages
from prunescope.models.lenet import LeNet5
from prunescope.models.resnet_cifar import CifarResNet
from prunescope.catalog.ratios import UnreachableRatioError
from prunescope.prune.params import count_parameters
from prunescope.catalog.structured_configs import STRUCTURED_CONFIGS, structured_config
from prunescope.train.checkpoint import load_checkpoint, model_from_meta, sidecar_path

__all__ = [
    "PUBLISHED_TOLERANCE",
    "STRUCTURED_CONFIGS",
    "ChannelGroup",
    "ConfigWidths",
    "StructuredResult",
    "channel_groups",
    "chip_scores",
    "config_widths",
    "l1_filter_scores",
    "load_structured_checkpoint",
    "narrow_model",
    "structured_masks",
    "structured_max_ratio",
    "structured_meta",
    "structured_prune",
    "structured_prune_model",
    "structured_scores",
]


STRUCTURED_SCOPES = ("layer", "global")


@dataclass(frozen=True)
class ChannelGroup:
    """Channels removable together.

    Attributes:
        name: the group's key everywhere: the producer convolution's module name for a block's
            inner channels (``"layer2.3.conv1"``) and LeNet-5's convolutions, the stage's module
            name for a residual stream (``"layer2"``).
        producers: ``(conv, bn or None)`` module names of every ``nn.Conv2d`` whose output
            channels these are, with the ``nn.BatchNorm2d`` normalising them (one pair for an
            inner group; the stem and every block's ``conv2``/``bn2`` for a stream).
        consumers: ``(module name, span)`` of each layer reading them: ``span`` = input
            columns per channel (1 for a convolution, H*W for a Linear after flatten).
        channels: number of channels (of the model the groups were read from).
        maps: modules whose outputs, after a ReLU, are the group's feature maps (CHIP): the BN
            (ResNet inner), the convolution (LeNet-5), the stem's ``bn1`` and every block of
            the stage (a stream: block outputs are already rectified).
        shortcut: for the stream of stages 2 and 3, ``(block, source stream, offset)``: the
            option-A shortcut of ``block`` carries channel c of ``source`` into channel
            ``c + offset``; ``None`` otherwise.
    """

    name: str
    producers: tuple[tuple[str, str | None], ...]
    consumers: tuple[tuple[str, int], ...]
    channels: int
    maps: tuple[str, ...]
    shortcut: tuple[str, str, int] | None = None


def _stream_groups(model: CifarResNet) -> dict[str, ChannelGroup]:
    """``{stage: its residual-stream group}`` (see :func:`channel_groups`)."""
    stages = ("layer1", "layer2", "layer3")
    out = {}
    for si, stage in enumerate(stages):
        blocks = getattr(model, stage)
        producers = [("conv1", "bn1")] if si == 0 else []
        producers += [(f"{stage}.{b}.conv2", f"{stage}.{b}.bn2") for b in range(len(blocks))]
        # the stream is the input of every block of its stage but the first of stages 2 and 3
        consumers = [(f"{stage}.{b}.conv1", 1) for b in range(0 if si == 0 else 1, len(blocks))]
        consumers.append((f"{stages[si + 1]}.0.conv1", 1) if si < 2 else ("classifier", 1))
        maps = (("bn1",) if si == 0 else ()) + tuple(f"{stage}.{b}" for b in range(len(blocks)))
        shortcut = None if si == 0 else (f"{stage}.0", stages[si - 1],
                                         blocks[0].pad_channels // 2)
        out[stage] = ChannelGroup(stage, tuple(producers), tuple(consumers),
                                  blocks[0].conv2.out_channels, maps, shortcut)
    return out


def channel_groups(model: nn.Module, streams: bool = False) -> list[ChannelGroup]:
    """The removable channel groups of a CIFAR ResNet or LeNet-5, in forward order.

    Args:
        model: the network (unpruned or already narrowed: widths are read from the modules).
        streams: also the residual streams of a CIFAR ResNet (``"layer1"``: the stem
            ``conv1``/``bn1`` and every ``layer1`` block's ``conv2``/``bn2``, read by every
            ``layer1`` block's ``conv1`` and ``layer2.0.conv1``; likewise ``"layer2"``, and
            ``"layer3"`` read by the classifier), each before its stage's inner groups; the
            default (off) is the inner channels only, as the ``"uniform"`` config prunes them.
            LeNet-5 has no stream.

    Raises:
        TypeError: ``model`` is neither :class:`~prunescope.models.CifarResNet` nor
            :class:`~prunescope.models.LeNet5`.
    """
    if isinstance(model, CifarResNet):
        stream = _stream_groups(model) if streams else {}
        groups = []
        for stage in ("layer1", "layer2", "layer3"):
            if stage in stream:
                groups.append(stream[stage])
            for i, block in enumerate(getattr(model, stage)):
                p = f"{stage}.{i}"
                groups.append(ChannelGroup(f"{p}.conv1", ((f"{p}.conv1", f"{p}.bn1"),),
                                           ((f"{p}.conv2", 1),), block.conv1.out_channels,
                                           (f"{p}.bn1",)))
        return groups
    if isinstance(model, LeNet5):
        c2 = model.conv2.out_channels
        span = model.fc1.in_features // c2
        return [ChannelGroup("conv1", (("conv1", None),), (("conv2", 1),),
                             model.conv1.out_channels, ("conv1",)),
                ChannelGroup("conv2", (("conv2", None),), (("fc1", span),), c2, ("conv2",))]
    raise TypeError(
        f"structured pruning knows the channel structure of CifarResNet and LeNet5 only, got "
        f"{type(model).__name__}; use unstructured pruning (prunescope.prune.prune_model) for it"
    )


def l1_filter_scores(model: nn.Module, groups: Sequence[ChannelGroup] | None = None
                     ) -> dict[str, torch.Tensor]:
    """L1 norm of every output filter of each group's producer (Li et al. 2017).

    Args:
        model: the network.
        groups: the groups to score (default: :func:`channel_groups`, the inner channels).

    Returns:
        ``{group name: float64 CPU tensor (n_channels,)}``, ``sum_{i,kh,kw} |W[c, i, kh, kw]|``
        of the producer; for a stream (several producers) the sum over its producers, i.e. the
        L1 norm of all filters writing channel c.
    """
    modules = dict(model.named_modules())
    out = {}
    with torch.no_grad():
        for g in channel_groups(model) if groups is None else groups:
            out[g.name] = sum(modules[conv].weight.detach().to("cpu", torch.float64)
                              .abs().flatten(1).sum(1) for conv, _ in g.producers)
    return out


def _nuclear_drop(a: torch.Tensor) -> torch.Tensor:
    """Channel independence for a batch of feature-map matrices.

    Args:
        a: ``(N, C, M)`` float64, N images' C channels x M = H*W positions.

    Returns:
        ``(N, C)``: ``||A_n||_* - ||A_n with row c zeroed||_*``.

    The singular values of ``A`` are the square roots of the eigenvalues of the Gram matrix
    ``G = A A^T`` (C x C), and zeroing row c of ``A`` zeroes row and column c of ``G``, leaving
    the principal submatrix ``G[-c, -c]`` (plus a zero eigenvalue). So one ``(C, C)`` Gram
    product and a batched ``eigvalsh`` of the C submatrices of size C-1 give all C nuclear norms
    at ``O(C^2 M + C^4)`` instead of C singular value decompositions of ``C x M`` matrices
    (about 50x faster on ResNet-56 feature maps; same values to ~1e-8 relative, see the tests).
    """
    n, c, _ = a.shape
    gram = a @ a.transpose(1, 2)  # (N, C, C)
    full = torch.linalg.eigvalsh(gram).clamp_min(0).sqrt().sum(-1)  # (N,)
    if c == 1:
        return full.unsqueeze(1)
    others = torch.arange(c, device=a.device).repeat(c, 1)
    others = others[~torch.eye(c, dtype=torch.bool, device=a.device)].view(c, c - 1)
    sub = gram[:, others.unsqueeze(2), others.unsqueeze(1)]  # (N, C, C-1, C-1)
    return full.unsqueeze(1) - torch.linalg.eigvalsh(sub).clamp_min(0).sqrt().sum(-1)


@torch.no_grad()
def chip_scores(
    model: nn.Module,
    images: DeviceImages,
    n_images: int = 256,
    *,
    batch_size: int = 32,
    seed: int = 0,
    groups: Sequence[ChannelGroup] | None = None,
) -> dict[str, torch.Tensor]:
    """Channel independence (CHIP, Sui et al. 2021) of every channel of every group.

    For each image and group, ``A`` is the group's feature map after its BN and ReLU (ResNet:
    ``relu(bn1(conv1(x)))`` of a block; LeNet-5: ``relu(conv(x))`` before pooling), as a
    ``(C, H*W)`` matrix; channel c scores ``||A||_* - ||A with row c zeroed||_*`` (nuclear norms
    in float64, all C row-deletions of a batch of images at once via the Gram matrix, see
    :func:`_nuclear_drop`), averaged over the images. A channel whose map is zero scores 0, one
    that is linearly dependent on the others scores low, an independent one scores high. A
    residual stream has one map per layer writing it (the stem's ``relu(bn1(conv1(x)))`` and
    every block's output, as CHIP scores a block's ``conv2`` on its output); its score is the
    mean over those maps.

    Args:
        model: the trained network (unchanged; run in eval mode, its mode restored).
        images: training images, on the model's device; ``n_images`` of them drawn without
            replacement in a seeded random order, no augmentation.
        n_images: images averaged over (capped at ``len(images)``).
        batch_size: images per forward pass (memory: ``batch * C^2 * H*W`` doubles per group).
        seed: the draw of the images.
        groups: the groups to score (default: :func:`channel_groups`, the inner channels).

    Returns:
        ``{group name: float64 CPU tensor (n_channels,)}``.
    """
    if n_images < 1:
        raise ValueError(f"n_images must be >= 1, got {n_images}")
    groups = channel_groups(model) if groups is None else list(groups)
    modules = dict(model.named_modules())
    feats: dict[str, torch.Tensor] = {}

    def hook(name: str):
        def save(_module: nn.Module, _inp: Any, out: torch.Tensor) -> None:
            feats[name] = F.relu(out)
        return save

    handles = [modules[m].register_forward_hook(hook(m))
               for m in dict.fromkeys(m for g in groups for m in g.maps)]
    sums = {g.name: torch.zeros(g.channels, dtype=torch.float64) for g in groups}
    was_training = model.training
    model.eval()
    n_used = 0
    try:
        gen = torch.Generator().manual_seed(int(seed))
        steps = images.num_batches(batch_size, -(-min(n_images, len(images)) // batch_size))
        for xb, _ in images.batches(batch_size, shuffle=True, generator=gen, max_steps=steps):
            xb = xb[: n_images - n_used]
            feats.clear()
            model(xb)
            for g in groups:
                for m in g.maps:
                    f = feats[m].to(torch.float64)
                    sums[g.name] += _nuclear_drop(f.flatten(2)).sum(0).cpu() / len(g.maps)
            n_used += len(xb)
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    return {name: s / n_used for name, s in sums.items()}


def structured_scores(method: str, model: nn.Module, images: DeviceImages | None = None,
                      n_images: int = 256, seed: int = 0,
                      groups: Sequence[ChannelGroup] | None = None) -> dict[str, torch.Tensor]:
    """Scores of the structured ``method`` (``images`` needed by one that reads feature maps,
    :attr:`~prunescope.catalog.methods.Method.needs_feature_maps`) of ``groups`` (default:
    :func:`channel_groups`, the inner channels)."""
    rec = methods.method(method)
    if rec.kind != "structured":
        raise ValueError(f"unknown structured method {method!r} (it is {rec.kind}); choose one "
                         f"of {', '.join(methods.names('structured'))}")
    if not rec.needs_feature_maps:
        return rec.scorer()(model, groups)
    if images is None:
        raise ValueError(f"{rec.label} needs feature maps: pass images=<training DeviceImages>")
    return rec.scorer()(model, images, n_images=n_images, seed=seed, groups=groups)


def _check_scores(groups: Sequence[ChannelGroup], scores: Mapping[str, torch.Tensor],
                  known: Sequence[ChannelGroup] | None = None) -> list[torch.Tensor]:
    """Scores of ``groups`` as float64 CPU vectors; names outside ``known`` (default
    ``groups``) are refused."""
    out = []
    for g in groups:
        if g.name not in scores:
            raise ValueError(f"scores lack group {g.name!r}; score every group of "
                             f"channel_groups(model) ({[x.name for x in groups][:3]}...)")
        s = torch.as_tensor(scores[g.name]).detach().to("cpu", torch.float64).reshape(-1)
        if s.numel() != g.channels:
            raise ValueError(f"scores of {g.name!r} have {s.numel()} entries, the group has "
                             f"{g.channels} channels")
        if not torch.isfinite(s).all():
            raise ValueError(f"scores of {g.name!r} contain NaN or inf")
        out.append(s)
    unknown = sorted(set(scores) - {g.name for g in (groups if known is None else known)})
    if unknown:
        raise ValueError(f"scores name unknown groups {unknown}")
    return out


def _removal_order(groups: Sequence[ChannelGroup], scores: list[torch.Tensor], scope: str,
                   min_channels: int) -> list[tuple[int, int]]:
    """``(group index, channel)`` in removal order; each group's last ``min_channels`` stay.

    Within a group channels go lowest score first (ties: lower channel index first).
    ``layer``: the j-th removal of group g has key ``(j / n_g, g)``, so any prefix removes about
    the same fraction of every group; ``global``: key ``(score, g, channel)``.
    """
    items = []
    for gi, (g, s) in enumerate(zip(groups, scores)):
        order = torch.sort(s, stable=True).indices.tolist()
        for j, ch in enumerate(order[: max(0, g.channels - min_channels)], start=1):
            key = (j / g.channels, gi) if scope == "layer" else (float(s[ch]), gi, ch)
            items.append((key, gi, ch))
    items.sort(key=lambda t: t[0])
    return [(gi, ch) for _, gi, ch in items]


def _rows(g: ChannelGroup) -> list[str]:
    """Modules whose output entries are the group's channels: producers and their BNs."""
    return [m for pair in g.producers for m in pair if m is not None]


def _shapes_after(model: nn.Module, groups: Sequence[ChannelGroup], widths: Sequence[int]
                  ) -> dict[str, tuple[int, ...]]:
    """Every parameter's shape once group g is narrowed to ``widths[g]`` channels."""
    shapes = {n: list(p.shape) for n, p in model.named_parameters()}
    for g, k in zip(groups, widths):
        for module in _rows(g):
            for n in (f"{module}.weight", f"{module}.bias"):
                if n in shapes:
                    shapes[n][0] = k
        for consumer, span in g.consumers:
            shapes[f"{consumer}.weight"][1] = k * span
    return {n: tuple(s) for n, s in shapes.items()}


def _count_after(model: nn.Module, groups: Sequence[ChannelGroup], widths: Sequence[int]) -> int:
    return sum(math.prod(s) for s in _shapes_after(model, groups, widths).values())


@dataclass
class StructuredResult:
    """A structurally pruned model and what it achieves.

    Attributes:
        model: the smaller network (a deep copy; the input model is untouched).
        keep: ``{group name: int64 CPU tensor of kept channel indices, ascending}``.
        widths: ``{group name: kept channels}``.
        masks: the equivalent ``{param name: bool tensor}`` on the unpruned model
            (:func:`structured_masks`).
        achieved_ratio: ``n_before / n_after``.
        requested_ratio: the ratio asked for (``None`` when a keep fraction was given).
        keep_fraction: the keep fraction asked for (``None`` when a ratio was given).
        n_before, n_after: all parameters of the unpruned and the smaller model.
        max_ratio: the largest reachable ratio (every group at ``min_channels``; for a named
            config every group the config narrows).
        scope: ``"layer"`` or ``"global"``.
        config: ``"uniform"`` or a name in :data:`STRUCTURED_CONFIGS` (see
            :func:`config_widths`).
        setting: the published setting a named config started from (``None`` for uniform).
        scale: the factor its keep proportions were scaled by (1.0 = as published; ``None``
            for uniform).
    """

    model: nn.Module
    keep: dict[str, torch.Tensor]
    widths: dict[str, int]
    masks: dict[str, torch.Tensor]
    achieved_ratio: float
    requested_ratio: float | None
    keep_fraction: float | None
    n_before: int
    n_after: int
    max_ratio: float
    scope: str
    config: str = "uniform"
    setting: str | None = None
    scale: float | None = None

    def summary(self) -> dict[str, Any]:
        """JSON-ready record (widths, ratios, counts) for a store row or a sidecar."""
        return {
            "achieved_ratio": self.achieved_ratio,
            "requested_ratio": self.requested_ratio,
            "keep_fraction": self.keep_fraction,
            "n_before": self.n_before,
            "n_after": self.n_after,
            "max_ratio": self.max_ratio,
            "scope": self.scope,
            "config": self.config,
            "setting": self.setting,
            "scale": self.scale,
            "widths": dict(self.widths),
            "keep": {n: k.tolist() for n, k in self.keep.items()},
        }


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
        for n in (f"{m}.{attr}" for m in _rows(g) for attr in ("weight", "bias")):
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
        for module in _rows(g):
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

#: a request this close (relative) to a setting's reported ratio gets the setting as published
PUBLISHED_TOLERANCE = 0.01


@dataclass(frozen=True)
class ConfigWidths:
    """Channel widths a named config gives one model at one requested ratio.

    Attributes:
        widths: ``{group name: kept channels}`` for every inner group and every stream the
            config narrows (groups a setting skips at full width).
        setting: the published setting they come from.
        scale: the factor its keep proportions were scaled by (1.0 = as published).
        achieved_ratio: ``n_before / n_after`` of the model with these widths.
        max_ratio: the config's largest reachable ratio (every group it narrows at
            ``min_channels``).
    """

    widths: dict[str, int]
    setting: str
    scale: float
    achieved_ratio: float
    max_ratio: float


def config_widths(model: nn.Module, config: str, ratio: float, *, min_channels: int = 1
                  ) -> ConfigWidths:
    """Per-group widths of the named ``config`` (:data:`STRUCTURED_CONFIGS`) at ``ratio``.

    The base is the config's published setting whose reported ratio is nearest ``ratio`` (in
    ``log``). A request within :data:`PUBLISHED_TOLERANCE` (1%) of that reported ratio gets the
    setting as published: group g of ``n_g`` channels keeps ``int(n_g * (1 - rate_g))`` (the
    sources' truncation), whatever ratio that measures here. Any other request scales the
    setting's keep proportions ``k_g = 1 - rate_g`` by one factor c, preserving their proportion
    ("by preserving the proportion of unpruned weights", Good et al. 2022, Table 13): group g
    keeps ``floor(c * k_g * n_g)`` channels, clipped to ``[min_channels, n_g]``. Channels are
    added back one at a time from every group at ``min_channels``, in order of the factor c at
    which ``floor(c k_g n_g)`` reaches them (groups reaching theirs at the same c in forward
    order, so the ratio moves by one channel of one group per step), and the prefix whose
    achieved ratio is closest to ``ratio`` wins (ties: fewer channels removed); ``scale`` is
    the factor of its last step. Groups the setting does not name keep all their channels.
    Widths depend on the architecture and the ratio only, not on scores.

    Raises:
        ValueError: unknown config, a model that is not the config's architecture, or a bad
            ratio.
        UnreachableRatioError: ``ratio`` above the config's largest reachable ratio.
    """
    cfg = structured_config(config)
    if getattr(model, "arch", None) != cfg.arch:
        raise ValueError(f"structured config {config!r} is for {cfg.arch}, got "
                         f"{type(model).__name__}{getattr(model, 'depth', '')}; use config "
                         "'uniform' for other architectures")
    if not (math.isfinite(ratio) and ratio >= 1.0):
        raise ValueError(f"ratio must be a finite number >= 1 (1 = dense), got {ratio}")
    groups = channel_groups(model, streams=True)
    n_of = {g.name: g.channels for g in groups}
    n_before = count_parameters(model)
    setting = min(cfg.settings, key=lambda st: abs(math.log(ratio / st.reported_ratio)))
    rates = dict(setting.rates)
    # every inner group (the skipped ones whole) and the streams some setting narrows
    named = set(cfg.groups())
    inner = {g.name for g in channel_groups(model)}
    names = [g.name for g in groups if g.name in inner or g.name in named]

    def count(widths: dict[str, int]) -> int:
        return _count_after(model, groups, [widths.get(g.name, g.channels) for g in groups])

    def scaled(c: float) -> dict[str, int]:
        return {n: min(n_of[n], max(min_channels, math.floor(c * (1.0 - rates[n]) * n_of[n]
                                                             + 1e-9)))
                if n in rates else n_of[n] for n in names}

    max_ratio = n_before / count(scaled(0.0))
    if ratio > max_ratio * (1 + 1e-12):
        raise UnreachableRatioError(
            f"structured ratio {ratio:g} is unreachable with config {config!r}: with every "
            f"group it narrows down to {min_channels} channel(s) the model keeps "
            f"{n_before / max_ratio:.0f} of {n_before} parameters, ratio {max_ratio:.6g}; "
            "lower the ratio")
    if abs(ratio / setting.reported_ratio - 1.0) <= PUBLISHED_TOLERANCE:
        widths = {n: max(min_channels, int(n_of[n] * (1.0 - rates[n]))) if n in rates
                  else n_of[n] for n in names}
        return ConfigWidths(widths, setting.name, 1.0, n_before / count(widths), max_ratio)
    # one channel of one group at a time, in order of the factor at which floor(c k n) reaches
    # it (groups stepping at the same factor in forward order): after every step at factors
    # <= c the widths are scaled(c), and in between the ratio moves by one channel of one group
    base = scaled(0.0)
    order = [n for n in names if n in rates]
    steps = sorted((j / ((1.0 - rates[n]) * n_of[n]), order.index(n), n)
                   for n in order if rates[n] < 1.0
                   for j in range(base[n] + 1, n_of[n] + 1))

    def after(r: int) -> dict[str, int]:
        w = dict(base)
        for _, _, n in steps[:r]:
            w[n] += 1
        return w

    # the ratio falls strictly with every step: the longest prefix still reaching the ratio,
    # then whichever of it and one step more is closer (ties: the longer, fewer removed)
    lo, hi = 0, len(steps)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if n_before / count(after(mid)) >= ratio:
            lo = mid
        else:
            hi = mid - 1
    r = lo
    if r < len(steps):
        here, more = n_before / count(after(r)), n_before / count(after(r + 1))
        if ratio - more <= here - ratio:
            r += 1
    widths = after(r)
    return ConfigWidths(widths, setting.name, steps[r - 1][0] if r else 0.0,
                        n_before / count(widths), max_ratio)


def _select_keep(groups: Sequence[ChannelGroup], widths: Mapping[str, int],
                 scores: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Kept channels (ascending) of every group in ``widths``: the highest-scoring ones, except
    that a stream keeps every channel the shortcut from the previous stage carries a kept
    channel into (so the removed channels of a stream are zero in the masked model)."""
    keep: dict[str, torch.Tensor] = {}
    for g in groups:
        if g.name not in widths:
            continue
        w = widths[g.name]
        forced: list[int] = []
        if g.shortcut is not None:
            _, source, offset = g.shortcut
            src = keep.get(source, torch.arange(next(x.channels for x in groups
                                                     if x.name == source)))
            forced = [int(c) + offset for c in src]
            if len(forced) > w:
                raise ValueError(f"stream {g.name} keeps {w} channels but the shortcut from "
                                 f"{source} carries {len(forced)} kept channels into it")
        if w == g.channels:
            keep[g.name] = torch.arange(g.channels)
            continue
        order = torch.sort(scores[g.name], descending=True, stable=True).indices.tolist()
        fset = set(forced)
        chosen = forced + [c for c in order if c not in fset][: w - len(forced)]
        keep[g.name] = torch.tensor(sorted(chosen), dtype=torch.int64)
    return keep


def structured_prune(
    model: nn.Module,
    scores: Mapping[str, torch.Tensor],
    ratio: float | None = None,
    *,
    keep_fraction: float | None = None,
    scope: str = "layer",
    min_channels: int = 1,
    config: str = "uniform",
) -> StructuredResult:
    """Remove the lowest-scoring channels of ``model`` (a copy) to ``ratio`` or ``keep_fraction``.

    Args:
        model: a CIFAR ResNet or LeNet-5 (unchanged).
        scores: ``{group name: (n_channels,)}`` from :func:`l1_filter_scores` or
            :func:`chip_scores` (higher = keep).
        ratio: target ``n_before / n_after``: the removal-order prefix whose achieved ratio is
            closest to it is removed (ties: fewer channels removed).
        keep_fraction: instead of ``ratio``: keep ``round(keep_fraction * n_g)`` channels of
            every group (at least ``min_channels``); needs ``scope="layer"``.
        scope: ``"layer"`` (same fraction removed from every group) or ``"global"`` (scores
            compared across groups).
        min_channels: channels every group keeps at least (>= 1).
        config: ``"uniform"`` (default: the inner channels of every block, one fraction
            everywhere, as above) or a published per-layer config in
            :data:`STRUCTURED_CONFIGS` for ResNet-56: its widths come from
            :func:`config_widths` (needs ``ratio`` and ``scope="layer"``), the scores choose
            which channels; ``scores`` are needed only for the groups it narrows.

    Returns:
        :class:`StructuredResult` with the smaller model and the equivalent masks.

    Raises:
        ValueError: neither or both of ``ratio``/``keep_fraction``, bad values or scores.
        UnreachableRatioError: ``ratio`` above the largest reachable ratio (every group down to
            ``min_channels``); the message names both.
    """
    if (ratio is None) == (keep_fraction is None):
        raise ValueError("give exactly one of ratio=<n_before / n_after> or "
                         "keep_fraction=<kept channels per group, in (0, 1]>")
    if scope not in STRUCTURED_SCOPES:
        raise ValueError(f"unknown scope {scope!r}; choose one of {STRUCTURED_SCOPES}")
    if min_channels < 1:
        raise ValueError(f"min_channels must be >= 1, got {min_channels}")
    if config != "uniform":
        return _config_prune(model, scores, ratio, keep_fraction, scope, min_channels, config)
    groups = channel_groups(model)
    score_list = _check_scores(groups, scores)
    n_before = count_parameters(model)
    floor_widths = [min(min_channels, g.channels) for g in groups]
    max_ratio = n_before / _count_after(model, groups, floor_widths)
    if keep_fraction is not None:
        if scope != "layer":
            raise ValueError("keep_fraction applies per group: use scope='layer' or give a ratio")
        if not 0.0 < keep_fraction <= 1.0:
            raise ValueError(f"keep_fraction must be in (0, 1], got {keep_fraction}")
        widths = [max(f, math.floor(keep_fraction * g.channels + 0.5))
                  for g, f in zip(groups, floor_widths)]
        kept_lists = [torch.sort(s, descending=True, stable=True).indices[:w]
                      for s, w in zip(score_list, widths)]
    else:
        if not (math.isfinite(ratio) and ratio >= 1.0):
            raise ValueError(f"ratio must be a finite number >= 1 (1 = dense), got {ratio}")
        if ratio > max_ratio * (1 + 1e-12):
            raise UnreachableRatioError(
                f"structured ratio {ratio:g} is unreachable: with every group down to "
                f"{min_channels} channel(s) the model keeps {n_before / max_ratio:.0f} of "
                f"{n_before} parameters, ratio {max_ratio:.6g}; lower the ratio"
            )
        order = _removal_order(groups, score_list, scope, min_channels)

        def widths_after(r: int) -> list[int]:
            w = [g.channels for g in groups]
            for gi, _ in order[:r]:
                w[gi] -= 1
            return w

        # smallest prefix reaching the ratio (parameter count falls strictly with each removal)
        lo, hi = 0, len(order)
        while lo < hi:
            mid = (lo + hi) // 2
            if n_before / _count_after(model, groups, widths_after(mid)) >= ratio:
                hi = mid
            else:
                lo = mid + 1
        r = lo
        if r > 0:
            above = n_before / _count_after(model, groups, widths_after(r))
            below = n_before / _count_after(model, groups, widths_after(r - 1))
            if ratio - below <= above - ratio:
                r -= 1
        removed: list[set[int]] = [set() for _ in groups]
        for gi, ch in order[:r]:
            removed[gi].add(ch)
        kept_lists = [torch.tensor([c for c in range(g.channels) if c not in rm], dtype=torch.int64)
                      for g, rm in zip(groups, removed)]
    keep = {g.name: k.sort().values for g, k in zip(groups, kept_lists)}
    small = narrow_model(model, keep)
    n_after = count_parameters(small)
    return StructuredResult(
        model=small,
        keep=keep,
        widths={n: int(k.numel()) for n, k in keep.items()},
        masks=structured_masks(model, keep),
        achieved_ratio=n_before / n_after,
        requested_ratio=None if ratio is None else float(ratio),
        keep_fraction=None if keep_fraction is None else float(keep_fraction),
        n_before=n_before,
        n_after=n_after,
        max_ratio=max_ratio,
        scope=scope,
    )


def _config_prune(model: nn.Module, scores: Mapping[str, torch.Tensor], ratio: float | None,
                  keep_fraction: float | None, scope: str, min_channels: int, config: str
                  ) -> StructuredResult:
    """:func:`structured_prune` with a named per-layer config."""
    if keep_fraction is not None or scope != "layer":
        raise ValueError(f"config {config!r} fixes every group's width from the ratio: give "
                         "ratio=<n_before / n_after> and scope='layer'")
    cw = config_widths(model, config, ratio, min_channels=min_channels)
    all_groups = channel_groups(model, streams=True)
    groups = [g for g in all_groups if g.name in cw.widths]
    narrowed = [g for g in groups if cw.widths[g.name] < g.channels]
    score_list = _check_scores(narrowed, scores, known=all_groups)
    keep = _select_keep(groups, cw.widths, dict(zip((g.name for g in narrowed), score_list)))
    small = narrow_model(model, keep)
    n_before, n_after = count_parameters(model), count_parameters(small)
    return StructuredResult(
        model=small, keep=keep, widths={n: int(k.numel()) for n, k in keep.items()},
        masks=structured_masks(model, keep), achieved_ratio=n_before / n_after,
        requested_ratio=float(ratio), keep_fraction=None, n_before=n_before, n_after=n_after,
        max_ratio=cw.max_ratio, scope=scope, config=config, setting=cw.setting, scale=cw.scale)


def structured_max_ratio(model: nn.Module, config: str = "uniform", min_channels: int = 1
                         ) -> float:
    """The largest ratio structured pruning reaches on ``model`` with ``config``: every group
    it narrows (uniform: every inner group) down to ``min_channels`` channels."""
    if config != "uniform":
        return config_widths(model, config, 1.0, min_channels=min_channels).max_ratio
    groups = channel_groups(model)
    floor_widths = [min(min_channels, g.channels) for g in groups]
    return count_parameters(model) / _count_after(model, groups, floor_widths)


def structured_prune_model(
    model: nn.Module,
    method: str,
    ratio: float,
    *,
    images: DeviceImages | None = None,
    n_images: int = 256,
    seed: int = 0,
    scope: str = "layer",
    config: str = "uniform",
) -> StructuredResult:
    """Score ``model`` with the structured ``method`` (one that reads feature maps reads
    ``n_images`` of ``images``, drawn with ``seed``) and remove channels to ``ratio`` with ``config``: one
    call for a study job. With a named config only the groups it narrows are scored. Fine-tune
    ``result.model`` with ``prunescope.train.fit`` (no masks needed: the removed channels no
    longer exist)."""
    groups = None
    if config != "uniform":
        widths = config_widths(model, config, ratio).widths
        groups = [g for g in channel_groups(model, streams=True)
                  if widths.get(g.name, g.channels) < g.channels]
    scores = structured_scores(method, model, images, n_images=n_images, seed=seed,
                               groups=groups)
    return structured_prune(model, scores, ratio, scope=scope, config=config)


def structured_meta(result: StructuredResult, method: str, meta: Mapping[str, Any]
                    ) -> dict[str, Any]:
    """Checkpoint sidecar for ``save_checkpoint(path, result.model, structured_meta(...))``.

    Carries the parent's ``meta`` (``arch``, ``num_classes``, ``in_channels``, ``image_size``,
    ``weight_decay``, ...) and adds ``structured = {"method", **result.summary()}``, whose
    ``widths`` let :func:`load_structured_checkpoint` rebuild the smaller model.
    """
    return {**dict(meta), "structured": {"method": method.lower(), **result.summary()}}


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
