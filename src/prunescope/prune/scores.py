"""Pruning criteria of SPEC 3: MP, GP, UP, RP. A score ranks the prunable weights; the lowest are zeroed.

Scores are float64 so that the properties of SPEC 3 hold exactly, not just up to rounding: the
product of two float32 numbers is exact in float64, so UP with ``eps = 0`` gives bit-for-bit the GP
score, and UP with ``g = 0`` (``eps * theta^2``) is strictly monotone in ``|theta|`` like MP.
"""
from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from prunescope.catalog import methods
from prunescope.catalog.protocol import FORK_UP_EPS


# ---- one function per criterion: (theta, g, eps, gen) -> float64 CPU scores of theta's shape.
# ``theta``, ``g``: float64 CPU tensors of one parameter and its gradient (``g`` None for
# methods without ``needs_gradients``); ``eps()``: the training weight decay; ``gen()``: the
# seeded CPU generator shared by all parameters (called in ``params`` order).
def magnitude(theta, g, eps, gen):
    """MP: ``|theta|``."""
    return theta.abs()


def gradient(theta, g, eps, gen):
    """GP: ``|theta * g|``."""
    return (theta * g).abs()


def undecayed(theta, g, eps, gen):
    """UP: ``|-theta * g + eps * theta^2|`` (SPEC 3)."""
    return (-theta * g + eps() * theta * theta).abs()


def undecayed_signed(theta, g, eps, gen):
    """UP as the authors' code computes it (``MixedMagGrad``, SPEC 8): ``-theta * g + 5e-4 *
    theta^2``, signed, the decay fixed at 5e-4 whatever the model was trained with (``eps`` is
    not read)."""
    return -theta * g + FORK_UP_EPS * theta * theta


def random(theta, g, eps, gen):
    """RP: i.i.d. uniform on [0, 1)."""
    return torch.rand(theta.shape, generator=gen(), dtype=torch.float64)


def recorded_weight_decay(meta: Mapping[str, Any] | None) -> float | None:
    """The weight decay a model was trained with, read from its checkpoint sidecar ``meta``.

    Looks at ``meta["weight_decay"]``, then ``meta["recipe"]["weight_decay"]`` (the recipe that
    produced the weights). Returns ``None`` when neither is there.
    """
    if not meta:
        return None
    if meta.get("weight_decay") is not None:
        return float(meta["weight_decay"])
    recipe = meta.get("recipe")
    if isinstance(recipe, Mapping) and recipe.get("weight_decay") is not None:
        return float(recipe["weight_decay"])
    return None


def _resolve_eps(model: nn.Module, eps: float | None, meta: Mapping[str, Any] | None) -> float:
    if eps is not None:
        value = float(eps)
    else:
        found = recorded_weight_decay(meta)
        if found is None:
            raise ValueError(
                f"UP needs eps, the weight decay {type(model).__name__} was trained with (SPEC 3), "
                "and none is recorded: pass eps=<weight decay>, or meta=<the checkpoint sidecar "
                "dict from prunescope.train.load_checkpoint> whose 'weight_decay' or "
                "'recipe.weight_decay' holds it"
            )
        value = found
    if not value >= 0.0:
        raise ValueError(f"UP eps must be a finite weight decay >= 0, got {value}")
    return value


def score(
    method: str,
    model: nn.Module,
    params: Mapping[str, torch.Tensor],
    grads: Mapping[str, torch.Tensor] | None = None,
    eps: float | None = None,
    seed: int | torch.Generator | None = None,
    meta: Mapping[str, Any] | None = None,
    signed: bool = False,
) -> dict[str, torch.Tensor]:
    """Score every prunable weight with one criterion of SPEC 3.

    Args:
        method: ``"mp"`` ``|theta|``; ``"gp"`` ``|theta * g|``; ``"up"``
            ``|-theta * g + eps * theta^2|``; ``"rp"`` i.i.d. uniform on [0, 1). Case-insensitive.
        model: the model the parameters belong to (named in error messages).
        params: ``{name: tensor}`` as returned by :func:`prunescope.prune.prunable` (or per-model
            views of a stacked pack); the dict order fixes RP's draw order.
        grads: ``{name: tensor}`` of the same shapes: the data-loss gradient from
            :func:`prunescope.prune.data_gradients`. Required by GP and UP (use the same dict for both).
        eps: UP's weight decay; default read from ``meta`` (checkpoint sidecar). Never
            defaulted to a constant.
        seed: RP's seed (int) or a ``torch.Generator`` (CPU); required by RP.
        meta: the checkpoint sidecar dict, where UP finds the training weight decay.
        signed: use the method's signed score where it has one (``up_score =
            "signed-5e-4"``: UP as the authors' code computes it, SPEC 8).

    Returns:
        ``{name: float64 CPU tensor of the parameter's shape}``, higher = more important.

    Raises:
        ValueError: unknown method, missing grads/eps/seed, shape mismatch, non-finite scores.
    """
    rec = methods.method(method)
    if rec.kind != "one-shot":
        raise ValueError(f"{rec.label} is {rec.kind}, not a per-weight criterion; choose one of "
                         f"{', '.join(methods.names('one-shot'))}")
    if rec.needs_gradients:
        if grads is None:
            raise ValueError(
                f"{rec.label} needs the data-loss gradient: pass grads=data_gradients(model, images)"
            )
        missing = [n for n in params if n not in grads]
        if missing:
            raise ValueError(f"grads lack entries for prunable parameters {missing}")
        for n, p in params.items():
            if grads[n].shape != p.shape:
                raise ValueError(
                    f"grads[{n!r}] has shape {tuple(grads[n].shape)}, parameter has {tuple(p.shape)}"
                )
    fn = rec.scorer(signed)

    @functools.cache
    def eps_value() -> float:
        return _resolve_eps(model, eps, meta)

    @functools.cache
    def generator() -> torch.Generator:
        if seed is None:
            raise ValueError(f"{rec.label} needs a seed (int or torch.Generator) so its mask is "
                             "reproducible")
        if isinstance(seed, torch.Generator):
            return seed
        return torch.Generator(device="cpu").manual_seed(int(seed))

    out: dict[str, torch.Tensor] = {}
    with torch.no_grad():
        for n, p in params.items():
            theta = p.detach().to("cpu", torch.float64)
            g = grads[n].detach().to("cpu", torch.float64) if rec.needs_gradients else None  # type: ignore[index]
            s = fn(theta, g, eps_value, generator)
            if not torch.isfinite(s).all():
                raise ValueError(
                    f"{rec.label} score of {n!r} is not finite (NaN/inf weights or gradients); "
                    "check the checkpoint and the gradient pass"
                )
            out[n] = s
    return out
