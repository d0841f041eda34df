"""One-shot pruning of one model in one call: prunable set -> scores -> masks -> zeroed weights."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from prunescope.prune.masks import MaskResult, apply_masks, make_masks
from prunescope.prune.params import prunable
from prunescope.prune.scores import score


def prune_model(
    model: nn.Module,
    method: str,
    ratio: float,
    grads: Mapping[str, torch.Tensor] | None = None,
    eps: float | None = None,
    seed: int | torch.Generator | None = None,
    scope: str = "global",
    prune_classifier: bool = False,
    prune_biases: bool = False,
    meta: Mapping[str, Any] | None = None,
) -> MaskResult:
    """Prune ``model`` in place to ``ratio`` with ``method`` and return the masks (SPEC 3).

    Args:
        model: the dense parent (one-shot: each ratio should start from the same dense weights).
        method: ``"mp"``, ``"gp"``, ``"up"`` or ``"rp"`` (see :func:`prunescope.prune.score`).
        ratio: compression ratio ``t = all params / nonzero params`` (>= 1).
        grads: data-loss gradients from :func:`prunescope.prune.data_gradients` (GP, UP).
        eps: UP's weight decay, default read from ``meta`` (the checkpoint sidecar).
        seed: RP's seed.
        scope: ``"global"`` or ``"layer"``.
        prune_classifier, prune_biases: widen the prunable set (see :func:`prunable`).
        meta: the checkpoint sidecar dict (UP reads the training weight decay there).

    Returns:
        :class:`MaskResult`; the masked weights of ``model`` are now exactly zero. Hold them at
        zero during fine-tuning by passing ``result.masks`` to ``prunescope.train.fit``.
    """
    params = prunable(model, prune_classifier=prune_classifier, prune_biases=prune_biases)
    scores = score(method, model, params, grads=grads, eps=eps, seed=seed, meta=meta)
    result = make_masks(model, scores, ratio, scope=scope)
    apply_masks(model, result.masks)
    return result
