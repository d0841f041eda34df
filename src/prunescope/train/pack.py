"""Packed training: G same-architecture models trained at once as one stacked network.

:func:`fit_pack` is :func:`prunescope.train.fit` for G models in one go. Each model keeps
everything that makes it itself:

* its data: model g's order and augmentation come from ``data_generator(seeds[g])``, drawn in
  exactly the order :meth:`DeviceImages.batches` draws them, so model g sees the very batches it
  would see trained alone by ``fit(..., seed=seeds[g])``;
* its loss and gradient: the pack loss is ``sum_g mean-CE_g`` and no layer mixes models, so
  model g's gradient is its solo gradient;
* its optimiser state (SGD is elementwise), its masks, its validation loss and its
  best-epoch checkpoint.

A pack of one on the CPU (fp32, eager) runs the same PyTorch ops as ``fit`` and ends with
bitwise the same weights. For G > 1 a model's result differs from its solo run only by
floating-point rounding (grouped vs plain convolution kernels), i.e. within run-to-run noise.

Both run the one loop :func:`prunescope.train.loop.train_net`. Device switches live in
:class:`PackOptions` (fast settings by default on CUDA, fp32 eager on the CPU). :func:`auto_pack_size` picks G from the device's free memory.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from prunescope.data.device import DeviceImages
from prunescope.models import skeleton
from prunescope.models.stacked import StackedModel, stack, stack_masks
from prunescope.train.options import DeviceProfile, PackOptions, device_profile
from prunescope.train.loop import (FitResult, Net, ProgressFn, _same_device,
                                   default_sync_every, train_net)
from prunescope.train.recipe import Recipe

__all__ = ["PackOptions", "activation_elements", "auto_pack_size", "fit_pack"]


def _as_list(sets: DeviceImages | Sequence[DeviceImages], g: int, what: str
             ) -> list[DeviceImages]:
    """One set for every model (the same object repeated) or exactly ``g`` sets."""
    if isinstance(sets, DeviceImages):
        return [sets] * g
    sets = list(sets)
    if len(sets) != g:
        raise ValueError(f"give one {what} set for all models or one per model ({g}), "
                         f"got {len(sets)}")
    first = sets[0]
    for i, s in enumerate(sets):
        if len(s) != len(first) or s.shape_hwc != first.shape_hwc:
            raise ValueError(f"{what} set {i} has {len(s)} images of shape {s.shape_hwc}, set 0 "
                             f"has {len(first)} of {first.shape_hwc}: a pack steps all models "
                             "together, so their sets must have one size")
        if s.mean != first.mean or s.std != first.std:
            raise ValueError(f"{what} set {i} is normalised differently from set 0")
    return sets


def _pack_masks(pack: StackedModel, masks: Sequence[Mapping[str, torch.Tensor] | None] | None
                ) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Checked pack masks as parallel lists ``(params, masks)`` for foreach multiplies."""
    if masks is None:
        return [], []
    for i, m in enumerate(masks):
        for name, t in (m or {}).items():
            t = torch.as_tensor(t)
            if not bool(((t == 0) | (t == 1)).all()):
                raise ValueError(f"mask {name!r} of model {i} must hold only 0/1 (or bool) values")
    packed = stack_masks(pack, masks)
    params = dict(pack.named_parameters())
    names = list(packed)
    return [params[n] for n in names], [packed[n] for n in names]


def fit_pack(
    models: Sequence[nn.Module],
    train: DeviceImages | Sequence[DeviceImages],
    val: DeviceImages | Sequence[DeviceImages],
    recipe: Recipe,
    seeds: Sequence[int],
    masks: Sequence[Mapping[str, torch.Tensor] | None] | None = None,
    progress: ProgressFn | None = None,
    options: PackOptions | None = None,
    sync_every: int | None = None,
    stop_after_step: int | None = None,
    start_step: int = 0,
    profile: DeviceProfile | None = None,
    objective: Any = None,
) -> list[FitResult]:
    """Train G models of one architecture together; per model, what ``fit`` does alone.

    Args:
        models: G >= 1 models of one architecture (LeNet-5 or a CIFAR ResNet), initialised, on
            the device of the data. They receive their kept weights (in place, as with ``fit``).
        train: one training set shared by all models, or one per model (all the same size).
        val: one validation set, or one per model (all the same size).
        recipe: optimiser and schedule, shared by the pack.
        seeds: one seed per model; model g's data order and augmentation are those of
            ``fit(..., seed=seeds[g])``.
        masks: ``None``, or one entry per model: ``None`` (dense) or
            ``{param name: 0/1 tensor of the param's shape}`` (all non-None entries naming the
            same parameters). Masked weights are zeroed at the start; gradients are multiplied
            by the masks before each step and the weights after it (one foreach multiply each),
            so they stay exactly 0.
        progress: ``progress(step, total_steps, info)`` after every step with
            ``info = {"epoch", "lr"}`` (no loss: reading it would stall the device each step);
            after each epoch's validation once more with ``info = {"epoch", "lr", "models":
            [each model's history dict]}``.
        options: device switches; default :meth:`PackOptions.for_device` of the models' device.
        profile: the models' device resolved once (:func:`~prunescope.train.options.device_profile`;
            the study worker passes its ``WorkerContext.profile``): its ``pack_options`` and
            ``sync_every`` replace ``options`` and the device's default (give one of the two).
        sync_every, stop_after_step, start_step: as for :func:`~prunescope.train.fit` (the
            losses of every model are checked every ``sync_every`` steps: 1 on the CPU, 25
            elsewhere; a pack starts with fresh momentum).
        objective: the fine-tuning loss of the G models
            (:func:`prunescope.train.objectives.build_objective` with ``stacked=True`` and one
            reference per model, in this order); ``None``: cross-entropy.

    Returns:
        One :class:`~prunescope.train.FitResult` per model, as ``fit`` returns it; its history
        dicts have ``fit``'s keys (``images_per_s`` counts that model's images; the pack trains
        G times as many) plus ``pack_size``. Models are left in eval mode.

    Raises:
        TrainingDiverged: a model's training or validation loss is NaN or infinite; ``models``
            names every model with a non-finite loss among the steps checked together.
        ValueError: mismatched lengths, devices, set sizes or masks.
    """
    g = len(models)
    if g == 0:
        raise ValueError("fit_pack needs at least one model")
    if len(seeds) != g:
        raise ValueError(f"need one seed per model ({g}), got {len(seeds)}")
    if masks is not None and len(masks) != g:
        raise ValueError(f"need one mask dict (or None) per model ({g}), got {len(masks)}")
    trains = _as_list(train, g, "train")
    vals = _as_list(val, g, "val")
    if len(trains[0]) == 0 or len(vals[0]) == 0:
        raise ValueError(f"need non-empty train and val sets, got {len(trains[0])} and "
                         f"{len(vals[0])}")
    pack = stack(models)
    device = next(pack.parameters()).device
    for s in trains + vals:
        if not _same_device(s.device, device):
            raise ValueError(f"the images are on {s.device} but the models are on {device}; "
                             f"build DeviceImages with device={str(device)!r}")
    if profile is not None and options is not None:
        raise ValueError("give fit_pack options or a profile, not both")
    prof = profile if profile is not None else device_profile(device, pack_options=options)

    return train_net(Net(pack, g, stacked=True), models, trains, vals, recipe, seeds,
                     _pack_masks(pack, masks), progress, prof,
                     default_sync_every(prof, sync_every), stop_after_step, start_step,
                     objective=objective)


def activation_elements(arch: str, num_classes: int = 10, in_channels: int = 3,
                        image_size: int = 32) -> int:
    """Number of activation values one image produces in one model: the summed output sizes of
    its Conv2d, BatchNorm2d and Linear layers (computed on the meta device, no memory used).
    The ReLU outputs and residual sums of the same sizes are covered by :func:`auto_pack_size`'s
    factor."""
    model = skeleton(arch, num_classes, in_channels, image_size=image_size)
    total = 0

    def count(_m: nn.Module, _i: Any, out: torch.Tensor) -> None:
        nonlocal total
        total += out[0].numel()

    hooks = [m.register_forward_hook(count) for m in model.modules()
             if isinstance(m, (nn.Conv2d, nn.BatchNorm2d, nn.Linear))]
    model(torch.empty(1, in_channels, image_size, image_size, device="meta"))
    for h in hooks:
        h.remove()
    return total


#: bytes kept per counted activation value for the backward pass, relative to one value:
#: conv output + BN output + ReLU output/mask + residual sum ~ 2 values saved per counted one
_ACT_FACTOR = 2.0
#: bytes per parameter held per model: weight, gradient, momentum, best-epoch copy (fp32)
_PARAM_BYTES = 16
#: fraction of the free memory a pack may plan to use (the rest: allocator slack, workspaces,
#: compiled graphs, the dataset)
_MEMORY_SHARE = 0.6
#: packs larger than this gain little more throughput on an H100 and slow every model's epoch
MAX_PACK_SIZE = 64


def memory_per_model(arch: str, *, batch_size: int = 128, num_classes: int = 10,
                     in_channels: int = 3, image_size: int = 32,
                     options: PackOptions | None = None) -> int:
    """Bytes of device memory one model of a pack is estimated to need while it trains:
    ``batch_size * activation_elements * 2.0 * bytes_per_value + 16 * parameters``
    (bytes_per_value 2 with ``options.bf16``, else 4; 16 bytes per parameter: weight, gradient,
    momentum, best-epoch copy). A pack of G is estimated at G times this; :func:`auto_pack_size`
    plans with it and ``bench/gpu_check.py`` sets it beside the measured peak."""
    acts = activation_elements(arch, num_classes, in_channels, image_size)  # checks ``arch``
    value_bytes = 2 if options is not None and options.bf16 else 4
    single = skeleton(arch, num_classes, in_channels, image_size=image_size)
    n_params = sum(p.numel() for p in single.parameters())
    return int(batch_size * acts * _ACT_FACTOR * value_bytes + _PARAM_BYTES * n_params)


def auto_pack_size(
    arch: str,
    device: torch.device | str | DeviceProfile,
    free_memory: int | None = None,
    *,
    batch_size: int = 128,
    num_classes: int = 10,
    in_channels: int = 3,
    image_size: int = 32,
    options: PackOptions | None = None,
    max_size: int = MAX_PACK_SIZE,
) -> int:
    """Pack size G for ``arch`` on ``device`` (a device, or its resolved
    :class:`~prunescope.train.options.DeviceProfile`, whose ``pack_options`` replace
    ``options``).

    On CUDA: ``G = floor(0.6 * free / per_model)`` with ``per_model`` =
    :func:`memory_per_model` (its activations at 2 bytes per value with bf16 autocast, else 4),
    clamped to ``1..max_size``. ``free_memory`` (bytes) overrides the
    measured free memory (``torch.cuda.mem_get_info`` plus this process's cached, unallocated
    blocks). Elsewhere (CPU): 1, since a pack trains slower there than its models one after
    another (the CPU's grouped-convolution backward; measured on 2 cores: 0.5-0.9x,
    docs/benchmarks/speed.md).
    """
    prof = (device if isinstance(device, DeviceProfile)
            else device_profile(torch.device(device), pack_options=options))
    if max_size < 1:
        raise ValueError(f"max_size must be >= 1, got {max_size}")
    per_model = memory_per_model(arch, batch_size=batch_size, num_classes=num_classes,
                                 in_channels=in_channels, image_size=image_size,
                                 options=prof.pack_options)  # checks ``arch``
    if not prof.is_cuda:
        return 1
    device = torch.device(prof.name)
    if free_memory is None:
        # the device's free memory plus what this process's allocator holds unused (cached
        # blocks of earlier packs), which the CUDA driver counts as taken
        free_memory = (torch.cuda.mem_get_info(device)[0] + torch.cuda.memory_reserved(device)
                       - torch.cuda.memory_allocated(device))
    g = int(_MEMORY_SHARE * free_memory // per_model)
    return max(1, min(g, max_size))
