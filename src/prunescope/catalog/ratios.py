"""Compression-ratio arithmetic (SPEC 3), without torch: how many prunable weights a mask keeps
to reach a ratio, and the error of a ratio no mask reaches.

Ratio ``t = n_total / n_nonzero`` with ``n_nonzero = (n_total - n_prunable) + k``: parameters
outside the prunable set always count as nonzero, ``k`` is the number of prunable weights kept
(:mod:`prunescope.prune.masks` applies it; the study spec and the audit check ratios with it
before any work).
"""
from __future__ import annotations

import math

from prunescope.errors import UserError

__all__ = ["UnreachableRatioError", "imp_keep_count", "keep_count", "level_ratios",
           "shrinkbench_fraction"]


class UnreachableRatioError(UserError, ValueError):
    """The requested ratio would need keeping fewer than zero prunable weights."""


def keep_count(n_total: int, n_prunable: int, ratio: float) -> int:
    """The largest number ``k`` of prunable weights to keep whose achieved ratio
    ``n_total / (n_total - n_prunable + k)`` (as a float, as :class:`MaskResult` records it) is at
    least the requested ``ratio`` (SPEC 3: "so that t is met"); ``k <= n_prunable``.

    Raises:
        ValueError: ``ratio < 1`` or not finite, or inconsistent counts.
        UnreachableRatioError: ``ratio`` exceeds ``n_total / (n_total - n_prunable)``, i.e. it
            would need fewer than zero prunable weights (SPEC 3; ``n_total`` when every
            parameter is prunable: one must stay nonzero); the message names both.
    """
    if not 0 < n_prunable <= n_total:
        raise ValueError(f"need 0 < n_prunable <= n_total, got {n_prunable} and {n_total}")
    if not (math.isfinite(ratio) and ratio >= 1.0):
        raise ValueError(f"pruning ratio must be a finite number >= 1 (1 = dense), got {ratio}")
    n_fixed = n_total - n_prunable

    def meets(k: int) -> bool:  # the achieved ratio of keeping k, exactly as recorded, is >= t
        return n_fixed + k > 0 and n_total / (n_fixed + k) >= ratio

    k = min(n_prunable, math.floor(n_total / ratio - n_fixed))
    # the float quotient can be one off either way: settle on the recorded ratio itself
    while k < n_prunable and meets(k + 1):
        k += 1
    while k >= 0 and not meets(k):
        k -= 1
    # k < 0: even keeping no prunable weight misses t (or, every parameter being prunable, one
    # must stay nonzero, or the ratio is undefined)
    if k < 0:
        if n_fixed:
            max_ratio, how = n_total / n_fixed, f"all {n_prunable} prunable weights removed"
        else:
            max_ratio, how = float(n_total), "every parameter is prunable and one must stay"
        raise UnreachableRatioError(
            f"pruning ratio {ratio:g} is unreachable: {n_fixed} of the {n_total} parameters are not "
            f"prunable and always count as nonzero, so the largest reachable ratio is "
            f"{max_ratio:.6g} ({how}); lower the ratio or widen the prunable set "
            "(prune_classifier=True, prune_biases=True)"
        )
    return k


def shrinkbench_fraction(n_total: int, n_layers: int, ratio: float) -> float:
    """The fraction of the prunable layers' parameters ShrinkBench keeps for ``ratio``
    (``pruning/utils.py`` ``fraction_to_keep``, SPEC 8): ``(n_total / ratio - (n_total -
    n_layers)) / n_layers``, with ``n_layers`` every parameter of the prunable layers, biases
    included although they are never masked; so the achieved ratio falls short of ``ratio``.

    Raises:
        ValueError: inconsistent counts or a ratio below 1.
        UnreachableRatioError: the fraction is not in (0, 1] (ShrinkBench asserts it).
    """
    if not 0 < n_layers <= n_total:
        raise ValueError(f"need 0 < n_layers <= n_total, got {n_layers} and {n_total}")
    if not (math.isfinite(ratio) and ratio >= 1.0):
        raise ValueError(f"pruning ratio must be a finite number >= 1 (1 = dense), got {ratio}")
    fraction = (n_total / ratio - (n_total - n_layers)) / n_layers
    if not 0 < fraction <= 1:
        raise UnreachableRatioError(
            f"pruning ratio {ratio:g} is unreachable with keep_rule = 'shrinkbench': "
            f"{n_total - n_layers} of the {n_total} parameters are outside the prunable layers, "
            f"so its keep fraction is {fraction:.4g}, not in (0, 1]; the ratio must stay below "
            f"{n_total / (n_total - n_layers):.6g}")
    return fraction


def imp_keep_count(n_prunable: int, prune_fraction: float, level: int) -> int:
    """Prunable weights kept after ``level`` levels of iterative pruning:
    ``round(n_prunable * (1 - f)^level)`` (half rounds up; a level has no requested ratio to
    meet, unlike :func:`keep_count`)."""
    return math.floor(n_prunable * (1.0 - prune_fraction) ** level + 0.5)


def level_ratios(n_total: int, n_prunable: int, *, levels: int | None = None,
                 target_ratio: float | None = None, prune_fraction: float = 0.2) -> list[float]:
    """The achieved ratios of iterative pruning levels 1, 2, ... of a model of ``n_total``
    parameters, ``n_prunable`` of them prunable, each level removing ``prune_fraction`` of the
    remaining prunable weights (:func:`imp_keep_count`).

    Stops after ``levels`` levels or at the first level whose ratio is >= ``target_ratio``
    (the first met).

    Raises:
        ValueError: a fraction outside (0, 1), no stopping rule, ``levels < 1``, or a level
            that would prune nothing (too few weights for another level).
        UnreachableRatioError: ``target_ratio`` is not below ``n_total / n_fixed``.
    """
    if not 0.0 < prune_fraction < 1.0:
        raise ValueError(f"prune_fraction must be in (0, 1), got {prune_fraction}")
    if levels is None and target_ratio is None:
        raise ValueError("give levels=<number of pruning levels> and/or target_ratio=<ratio to "
                         "pass>; otherwise iterative pruning would never stop")
    if levels is not None and levels < 1:
        raise ValueError(f"levels must be >= 1, got {levels}")
    n_fixed = n_total - n_prunable
    if target_ratio is not None:
        if not (math.isfinite(target_ratio) and target_ratio > 1.0):
            raise ValueError(f"target_ratio must be a finite ratio > 1, got {target_ratio}")
        max_ratio = math.inf if n_fixed == 0 else n_total / n_fixed
        if not target_ratio < max_ratio:
            raise UnreachableRatioError(
                f"target_ratio {target_ratio:g} is unreachable: {n_fixed} of the {n_total} "
                f"parameters are not prunable, so the largest ratio is {max_ratio:.6g} (every "
                "prunable weight removed); lower target_ratio or widen the prunable set"
            )
    ratios: list[float] = []
    level = 0
    while True:
        level += 1
        k = imp_keep_count(n_prunable, prune_fraction, level)
        if k == imp_keep_count(n_prunable, prune_fraction, level - 1):
            raise ValueError(
                f"level {level} would prune nothing ({k} of {n_prunable} prunable weights left and "
                f"{prune_fraction:g} of them rounds to 0); stop earlier (levels={level - 1}) or "
                "raise prune_fraction"
            )
        if n_fixed + k == 0:
            raise ValueError(
                f"level {level} would remove every weight of the model ({prune_fraction:g} of "
                f"{n_prunable} prunable weights rounds to all of them); lower prune_fraction")
        ratios.append(n_total / (n_fixed + k))
        if levels is not None and level >= levels:
            return ratios
        if target_ratio is not None and ratios[-1] >= target_ratio:
            return ratios
