"""The data-loss gradient ``g`` that GP and UP score with (SPEC 3).

``g`` is the gradient, with respect to the weights, of the *mean* cross-entropy over every sample
visited (no weight-decay term): per batch we back-propagate the *summed* loss, add the batch
gradients up in float64, and divide by the number of samples at the end. The result is therefore
the same whatever the batch size (up to float rounding), and a pass over N batches equals the
full pass when the N batches cover the whole split.

Modes:
    ``"full"`` (default): one pass over the whole set in stored order, no augmentation, every
    module in eval mode (BatchNorm uses its running statistics, nothing is updated).
    ``"batches"``: the first ``n_batches`` batches of a seeded shuffle, eval mode as above.
    ``"shrinkbench"``: one batch of ``batch_size`` (128 by default) from a seeded shuffle, in
    train mode as ShrinkBench does (BatchNorm normalises with the batch statistics); the running
    statistics it updates are restored afterwards, so the model's state is unchanged. With
    ``augment`` the batch is randomly cropped and flipped as the training loader of the authors'
    fork draws it (the same images as without, from the same seeded shuffle).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from prunescope.choices import GRADIENT_MODES, gradient_batches
from prunescope.data.device import DeviceImages


def data_gradients(
    model: nn.Module,
    images: DeviceImages,
    mode: str = "full",
    n_batches: int | None = None,
    batch_size: int = 128,
    seed: int = 0,
    augment: bool = False,
) -> dict[str, torch.Tensor]:
    """Gradient of the mean cross-entropy of ``model`` over (part of) ``images``.

    Args:
        model: a classifier returning logits ``(B, C)``; its parameters must live on
            ``images.device``. Its weights, buffers, ``.grad`` fields and train/eval flags are left
            as they were.
        images: the training split (without the validation hold-out), e.g. ``DeviceImages``.
        mode: ``"full"``, ``"batches"`` or ``"shrinkbench"`` (see the module docstring).
        n_batches: number of batches for ``mode="batches"`` (>= 1); must be None otherwise.
        batch_size: images per forward pass (only the cost changes in the eval-mode modes; the
            batch size of ``"shrinkbench"``).
        seed: seed of the shuffle for ``"batches"`` and ``"shrinkbench"``.
        augment: crop and flip the ``"shrinkbench"`` batch (:meth:`DeviceImages.batches`'s
            augmentation, drawn from the same seeded generator after the shuffle).

    Returns:
        ``{param name: gradient}`` for every parameter with ``requires_grad`` (names as in
        ``model.named_parameters()``), each of the parameter's shape, dtype and device; unused
        parameters get zeros. Units: loss (nats per sample) per unit of the weight.

    Raises:
        ValueError: unknown mode, bad ``n_batches``/``batch_size``, empty set, device mismatch.
    """
    if mode not in GRADIENT_MODES:
        raise ValueError(f"unknown gradient mode {mode!r}; choose one of {GRADIENT_MODES}")
    if mode == "batches":
        if n_batches is None or n_batches < 1:
            raise ValueError(f"mode='batches' needs n_batches >= 1, got {n_batches}")
    elif n_batches is not None:
        raise ValueError(f"n_batches is only used with mode='batches', not mode={mode!r}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if augment and mode != "shrinkbench":
        raise ValueError(f"augment is only used with mode='shrinkbench', not mode={mode!r}")
    if len(images) == 0:
        raise ValueError("cannot compute a data gradient over an empty image set")
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    for n, p in named:
        if p.device != images.device:
            raise ValueError(
                f"parameter {n!r} is on {p.device} but the images are on {images.device}; "
                "move the model with model.to(images.device)"
            )

    if mode == "full":
        batches = images.batches(batch_size)
    else:
        gen = torch.Generator().manual_seed(int(seed))
        batches = images.batches(batch_size, shuffle=True, augment=augment, generator=gen,
                                 max_steps=gradient_batches(mode, n_batches))

    flags = {m: m.training for m in model.modules()}
    saved_buffers = {n: b.detach().clone() for n, b in model.named_buffers()}
    params = [p for _, p in named]
    sums = [torch.zeros_like(p, dtype=torch.float64) for p in params]
    seen = 0
    model.train(mode == "shrinkbench")
    try:
        for x, y in batches:
            loss = F.cross_entropy(model(x), y, reduction="sum")
            grads = torch.autograd.grad(loss, params, allow_unused=True)
            for acc, g in zip(sums, grads):
                if g is not None:
                    acc.add_(g.to(torch.float64))
            seen += int(y.shape[0])
    finally:
        for m, flag in flags.items():
            m.training = flag
        with torch.no_grad():
            for n, b in model.named_buffers():
                b.copy_(saved_buffers[n])
    return {n: (acc / seen).to(p.dtype) for (n, p), acc in zip(named, sums)}
