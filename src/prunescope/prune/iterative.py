"""Iterative magnitude pruning with weight rewinding (lottery-ticket style; SPEC 3, last bullet).

Algorithm (Frankle & Carbin 2019; rewinding to an early iterate as in Frankle et al. 2020,
"Linear Mode Connectivity and the Lottery Ticket Hypothesis"):

1. Train the dense network with the recipe and save its whole state (weights and BatchNorm
   buffers) right after optimiser step ``rewind_steps`` (0 = the initialisation). The trained
   dense network is level 0 (ratio 1).
2. Level L = 1, 2, ...: rank the surviving prunable weights by magnitude ``|theta|`` of the
   weights trained at level L-1 and keep the top ``k_L = round(n_prunable * (1 - f)^L)``
   (``f = prune_fraction``, 0.2 by default: 20% of the remaining weights go at every level).
   ``k_L`` is computed from the level number, not from ``k_{L-1}``, so rounding never
   accumulates: after level L exactly ``round(n_prunable * 0.8^L)`` prunable weights survive
   and the achieved ratio is ``n_total / (n_total - n_prunable + k_L)``, recorded in a
   :class:`~prunescope.prune.MaskResult` made by :func:`~prunescope.prune.make_masks` with
   ``keep=k_L`` (the count itself: no ratio and back).
   Already-pruned weights score below every survivor, so each level's mask is a subset of the
   previous one.
3. Rewind: load the saved early state into the model, zero the pruned weights, and retrain
   with ``fit(..., masks=...)`` (masked weights stay exactly zero).

The rewind state comes from :func:`rewind_point`: the dense run itself, stopped right after
step ``rewind_steps`` (``fit(stop_after_step=...)``), the one mechanism shared with the study's
``rewind`` jobs; :func:`start_level` (mask, then rewind) and :func:`level_seed` are the other
steps both share, so a study's per-level jobs and this in-memory loop compute the same levels.
:class:`RewindCapture` keeps the state at a step from inside a ``fit`` the user runs anyway,
for a dense model trained elsewhere: pass its trained weights in ``model`` and the captured
state as ``rewind_state``.

Retraining runs ``retrain_recipe`` from its first epoch at every level, or, with
``resume_schedule=True``, the dense ``recipe`` from step ``rewind_steps`` to its end
(``fit(start_step=rewind_steps)``, fresh momentum): Frankle et al. 2020's remaining ``T - k``
iterations (a study's ``[lth] retrain = "rewind"``).
"""
from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from prunescope.catalog.ratios import imp_keep_count, level_ratios
from prunescope.data.device import DeviceImages
from prunescope.prune.masks import MaskResult, make_masks
from prunescope.prune.params import count_parameters, prunable
from prunescope.prune.scores import magnitude
from prunescope.train import FitResult, Recipe, derive_seed, fit
from prunescope.train.loop import ProgressFn

__all__ = ["LevelRecord", "RewindCapture", "imp_keep_count", "imp_level_masks", "imp_schedule",
           "iterative_magnitude_pruning", "level_seed", "rewind_point", "start_level"]

#: ``on_level(level, model, mask_result, fit_result)``; ``mask_result`` is ``None`` at level 0
#: (dense), ``fit_result`` is ``None`` at level 0 when the dense model was trained elsewhere.
OnLevelFn = Callable[[int, nn.Module, "MaskResult | None", "FitResult | None"], None]


class RewindCapture:
    """A ``progress`` callback for :func:`prunescope.train.fit` that keeps a copy of the model's
    state right after optimiser step ``step`` (1-based, counted over the whole run).

    Usage: ``cap = RewindCapture(model, 500); fit(model, ..., progress=cap); cap.state``.

    Args:
        model: the model ``fit`` trains.
        step: the optimiser step after which to copy the state (>= 1).
        then: another progress callback to forward every call to (e.g. a progress bar).

    Attributes:
        state: ``None`` until the step is reached, then ``{name: CPU tensor}``, a detached copy of
            ``model.state_dict()`` (weights and BatchNorm buffers).
    """

    def __init__(self, model: nn.Module, step: int, then: ProgressFn | None = None) -> None:
        if step < 1:
            raise ValueError(f"RewindCapture needs step >= 1, got {step}; for step 0 (the "
                             "initialisation) copy model.state_dict() before training")
        self.model, self.step, self.then = model, int(step), then
        self.state: dict[str, torch.Tensor] | None = None

    def __call__(self, step: int, total: int, info: dict[str, Any]) -> None:
        if step == self.step and self.state is None:
            self.state = _cpu_state(self.model)
        if self.then is not None:
            self.then(step, total, info)


@dataclass
class LevelRecord:
    """One level of iterative pruning (level 0 = the dense network).

    Attributes:
        level: 0, 1, 2, ...
        achieved_ratio: ``n_total / n_nonzero`` after this level's mask (1.0 at level 0).
        requested_ratio: the ratio the level aimed at, ``n_total / (n_fixed + k_L)`` with
            ``k_L = imp_keep_count(n_prunable, f, level)`` (1.0 at level 0).
        mask_result: the :class:`~prunescope.prune.MaskResult` (``None`` at level 0).
        masks: ``{param name: bool CPU tensor}``, True = kept (empty at level 0).
        densities: ``{param name: kept / numel}`` of the prunable weights (all 1.0 at level 0).
        state_dict: the level's trained weights and buffers (CPU copies).
        history: the level's ``fit`` history (one dict per epoch; empty if not trained here).
        best_epoch: the kept epoch of that ``fit`` (0 if not trained here).
        val_loss, val_acc: validation loss (nats) and accuracy (0..1) of the kept epoch (NaN if
            not trained here).
        seed: the data-order seed of the level's ``fit``.
    """

    level: int
    achieved_ratio: float
    requested_ratio: float
    mask_result: MaskResult | None
    masks: dict[str, torch.Tensor]
    densities: dict[str, float]
    state_dict: dict[str, torch.Tensor]
    history: list[dict[str, Any]] = field(default_factory=list)
    best_epoch: int = 0
    val_loss: float = math.nan
    val_acc: float = math.nan
    seed: int | None = None

    def summary(self) -> dict[str, Any]:
        """JSON-ready record (no tensors) for a store row or a checkpoint sidecar."""
        scalars = ("level", "achieved_ratio", "requested_ratio", "best_epoch", "val_loss",
                   "val_acc", "seed")
        return {k: getattr(self, k) for k in scalars} | {
            "densities": dict(self.densities),
            "pruning": self.mask_result.summary() if self.mask_result is not None else None,
        }


def _cpu_state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}


def imp_schedule(
    model: nn.Module,
    *,
    levels: int | None = None,
    target_ratio: float | None = None,
    prune_fraction: float = 0.2,
    prune_classifier: bool = False,
    prune_biases: bool = False,
) -> list[float]:
    """The achieved ratios of levels 1, 2, ... that :func:`iterative_magnitude_pruning` will
    reach on ``model``: :func:`prunescope.catalog.ratios.level_ratios` of its parameter counts
    (no training), e.g. for a planner that needs to know how many levels a ratio takes."""
    n_prunable = sum(p.numel() for p in prunable(model, prune_classifier=prune_classifier,
                                                 prune_biases=prune_biases).values())
    return level_ratios(count_parameters(model), n_prunable, levels=levels,
                        target_ratio=target_ratio, prune_fraction=prune_fraction)


def imp_level_masks(
    model: nn.Module,
    level: int,
    prev_masks: Mapping[str, torch.Tensor] | None,
    *,
    prune_fraction: float = 0.2,
    scope: str = "global",
    prune_classifier: bool = False,
    prune_biases: bool = False,
) -> MaskResult:
    """The mask of pruning level ``level`` (>= 1), from the weights of level ``level - 1``.

    Scores are ``|theta|`` of ``model``'s current (level ``level - 1``, trained) prunable weights;
    weights already pruned by ``prev_masks`` (``{param name: bool tensor}``, True = kept; ``None``
    or empty for level 1) score -1, below every survivor, so the new mask is a subset of the
    previous one. Keeps ``imp_keep_count(n_prunable, prune_fraction, level)`` weights; the
    achieved ratio (all params / nonzero, SPEC 3) is in the returned ``MaskResult``. This is the
    pruning step of :func:`iterative_magnitude_pruning`, exposed so that a study can run each
    level as its own resumable job.

    Raises:
        ValueError: ``level < 1``, or ``scope="layer"`` would revive pruned weights.
    """
    if level < 1:
        raise ValueError(f"level must be >= 1 (level 0 is the dense model), got {level}")
    params = prunable(model, prune_classifier=prune_classifier, prune_biases=prune_biases)
    n_prunable = sum(p.numel() for p in params.values())
    prev = {n: m.to("cpu", torch.bool) for n, m in prev_masks.items()} if prev_masks else None
    with torch.no_grad():  # |theta|, float64 on the CPU
        scores = {n: magnitude(p.detach().to("cpu", torch.float64), None, None, None)
                  for n, p in params.items()}
    if prev is not None:  # pruned weights rank below every survivor
        scores = {n: torch.where(prev[n], s, torch.full_like(s, -1.0)) for n, s in scores.items()}
    result = make_masks(model, scores, scope=scope,
                        keep=imp_keep_count(n_prunable, prune_fraction, level))
    if prev is not None:
        grown = [n for n, m in result.masks.items()
                 if bool((m.to("cpu", torch.bool) & ~prev[n]).any())]
        if grown:
            raise ValueError(
                f"level {level}: scope={scope!r} would revive pruned weights of {grown} (the "
                "per-layer quota rounded up past the layer's survivors); use scope='global' "
                "or fewer levels"
            )
    return result


def rewind_point(model: nn.Module, train: DeviceImages | None, val: DeviceImages | None,
                 recipe: Recipe, seed: int, steps: int, progress: ProgressFn | None = None
                 ) -> dict[str, torch.Tensor]:
    """The LTH rewinding point: the state (CPU copies of weights and buffers) that the dense
    run ``fit(model, train, val, recipe, seed)`` has right after optimiser step ``steps``,
    computed by that very run stopped there (``fit(stop_after_step=steps)``); ``steps = 0`` is
    ``model``'s current (initial) state (``train`` and ``val`` may then be ``None``). ``model``
    is trained in place for those steps. The one way both :func:`iterative_magnitude_pruning`
    and the study's ``rewind`` jobs rewind."""
    if steps < 0:
        raise ValueError(f"rewind_steps must be >= 0, got {steps}")
    if steps == 0:
        return _cpu_state(model)
    res = fit(model, train, val, recipe, seed, stop_after_step=steps, progress=progress)
    return {k: v.detach().to("cpu", copy=True) for k, v in res.state_dict.items()}


def level_seed(seed: int, level: int) -> int:
    """The data-order seed of LTH level ``level``'s retraining (the dense run uses ``seed``)."""
    return derive_seed(seed, f"imp/level{level}")


def start_level(model: nn.Module, level: int, prev_masks: Mapping[str, torch.Tensor] | None,
                rewind: Mapping[str, torch.Tensor], **mask_options: Any) -> MaskResult:
    """Begin LTH level ``level``: its mask from ``model``'s weights (level ``level - 1``,
    trained; :func:`imp_level_masks` with ``mask_options``), then rewind ``model`` to ``rewind``
    (:func:`rewind_point`; pruned weights are zeroed by the fit that follows). Retraining is
    then ``fit(model, ..., level_seed(seed, level), masks=result.masks)``, alone
    (:func:`iterative_magnitude_pruning`) or in a pack (a study's ``lth_level`` jobs)."""
    result = imp_level_masks(model, level, prev_masks, **mask_options)
    model.load_state_dict(rewind)  # copies into the model's tensors, on its device
    return result


def _history_best(fit_result: FitResult) -> tuple[float, float]:
    rec = next(h for h in fit_result.history if h["epoch"] == fit_result.best_epoch)
    return float(rec["val_loss"]), float(rec["val_acc"])


def _level_zero(model: nn.Module, train: DeviceImages, val: DeviceImages, recipe: Recipe,
                seed: int, rewind_steps: int, rewind_state: Mapping[str, torch.Tensor] | None,
                params: Mapping[str, torch.Tensor], progress: ProgressFn | None
                ) -> tuple[LevelRecord, FitResult | None, dict[str, torch.Tensor]]:
    """Level 0 of :func:`iterative_magnitude_pruning`: the dense run (trained here, with its
    :func:`rewind_point`, unless ``rewind_state`` is given): ``(record, its fit or None, the
    rewinding state)``."""
    if rewind_state is not None:
        rewind = {k: v.detach().to("cpu", copy=True) for k, v in rewind_state.items()}
        missing = sorted(set(model.state_dict()) - set(rewind))
        if missing:
            raise ValueError(f"rewind_state lacks {missing[:5]} of the model's state; pass the "
                             "RewindCapture.state of this model's dense training")
        dense = LevelRecord(0, 1.0, 1.0, None, {}, {n: 1.0 for n in params}, _cpu_state(model))
        return dense, None, rewind
    per_epoch = train.num_batches(recipe.batch_size, recipe.max_steps_per_epoch)
    total_steps = per_epoch * recipe.epochs
    if rewind_steps > total_steps:
        raise ValueError(
            f"rewind_steps={rewind_steps} exceeds the {total_steps} optimiser steps of the "
            "dense run; lower rewind_steps or lengthen the recipe"
        )
    init = _cpu_state(model)
    rewind = rewind_point(model, train, val, recipe, seed, rewind_steps)
    model.load_state_dict(init)  # the dense run itself, from the initialisation
    dense_fit = fit(model, train, val, recipe, seed, progress=progress)
    val_loss, val_acc = _history_best(dense_fit)
    dense = LevelRecord(0, 1.0, 1.0, None, {}, {n: 1.0 for n in params}, _cpu_state(model),
                        dense_fit.history, dense_fit.best_epoch, val_loss, val_acc, seed)
    return dense, dense_fit, rewind


def iterative_magnitude_pruning(
    model: nn.Module,
    train: DeviceImages,
    val: DeviceImages,
    recipe: Recipe,
    seed: int,
    *,
    rewind_steps: int = 500,
    prune_fraction: float = 0.2,
    levels: int | None = None,
    target_ratio: float | None = None,
    scope: str = "global",
    on_level: OnLevelFn | None = None,
    rewind_state: Mapping[str, torch.Tensor] | None = None,
    retrain_recipe: Recipe | None = None,
    resume_schedule: bool = False,
    prune_classifier: bool = False,
    prune_biases: bool = False,
    progress: ProgressFn | None = None,
) -> list[LevelRecord]:
    """Lottery-ticket pruning of ``model`` in place: see the module docstring for the algorithm.

    Args:
        model: without ``rewind_state``, the freshly initialised network (e.g.
            ``build_model(arch, C, seed=seed)``), trained here as level 0. With
            ``rewind_state``, the already trained dense network.
        train, val: training images and the validation hold-out (on the model's device); ``fit``
            keeps each level's best-validation-loss epoch (SPEC 4).
        recipe: the training recipe of the dense run (level 0).
        seed: seeds the data order: level 0 uses ``seed`` itself (so it equals a plain
            ``fit(model, train, val, recipe, seed)``), level L uses
            ``derive_seed(seed, f"imp/level{L}")``.
        rewind_steps: the optimiser step whose weights survivors are rewound to; 0 rewinds to the
            initialisation (the original lottery ticket). Must not exceed the dense run's steps.
        prune_fraction: fraction f of the remaining prunable weights removed per level, in (0, 1).
        levels: stop after this many pruning levels.
        target_ratio: stop at the first level whose achieved ratio is >= this.
            At least one of ``levels`` and ``target_ratio`` is required; with both, the first
            met stops.
        scope: ``"global"`` (one magnitude threshold over all prunable weights, default) or
            ``"layer"`` (the same keep fraction in every prunable layer).
        on_level: called after level 0 and after every level's retraining as
            ``on_level(level, model, mask_result, fit_result)``, the model holding that level's
            trained weights, so each level can be evaluated and stored as it finishes.
        rewind_state: the dense run's state after ``rewind_steps`` steps (from
            :class:`RewindCapture`); given, level 0 is not trained here.
        retrain_recipe: recipe of the levels' retraining from its first step (default:
            ``recipe``).
        resume_schedule: retrain every level with ``recipe`` from step ``rewind_steps`` to its
            end instead (Frankle et al.; not with ``retrain_recipe``).
        prune_classifier, prune_biases: widen the prunable set (:func:`prunescope.prune.prunable`).
        progress: forwarded to every ``fit`` call.

    Returns:
        One :class:`LevelRecord` per level, level 0 first. The model ends holding the last
        level's weights, masked weights exactly zero.

    Raises:
        ValueError: bad ``prune_fraction``, ``rewind_steps`` or stopping rule; a level prunes
            nothing (the network is too small for another level).
        UnreachableRatioError: ``target_ratio`` above the largest reachable ratio.
    """
    if rewind_steps < 0:
        raise ValueError(f"rewind_steps must be >= 0, got {rewind_steps}")
    schedule = imp_schedule(model, levels=levels, target_ratio=target_ratio,
                            prune_fraction=prune_fraction, prune_classifier=prune_classifier,
                            prune_biases=prune_biases)
    params = prunable(model, prune_classifier=prune_classifier, prune_biases=prune_biases)
    if resume_schedule and retrain_recipe is not None:
        raise ValueError("resume_schedule=True retrains with the dense recipe from step "
                         "rewind_steps; pass retrain_recipe only without it")
    retrain_recipe = retrain_recipe if retrain_recipe is not None else recipe
    start = rewind_steps if resume_schedule else 0

    dense, dense_fit, rewind = _level_zero(model, train, val, recipe, seed, rewind_steps,
                                           rewind_state, params, progress)
    records: list[LevelRecord] = []
    records.append(dense)
    if on_level is not None:
        on_level(0, model, None, dense_fit)

    prev_masks: dict[str, torch.Tensor] | None = None
    for level in range(1, len(schedule) + 1):
        result = start_level(model, level, prev_masks, rewind, prune_fraction=prune_fraction,
                             scope=scope, prune_classifier=prune_classifier,
                             prune_biases=prune_biases)
        seed_l = level_seed(seed, level)
        fit_result = fit(model, train, val, retrain_recipe, seed_l, masks=result.masks,
                         progress=progress, start_step=start)
        val_loss, val_acc = _history_best(fit_result)
        records.append(LevelRecord(level, result.achieved_ratio, result.requested_ratio, result,
                                   dict(result.masks), dict(result.densities), _cpu_state(model),
                                   fit_result.history, fit_result.best_epoch, val_loss, val_acc,
                                   seed_l))
        if on_level is not None:
            on_level(level, model, result, fit_result)
        prev_masks = result.masks
    return records
