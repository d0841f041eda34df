"""Masks to an exact pruning ratio (SPEC 3, "Pruning ratio" and "Layer-wise scope").

Ratio ``t = n_total / n_nonzero`` where ``n_total`` counts every parameter of the model (weights,
biases, BatchNorm, classifier) and ``n_nonzero = (n_total - n_prunable) + k``: parameters outside
the prunable set always count as nonzero, ``k`` is the number of prunable weights kept. So that
``t`` is met, ``k`` is the largest count whose achieved ratio is at least ``t``:
``k = floor(n_total / t - (n_total - n_prunable))`` (checked against the achieved ratio as it is
recorded, in floating point), which puts the achieved ratio at or just above the requested one,
within one prunable weight. The largest reachable ratio keeps ``k = 0``:
``n_total / (n_total - n_prunable)``. A caller that already knows ``k`` (iterative pruning) passes
``keep=k`` instead of a ratio and gets exactly ``k`` kept weights, with no ratio in between.

Thresholds are computed for one model at a time from a dict of that model's scores
(:func:`masks_from_scores`); a stacked pack of G models calls it once per model on per-model views,
so no threshold is ever shared across models.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from prunescope.catalog.ratios import UnreachableRatioError, keep_count
from prunescope.choices import SCOPES
from prunescope.prune.params import count_parameters


@dataclass(frozen=True)
class MaskResult:
    """Masks of one model and what they achieve.

    Attributes:
        masks: ``{param name: bool tensor of the param's shape}``, True = kept. Only prunable
            parameters appear; every other parameter is dense.
        achieved_ratio: ``n_total / n_nonzero`` after masking (float).
        kept: ``{param name: number of kept weights}``.
        densities: ``{param name: kept / numel}`` in [0, 1].
        requested_ratio: the ratio asked for; with ``keep=k`` the ratio that keeping exactly
            ``k`` prunable weights gives, ``n_total / (n_total - n_prunable + k)``.
        n_total: all parameters of the model.
        n_nonzero: ``n_total - pruned`` (parameters that are nonzero by mask).
        scope: ``"global"`` or ``"layer"``.
    """

    masks: dict[str, torch.Tensor]
    achieved_ratio: float
    kept: dict[str, int]
    densities: dict[str, float]
    requested_ratio: float
    n_total: int
    n_nonzero: int
    scope: str = field(default="global")

    def summary(self) -> dict:
        """JSON-ready record of the ratio and per-layer densities, for a checkpoint sidecar."""
        return {
            "requested_ratio": self.requested_ratio,
            "achieved_ratio": self.achieved_ratio,
            "scope": self.scope,
            "n_total": self.n_total,
            "n_nonzero": self.n_nonzero,
            "kept": dict(self.kept),
            "densities": dict(self.densities),
        }


def _check_keep(n_total: int, n_prunable: int, keep: int) -> int:
    """``keep`` as the number of prunable weights to keep, after the checks :func:`keep_count`
    makes of its counts (``0 < n_prunable <= n_total``; one parameter must stay nonzero)."""
    if not 0 < n_prunable <= n_total:
        raise ValueError(f"need 0 < n_prunable <= n_total, got {n_prunable} and {n_total}")
    if isinstance(keep, bool) or int(keep) != keep or not 0 <= keep <= n_prunable:
        raise ValueError(f"keep must be a whole number of prunable weights in [0, {n_prunable}], "
                         f"got {keep!r}")
    if n_total - n_prunable + keep == 0:
        raise UnreachableRatioError(
            f"keep=0 is unreachable: every one of the {n_total} parameters is prunable and one "
            "must stay nonzero (the ratio would be undefined); keep at least 1")
    return int(keep)


def _layer_quotas(sizes: list[int], k: int) -> list[int]:
    """Split ``k`` kept weights over layers of ``sizes`` with the same keep fraction ``k / sum``.

    Largest-remainder rounding: each quota is ``floor`` or ``ceil`` of ``k * n_l / sum`` and the
    quotas add up to ``k`` exactly; leftover units go to the largest remainders, ties to the
    earlier layer.
    """
    total = sum(sizes)
    exact = [k * n / total for n in sizes]
    quotas = [math.floor(e) for e in exact]
    rest = k - sum(quotas)
    order = sorted(range(len(sizes)), key=lambda i: (-(exact[i] - quotas[i]), i))
    for i in order[:rest]:
        quotas[i] += 1
    return quotas


def _top_k_mask(flat: torch.Tensor, k: int) -> torch.Tensor:
    """Bool mask of the ``k`` largest entries of 1-D ``flat``; ties go to the lower index."""
    mask = torch.zeros(flat.numel(), dtype=torch.bool)
    if k > 0:
        order = torch.sort(flat, descending=True, stable=True).indices
        mask[order[:k]] = True
    return mask


def masks_from_scores(
    scores: Mapping[str, torch.Tensor],
    n_total: int,
    ratio: float | None = None,
    scope: str = "global",
    *,
    keep: int | None = None,
) -> MaskResult:
    """Keep the top-k scores of one model so that its ratio is ``ratio`` (SPEC 3), or keep
    exactly ``keep`` of them.

    Args:
        scores: ``{param name: score tensor}`` of one model's prunable parameters (any shapes,
            any device; higher = keep). The dict order and row-major flattening define the flat
            index; equal scores are broken by lower flat index first (stable sort on
            (score desc, index asc)), so the result is deterministic.
        n_total: all parameters of that model (every tensor counted).
        ratio: requested ratio ``t >= 1``; ``k`` is :func:`keep_count` of it.
        scope: ``"global"``: one threshold over all prunable weights; ``"layer"``: the same keep
            fraction ``k / n_prunable`` in every layer (per-layer counts rounded by largest
            remainder so they add up to the global ``k``).
        keep: instead of ``ratio``, the number ``k`` of prunable weights to keep (an int in
            ``[0, n_prunable]``); ``requested_ratio`` is then ``n_total / (n_total -
            n_prunable + k)``. Give exactly one of ``ratio`` and ``keep``.

    Returns:
        :class:`MaskResult` with bool CPU masks shaped like the scores.

    Raises:
        TypeError: both or neither of ``ratio`` and ``keep``.
        ValueError: unknown scope, empty or non-finite scores, bad ratio or ``keep``.
        UnreachableRatioError: see :func:`keep_count`; with ``keep``, ``keep=0`` when every
            parameter is prunable.
    """
    if (ratio is None) == (keep is None):
        raise TypeError("give masks_from_scores either a ratio or keep=<number of prunable "
                        f"weights to keep>, not {'both' if keep is not None else 'neither'}")
    if scope not in SCOPES:
        raise ValueError(f"unknown mask scope {scope!r}; choose one of {SCOPES}")
    if not scores:
        raise ValueError("no scores given: the model has no prunable parameters")
    names = list(scores)
    flats = [scores[n].detach().reshape(-1).to("cpu", torch.float64) for n in names]
    for n, f in zip(names, flats):
        if not torch.isfinite(f).all():
            raise ValueError(f"scores of {n!r} contain NaN or inf; scores must be finite")
    sizes = [f.numel() for f in flats]
    n_prunable = sum(sizes)
    if keep is None:
        k = keep_count(n_total, n_prunable, ratio)
        requested = float(ratio)
    else:
        k = _check_keep(n_total, n_prunable, keep)
        requested = n_total / (n_total - n_prunable + k)
    if scope == "global":
        flat_mask = _top_k_mask(torch.cat(flats), k)
        parts = torch.split(flat_mask, sizes)
    else:
        parts = [_top_k_mask(f, q) for f, q in zip(flats, _layer_quotas(sizes, k))]
    masks = {n: part.reshape(scores[n].shape) for n, part in zip(names, parts)}
    return mask_result(masks, n_total, requested, scope)


def mask_result(masks: Mapping[str, torch.Tensor], n_total: int, requested: float,
                scope: str = "global") -> MaskResult:
    """The :class:`MaskResult` of bool ``masks`` over one model's prunable parameters (every
    parameter not in ``masks`` counts as nonzero), ``requested`` the stated ratio."""
    kept = {n: int(m.sum()) for n, m in masks.items()}
    n_nonzero = n_total - sum(m.numel() for m in masks.values()) + sum(kept.values())
    return MaskResult(
        masks=dict(masks),
        achieved_ratio=n_total / n_nonzero,
        kept=kept,
        densities={n: kept[n] / m.numel() for n, m in masks.items()},
        requested_ratio=float(requested),
        n_total=n_total,
        n_nonzero=n_nonzero,
        scope=scope,
    )


def threshold_masks(scores: Mapping[str, torch.Tensor], fraction: float,
                    also: Sequence[torch.Tensor] = ()) -> dict[str, torch.Tensor]:
    """ShrinkBench's mask rule (``keep_rule = "shrinkbench"``, SPEC 8): ``q`` = the quantile at
    ``1 - fraction`` (NumPy's linear interpolation) of the scores of ``scores`` and ``also``
    together, then every weight whose score lies outside ``(-q, q)`` is kept, a symmetric
    threshold: with signed scores a large negative one is kept as well.

    Args:
        scores: ``{param name: score tensor}`` of the weights the mask covers.
        fraction: the keep fraction in (0, 1] (:func:`prunescope.catalog.ratios.shrinkbench_fraction`).
        also: more score tensors the quantile covers but no mask does (the fork's gradient
            strategies score the biases too).

    Returns:
        ``{param name: bool CPU tensor}``, True = kept.
    """
    flat = np.concatenate([t.detach().to("cpu", torch.float64).reshape(-1).numpy()
                           for t in (*scores.values(), *also)])
    q = float(np.quantile(flat, 1.0 - fraction))
    return {n: ~((s.detach().cpu() < q) & (s.detach().cpu() > -q)) for n, s in scores.items()}


def binomial_masks(draws: Mapping[str, torch.Tensor], fraction: float
                   ) -> dict[str, torch.Tensor]:
    """ShrinkBench's random mask (``rp_count = "binomial"``, SPEC 8): each weight whose uniform
    draw is at most ``fraction`` is kept, so the count kept is binomial, not fixed.

    Args:
        draws: ``{param name: i.i.d. uniform [0, 1) tensor}`` (RP's scores).
        fraction: the keep probability in [0, 1].
    """
    return {n: (d.detach().cpu() <= fraction) for n, d in draws.items()}


def make_masks(
    model: nn.Module,
    scores: Mapping[str, torch.Tensor],
    ratio: float | None = None,
    scope: str = "global",
    *,
    keep: int | None = None,
) -> MaskResult:
    """Masks for ``model`` at ``ratio`` (or keeping exactly ``keep`` prunable weights):
    :func:`masks_from_scores` with ``n_total`` counted from ``model``
    (:func:`prunescope.prune.params.count_parameters`).

    Raises:
        ValueError: a score names no parameter of ``model`` or has another shape.
    """
    named = dict(model.named_parameters())
    for n, s in scores.items():
        if n not in named:
            raise ValueError(f"score {n!r} names no parameter of {type(model).__name__}")
        if named[n].shape != s.shape:
            raise ValueError(
                f"score {n!r} has shape {tuple(s.shape)}, parameter has {tuple(named[n].shape)}"
            )
    return masks_from_scores(scores, count_parameters(model), ratio, scope, keep=keep)


@torch.no_grad()
def apply_masks(model: nn.Module, masks: Mapping[str, torch.Tensor]) -> None:
    """Zero the masked-out weights of ``model`` in place (``param *= mask``).

    Raises:
        KeyError: a mask names no parameter of ``model``.
    """
    named = dict(model.named_parameters())
    for n, m in masks.items():
        if n not in named:
            raise KeyError(f"mask {n!r} names no parameter of {type(model).__name__}")
        p = named[n]
        p.mul_(m.to(device=p.device, dtype=p.dtype))


def save_masks(path: str | Path, masks: Mapping[str, torch.Tensor]) -> None:
    """Write masks to a safetensors file (bool tensors, keyed by parameter name)."""
    save_file({n: m.detach().to("cpu", torch.bool).contiguous() for n, m in masks.items()}, str(path))


def load_masks(path: str | Path, device: torch.device | str = "cpu") -> dict[str, torch.Tensor]:
    """Read masks written by :func:`save_masks`: ``{param name: bool tensor}``."""
    return {n: m.to(torch.bool) for n, m in load_file(str(path), device=str(device)).items()}
