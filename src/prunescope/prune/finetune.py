"""Prune a trained model and fine-tune it with the mask held (SPEC 3 and 4): the API behind
``prunescope prune``.

Steps: test accuracy of the dense model -> data gradient (GP, UP) -> one-shot masks at the
requested ratio -> test accuracy right after pruning -> fine-tuning with ``fit(masks=...)`` using
the SPEC 4 fine-tuning recipe of the architecture (optionally scaled to fewer epochs) -> test
accuracy after fine-tuning.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from torch import nn

from prunescope.catalog import methods as registry, objectives
from prunescope.catalog.protocol import PruneOptions
from prunescope.data.device import DeviceImages
from prunescope.prune.gradients import data_gradients
from prunescope.prune.masks import MaskResult
from prunescope.prune.oneshot import prune_model
from prunescope.train import FitResult, Recipe, derive_seed, evaluate, fit
from prunescope.train.loop import ProgressFn
from prunescope.train.objectives import build_objective, dense_reference

#: Sidecar keys a pruned model inherits from its dense parent (data, architecture, seed).
CARRIED_META = ("arch", "num_classes", "in_channels", "image_size", "dataset", "n_val", "split_seed",
                "seed", "imbalance", "data", "mean", "std", "validation", "normalisation")


def _accuracy(confusion: np.ndarray) -> float:
    return float(np.trace(confusion) / max(1, confusion.sum()))


@dataclass
class PruneRun:
    """Result of :func:`prune_and_finetune`.

    Attributes:
        model: the pruned (and fine-tuned) model; masked weights exactly zero.
        result: the masks, achieved ratio and per-layer densities.
        fit: the fine-tuning :class:`~prunescope.train.FitResult`, ``None`` without fine-tuning.
        acc_dense, acc_pruned, acc_finetuned: test accuracy (0..1) of the dense parent, right
            after pruning, and after fine-tuning (``acc_pruned`` again without fine-tuning).
        confusion: test confusion matrix of the returned model, int64 ``(C, C)``.
        meta: the sidecar for ``save_checkpoint(path, run.model, run.meta, masks=run.result.masks)``.
    """

    model: nn.Module
    result: MaskResult
    fit: FitResult | None
    acc_dense: float
    acc_pruned: float
    acc_finetuned: float
    confusion: np.ndarray
    meta: dict[str, Any]


def finetune_recipe(arch: str, epochs: int | None = None,
                    max_steps_per_epoch: int | None = None) -> Recipe:
    """SPEC 4 fine-tuning recipe of ``arch`` (ResNet: 25 epochs 10@0.1, 5@0.01, 5@0.001,
    5@0.0001; LeNet-5: 15 @0.01), its schedule scaled to ``epochs`` in total when given
    (:meth:`Recipe.with_epochs`), and optionally capped at ``max_steps_per_epoch`` steps."""
    recipe = Recipe.paper(arch, finetune=True)
    if epochs is not None:
        recipe = recipe.with_epochs(epochs)
    if max_steps_per_epoch is not None:
        recipe = Recipe.from_dict({**recipe.to_dict(), "max_steps_per_epoch": max_steps_per_epoch})
    return recipe


def pruned_meta(meta: Mapping[str, Any], method: str, recipe: Recipe | None) -> dict[str, Any]:
    """The sidecar (JSON-ready) of a model pruned from the parent whose sidecar is ``meta``: the
    parent's data/architecture keys (:data:`CARRIED_META`) plus what made it: ``method``, the
    fine-tuning ``recipe`` (``Recipe.to_dict()``), its ``epochs`` and ``weight_decay``
    (``recipe`` ``None``: pruned without fine-tuning, no ``recipe`` key, 0 epochs, and the
    weights keep the parent's ``weight_decay``, which UP on them must read), and
    ``parent_weight_decay``, the decay of the dense run at the root of the pruning chain. Every
    pruned model (the CLI's and each study job kind's) is described by this one function."""
    out = {k: meta[k] for k in CARRIED_META if k in meta}
    decay = meta.get("weight_decay")
    out |= {"weight_decay": decay, "parent_weight_decay": meta.get("parent_weight_decay", decay),
            "method": method.lower(), "epochs": 0}
    if recipe is not None:
        out |= {"recipe": recipe.to_dict(), "weight_decay": recipe.weight_decay,
                "epochs": recipe.epochs}
    return out


@dataclass
class OneShot:
    """A model just pruned one-shot by :func:`prune_one_shot`, ready to fine-tune.

    Attributes:
        result: masks, achieved ratio and densities (:class:`~prunescope.prune.MaskResult`).
        meta: the pruned model's sidecar (:func:`pruned_meta` plus ``pruning``, the summary).
        finetune_seed: the data-order seed of its fine-tuning ``fit``.
    """

    result: MaskResult
    meta: dict[str, Any]
    finetune_seed: int


def prune_one_shot(model: nn.Module, meta: Mapping[str, Any], method: str, ratio: float, *,
                   seed: int, recipe: Recipe | None, grads: Mapping[str, Any] | None = None,
                   eps: float | None = None, scope: str = "global",
                   options: PruneOptions = PruneOptions()) -> OneShot:
    """Prune ``model`` in place to ``ratio`` with ``method`` (SPEC 3): the step shared by
    :func:`prune_and_finetune` (the CLI) and the study's ``prune_finetune`` jobs, which then
    fine-tune with ``fit(masks=result.masks)`` (alone or in a pack) from ``finetune_seed``.

    Args:
        model, method, ratio, grads, eps, scope, options: see
            :func:`prunescope.prune.prune_model` (``grads``: GP/UP's data gradient).
        meta: the parent's sidecar (``weight_decay`` is UP's eps by default).
        seed: seeds RP (``derive_seed(seed, SCORE_SEED_SALT)``) and the fine-tuning data order
            (``derive_seed(seed, "finetune")``).
        recipe: the fine-tuning recipe that will follow (``None``: none), for the sidecar.
    """
    result = prune_model(model, method, ratio, grads=grads, eps=eps,
                         seed=derive_seed(seed, registry.SCORE_SEED_SALT), scope=scope,
                         options=options, meta=meta)
    made = pruned_meta(meta, method, recipe) | {"pruning": result.summary()}
    if options.non_default():
        made["prune_options"] = options.non_default()
    return OneShot(result, made, finetune_seed(seed))


def objective_meta(name: str, options: Any = ()) -> dict[str, Any]:
    """The sidecar keys of a pruned model's fine-tuning objective: ``{"objective": name,
    "objective_options": {option: value}}`` (every option resolved), ``{}`` for ``ce``."""
    if name == objectives.DEFAULT:
        return {}
    return {"objective": name,
            "objective_options": objectives.objective(name).resolve(dict(options or {}))}


def finetune_seed(seed: int) -> int:
    """The data-order seed of a pruned model's fine-tuning (one-shot and structured)."""
    return derive_seed(seed, "finetune")


def prune_and_finetune(
    model: nn.Module,
    meta: Mapping[str, Any],
    train: DeviceImages,
    val: DeviceImages,
    test: DeviceImages,
    method: str,
    ratio: float,
    *,
    scope: str = "global",
    recipe: Recipe | None = None,
    finetune: bool = True,
    grad_mode: str = "full",
    grad_batches: int | None = None,
    eps: float | None = None,
    seed: int = 0,
    options: PruneOptions = PruneOptions(),
    progress: ProgressFn | None = None,
    objective: str = objectives.DEFAULT,
    objective_options: Mapping[str, float] | None = None,
) -> PruneRun:
    """Prune ``model`` (in place) to ``ratio`` with ``method`` and fine-tune it with the mask held.

    Args:
        model: the dense parent, on the device of the image sets.
        meta: its checkpoint sidecar (``arch``, ``num_classes``; ``weight_decay`` is UP's eps).
        train, val: the training part and validation hold-out the parent was trained with;
            ``train`` also gives the data gradient of GP and UP.
        test: the test set (only measured, never used to choose anything).
        method, ratio, scope, eps, options: see :func:`prunescope.prune.prune_model`
            (``options``: the prunable set and mask rule, :class:`PruneOptions`).
        recipe: fine-tuning recipe; ``None`` = :func:`finetune_recipe` of ``meta["arch"]``.
        finetune: ``False`` skips fine-tuning (the model is returned right after pruning).
        grad_mode, grad_batches: :func:`prunescope.prune.data_gradients` mode and ``n_batches``.
        seed: seeds RP (``derive_seed(seed, SCORE_SEED_SALT)``), the gradient batches and the fine-tuning
            data order (``derive_seed(seed, "finetune")``).
        progress: forwarded to :func:`prunescope.train.fit`.
        objective, objective_options: the fine-tuning objective
            (:mod:`prunescope.catalog.objectives`: ``ce``, ``kd``, ``equalized-loss``,
            ``ceag``) and options overriding its defaults (docs/mitigation.md); the dense
            parent it reads (teacher, per-class training accuracy on ``train``) is taken
            before pruning.

    Returns:
        :class:`PruneRun`.

    Raises:
        ValueError: an unknown objective or option.
    """
    rec = objectives.objective(objective)
    resolved = rec.resolve(objective_options)
    num_classes = int(meta["num_classes"])
    dense_cm = evaluate(model, test, num_classes)
    grads = None
    if registry.method(method).needs_gradients:
        grads = data_gradients(model, train, mode=grad_mode, n_batches=grad_batches,
                               seed=derive_seed(seed, "gradients"))
    if not finetune:
        recipe = None
    elif recipe is None:
        recipe = finetune_recipe(str(meta["arch"]))
    loss = None
    if recipe is not None and rec.name != objectives.DEFAULT:
        loss = build_objective(rec.name, resolved,
                               [dense_reference(rec.name, model, train, num_classes)])
    pruned = prune_one_shot(model, meta, method, ratio, seed=seed, recipe=recipe, grads=grads,
                            eps=eps, scope=scope, options=options)
    result = pruned.result
    pruned_cm = evaluate(model, test, num_classes)
    fit_res = None
    final_cm = pruned_cm
    new_meta = pruned.meta
    if recipe is not None:
        fit_res = fit(model, train, val, recipe, pruned.finetune_seed, masks=result.masks,
                      progress=progress, objective=loss)
        final_cm = evaluate(model, test, num_classes)
        new_meta |= {"best_epoch": fit_res.best_epoch, "history": fit_res.history}
        new_meta |= objective_meta(rec.name, resolved)
    new_meta |= {
        "prune_seed": seed,
        "gradient_mode": grad_mode if grads is not None else None,
        "metrics": {
            "test_acc_dense": _accuracy(dense_cm),
            "test_acc_pruned": _accuracy(pruned_cm),
            "test_acc": _accuracy(final_cm),
            "test_confusion": final_cm.tolist(),
        },
    }
    return PruneRun(model, result, fit_res, _accuracy(dense_cm), _accuracy(pruned_cm),
                    _accuracy(final_cm), final_cm, new_meta)
