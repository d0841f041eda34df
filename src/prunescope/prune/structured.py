"""Structured channel pruning (SPEC 3, last bullet): L1-norm filter pruning (Li et al., ICLR 2017)
and channel independence (CHIP, Sui et al., NeurIPS 2021), with channels removed for real.

The channels removable together are :mod:`prunescope.prune.channel_groups`, their scores
:mod:`prunescope.prune.channel_scores`, the smaller network :mod:`prunescope.prune.narrow`;
this module decides how many channels of each group go (a ratio, a keep fraction or a published
config) and ties the steps together (:func:`structured_prune_model`).

**Removal** (:func:`structured_prune`): channels are ranked in a removal order and the shortest
prefix whose parameter count gives the ratio closest to the requested one is removed.
``scope="layer"`` (default: every group loses the same fraction) orders
removals by the fraction of its group removed; ``scope="global"`` by score across groups. Every
group keeps at least ``min_channels`` (default 1) channels; removing everything removable gives
the largest reachable ratio. The ratio is SPEC 3's ``all parameters before / all parameters
after`` (every tensor of the smaller model counted).

"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from prunescope.data.device import DeviceImages
from prunescope.prune.channel_groups import ChannelGroup, channel_groups, group_rows
from prunescope.prune.channel_scores import structured_scores
from prunescope.prune.narrow import narrow_model, structured_masks
from prunescope.catalog.ratios import UnreachableRatioError
from prunescope.prune.params import count_parameters
from prunescope.catalog.structured_configs import STRUCTURED_CONFIGS, structured_config

__all__ = ["PUBLISHED_TOLERANCE", "STRUCTURED_CONFIGS", "ConfigWidths", "StructuredResult",
           "config_widths", "structured_max_ratio", "structured_meta", "structured_prune",
           "structured_prune_model"]


STRUCTURED_SCOPES = ("layer", "global")
#: a request this close (relative) to a setting's reported ratio gets the setting as published
PUBLISHED_TOLERANCE = 0.01


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


def _shapes_after(model: nn.Module, groups: Sequence[ChannelGroup], widths: Sequence[int]
                  ) -> dict[str, tuple[int, ...]]:
    """Every parameter's shape once group g is narrowed to ``widths[g]`` channels."""
    shapes = {n: list(p.shape) for n, p in model.named_parameters()}
    for g, k in zip(groups, widths):
        for module in group_rows(g):
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
        kept_lists = _kept_for_ratio(model, groups, score_list, ratio, scope, min_channels,
                                     n_before)
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


def _kept_for_ratio(model: nn.Module, groups: Sequence[ChannelGroup],
                    score_list: list[torch.Tensor], ratio: float, scope: str, min_channels: int,
                    n_before: int) -> list[torch.Tensor]:
    """Each group's kept channel indices once the prefix of the removal order whose achieved
    ratio is closest to ``ratio`` is removed (ties: fewer channels removed)."""
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
    return [torch.tensor([c for c in range(g.channels) if c not in rm], dtype=torch.int64)
            for g, rm in zip(groups, removed)]


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
