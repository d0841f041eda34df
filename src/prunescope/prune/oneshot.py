"""One-shot pruning of one model in one call: prunable set -> scores -> masks -> zeroed weights.

The mask follows the cell's :class:`~prunescope.catalog.protocol.PruneOptions`: SPEC 3's exact
count by default, or what the authors' ShrinkBench fork did (SPEC 8): its keep fraction and
symmetric quantile threshold, UP's signed score, RP's binomial count. A method whose record has
``keep_as`` keeps exactly as many weights as that method does (matched achieved ratios).
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from prunescope.catalog import methods
from prunescope.catalog.protocol import PruneOptions
from prunescope.catalog.ratios import keep_count, shrinkbench_fraction
from prunescope.prune.masks import (MaskResult, apply_masks, binomial_masks, make_masks,
                                    mask_result, threshold_masks)
from prunescope.prune.params import count_parameters, prunable
from prunescope.prune.scores import score


def one_shot_masks(
    model: nn.Module,
    method: str,
    ratio: float,
    grads: Mapping[str, torch.Tensor] | None = None,
    eps: float | None = None,
    seed: int | None = None,
    scope: str = "global",
    options: PruneOptions = PruneOptions(),
    meta: Mapping[str, Any] | None = None,
) -> MaskResult:
    """The masks ``method`` gives ``model`` at stated ``ratio`` under ``options``, without
    touching the model (see :func:`prune_model` for the arguments).

    ``keep_rule = "exact"``: the top-k scores (:func:`~prunescope.prune.masks.make_masks`);
    ``"shrinkbench"``: :func:`~prunescope.prune.masks.threshold_masks` at ShrinkBench's keep
    fraction (:func:`~prunescope.catalog.ratios.shrinkbench_fraction`), the quantile over the
    biases' scores too for methods with ``quantile_over_biases``. Uniform-draw methods with
    ``rp_count = "binomial"`` keep each weight with the rule's keep fraction. A ``keep_as``
    method keeps as many weights as its ``keep_as`` method's masks, by its own scores.
    """
    rec = methods.method(method)
    if options.keep_rule == "shrinkbench" and scope != "global":
        raise ValueError("keep_rule = 'shrinkbench' thresholds all prunable layers at once "
                         "(the fork's global strategies); use scope = 'global'")
    params = prunable(model, prune_classifier=options.prune_classifier,
                      prune_biases=options.prune_biases)
    signed = options.up_score != "absolute"
    scores = score(method, model, params, grads=grads, eps=eps, seed=seed, meta=meta,
                   signed=signed)
    n_total = count_parameters(model)
    if rec.keep_as is not None:
        other = one_shot_masks(model, rec.keep_as, ratio, grads, eps, seed, scope, options, meta)
        result = make_masks(model, scores, scope=scope, keep=sum(other.kept.values()))
        return mask_result(result.masks, n_total, ratio, scope)
    binomial = rec.draws and options.rp_count == "binomial"
    if options.keep_rule == "exact" and not binomial:
        return make_masks(model, scores, ratio, scope=scope)
    biases: dict[str, torch.Tensor] = {}
    if options.keep_rule == "shrinkbench":
        layers = prunable(model, prune_classifier=options.prune_classifier, prune_biases=True)
        biases = {n: p for n, p in layers.items() if n not in params}
        fraction = shrinkbench_fraction(n_total, sum(p.numel() for p in layers.values()), ratio)
    else:
        n_prunable = sum(p.numel() for p in params.values())
        fraction = keep_count(n_total, n_prunable, ratio) / n_prunable
    if binomial:
        return mask_result(binomial_masks(scores, fraction), n_total, ratio, scope)
    also = ()
    if rec.quantile_over_biases and biases:
        also = tuple(score(method, model, biases, grads=grads, eps=eps, seed=seed, meta=meta,
                           signed=signed).values())
    return mask_result(threshold_masks(scores, fraction, also), n_total, ratio, scope)


def prune_model(
    model: nn.Module,
    method: str,
    ratio: float,
    grads: Mapping[str, torch.Tensor] | None = None,
    eps: float | None = None,
    seed: int | torch.Generator | None = None,
    scope: str = "global",
    options: PruneOptions = PruneOptions(),
    meta: Mapping[str, Any] | None = None,
) -> MaskResult:
    """Prune ``model`` in place to ``ratio`` with ``method`` and return the masks (SPEC 3).

    Args:
        model: the dense parent (one-shot: each ratio should start from the same dense weights).
        method: a one-shot method of the catalog (``"mp"``, ``"gp"``, ``"up"``, ``"rp"``,
            ``"mp-at-up"``; see :func:`prunescope.prune.score`).
        ratio: stated compression ratio ``t = all params / nonzero params`` (>= 1); the
            achieved one is in the result.
        grads: data-loss gradients from :func:`prunescope.prune.data_gradients` (GP, UP).
        eps: UP's weight decay, default read from ``meta`` (the checkpoint sidecar).
        seed: RP's seed (an int: a ``keep_as`` method draws its partner's scores from it too).
        scope: ``"global"`` or ``"layer"``.
        options: the prunable set and the mask rule (:class:`PruneOptions`; default SPEC 3's).
        meta: the checkpoint sidecar dict (UP reads the training weight decay there).

    Returns:
        :class:`MaskResult`; the masked weights of ``model`` are now exactly zero. Hold them at
        zero during fine-tuning by passing ``result.masks`` to ``prunescope.train.fit``.
    """
    result = one_shot_masks(model, method, ratio, grads, eps, seed, scope, options, meta)
    apply_masks(model, result.masks)
    return result
