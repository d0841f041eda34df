"""One-shot pruning of a stacked pack of G models, one model at a time (issue 3).

The same code path as :func:`prunescope.prune.prune_model`: the prunable names and the parameter
count come from the pack's single architecture, each model's scores are computed on per-model
views of the pack (:func:`prunescope.models.stacked.per_model_params`,
:func:`~prunescope.models.stacked.unstack_tensors`), and :func:`masks_from_scores` solves each
model's threshold on that model's scores alone, never across models.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

import torch

from prunescope.models.stacked import StackedModel, per_model_params, stack_masks, unstack_tensors
from prunescope.prune.masks import MaskResult, apply_masks, masks_from_scores
from prunescope.prune.params import count_parameters, prunable
from prunescope.prune.scores import score

T = TypeVar("T")


def _per_model(value: T | Sequence[T], groups: int, what: str) -> list[T]:
    """``value`` for each of ``groups`` models: a sequence of length G, or one value for all."""
    if isinstance(value, Sequence) and not isinstance(value, str):
        if len(value) != groups:
            raise ValueError(f"{what}: need one value per model of the pack ({groups}), "
                             f"got {len(value)}")
        return list(value)
    return [value] * groups  # type: ignore[list-item]


def prune_pack(
    pack: StackedModel,
    method: str | Sequence[str],
    ratio: float | Sequence[float],
    grads: Mapping[str, torch.Tensor] | None = None,
    eps: float | None | Sequence[float | None] = None,
    seed: int | None | Sequence[int | None] = None,
    scope: str = "global",
    prune_classifier: bool = False,
    prune_biases: bool = False,
    meta: Mapping[str, Any] | None | Sequence[Mapping[str, Any] | None] = None,
) -> tuple[list[MaskResult], dict[str, torch.Tensor]]:
    """Prune every model of ``pack`` in place, each with its own method, ratio and threshold.

    Args:
        pack: G models of one architecture (:func:`prunescope.models.stacked.stack`).
        method, ratio, eps, seed, meta: as for :func:`prunescope.prune.prune_model`; each is one
            value for all models or a sequence of G values (model g gets entry g). Give RP models
            distinct seeds for independent masks.
        grads: the pack's data-loss gradient, ``{stacked param name: tensor of the stacked
            shape}`` from ``data_gradients(pack, images)`` (GP, UP).
        scope, prune_classifier, prune_biases: as for ``prune_model``, the same for all models.

    Returns:
        ``(results, pack_masks)``: ``results[g]`` is model g's :class:`MaskResult` (masks of the
        single model's shapes, ratio counted over one model's parameters);
        ``pack_masks`` is ``{name: 0/1 tensor of the stacked shape}`` for ``fit``-style masking.
        The masked weights of ``pack`` are now exactly zero.
    """
    g_count = pack.groups
    methods = _per_model(method, g_count, "method")
    ratios = _per_model(ratio, g_count, "ratio")
    epss = _per_model(eps, g_count, "eps")
    seeds = _per_model(seed, g_count, "seed")
    metas = _per_model(meta, g_count, "meta")
    single = pack.single()
    names = list(prunable(single, prune_classifier=prune_classifier, prune_biases=prune_biases))
    n_total = count_parameters(single)
    grads_g = None
    if grads is not None:
        grads_g = unstack_tensors(pack, {n: grads[n] for n in names if n in grads})
    results = []
    for g in range(g_count):
        views = per_model_params(pack, g)
        params = {n: views[n] for n in names}
        scores = score(methods[g], single, params, grads=None if grads_g is None else grads_g[g],
                       eps=epss[g], seed=seeds[g], meta=metas[g])
        results.append(masks_from_scores(scores, n_total, ratios[g], scope))
    pack_masks = stack_masks(pack, [r.masks for r in results])
    apply_masks(pack, pack_masks)
    return results, pack_masks
