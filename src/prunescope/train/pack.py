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

Device switches live in :class:`PackOptions` (fast settings by default on CUDA, fp32 eager on
the CPU). :func:`auto_pack_size` picks G from the device's free memory.
"""
from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from prunescope.data.device import DeviceImages, crop_flip, epoch_draws
from prunescope.models import skeleton
from prunescope.models.stacked import StackedModel, stack, stack_masks
from prunescope.train.loop import (FitResult, ProgressFn, TrainingDiverged, _mask_params,
                                   _masked_step, _same_device, _set_lr, data_generator)
from prunescope.train.recipe import Recipe

__all__ = ["PackOptions", "activation_elements", "auto_pack_size", "fit_pack"]


@dataclass(frozen=True)
class PackOptions:
    """Device switches of packed training (none changes the maths, only speed and rounding).

    Attributes:
        bf16: run forward/backward under ``torch.autocast`` with bfloat16 (CUDA); weights,
            optimiser state and the loss stay float32.
        channels_last: keep conv weights (and so activations) in NHWC memory layout.
        compile: ``torch.compile`` the stacked network (once per architecture and pack shape;
            later packs of the same shape reuse the compiled code).
        cuda_graphs: with ``compile``, use mode ``"reduce-overhead"`` (CUDA graphs) so each step
            is replayed as one graph instead of hundreds of small kernel launches.
        fused_optimizer: the fused (CUDA) SGD step, one kernel for all parameters.
    """

    bf16: bool = False
    channels_last: bool = False
    compile: bool = False
    cuda_graphs: bool = False
    fused_optimizer: bool = False

    def __post_init__(self) -> None:
        if self.cuda_graphs and not self.compile:
            raise ValueError("cuda_graphs=True needs compile=True (CUDA graphs come from "
                             "torch.compile's 'reduce-overhead' mode)")

    @classmethod
    def for_device(cls, device: torch.device | str, **overrides: bool) -> PackOptions:
        """Everything on for CUDA; fp32 eager (all off) elsewhere; then ``overrides`` (switch
        name -> bool). Turning ``compile`` off also turns off ``cuda_graphs`` unless that is
        given too (CUDA graphs come from compiling)."""
        unknown = sorted(set(overrides) - set(cls.__dataclass_fields__))
        if unknown:
            raise ValueError(f"unknown PackOptions switch {unknown[0]!r}; the switches are "
                             f"{', '.join(cls.__dataclass_fields__)}")
        on = torch.device(device).type == "cuda"
        values = {name: on for name in cls.__dataclass_fields__}
        if overrides.get("compile") is False:
            values["cuda_graphs"] = False
        return cls(**{**values, **overrides})

    def check(self, device: torch.device) -> None:
        """Raise ValueError when a switch needs CUDA and ``device`` is not a CUDA device."""
        if device.type != "cuda":
            on = [n for n in ("bf16", "cuda_graphs", "fused_optimizer") if getattr(self, n)]
            if on:
                raise ValueError(f"PackOptions {on} need a CUDA device, the pack is on {device}; "
                                 "use PackOptions.for_device(device)")


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


def _pack_batch(sets: list[DeviceImages], idx: torch.Tensor, offsets: torch.Tensor | None,
                flips: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Gather, crop/flip and normalise one step's images for every model.

    Args:
        sets: one set per model (length G; the same object G times for a shared set).
        idx: ``(G, b)`` int64 image indices per model.
        offsets, flips: ``(G, b, 2)`` / ``(G, b)`` augmentation draws, or ``None``.

    Returns:
        x float32 ``(G, b, C, H, W)`` (memory laid out ``(b, G, C, H, W)`` so that the stacked
        network's channel view is free), y int64 ``(G, b)``.
    """
    g, b = idx.shape
    if all(s is sets[0] for s in sets):
        flat = idx.t().reshape(-1)  # sample-major: (b * G,)
        xb, yb = sets[0].x[flat], sets[0].y[flat]
    else:
        xb = torch.stack([s.x[i] for s, i in zip(sets, idx)], dim=1).flatten(0, 1)
        yb = torch.stack([s.y[i] for s, i in zip(sets, idx)], dim=1).flatten(0, 1)
    if offsets is not None and flips is not None:
        xb = crop_flip(xb, offsets.transpose(0, 1).reshape(-1, 2), flips.t().reshape(-1))
    x = sets[0].normalize(xb)  # (b * G, C, H, W), sample b * G + g at offset (b * G + g) * s0
    # (G, b, C, H, W) view keeping each image's own strides (view/unflatten would renormalise
    # the strides of size-1 dims, and convolution kernels choose their algorithm by strides)
    s0, *rest = x.stride()
    x = x.as_strided((g, b, *x.shape[1:]), (s0, g * s0, *rest), x.storage_offset())
    return x, yb.view(b, g).t()


def _epoch_draws(n: int, used: int, augment: bool, gens: Sequence[torch.Generator],
                 device: torch.device) -> tuple[torch.Tensor, torch.Tensor | None,
                                                torch.Tensor | None]:
    """Each model's data order and augmentation for one epoch, drawn from its own generator in
    the order :meth:`DeviceImages.batches` draws them (permutation, crop offsets, flips).

    Returns ``order (G, used)``, ``offsets (G, used, 2)`` and ``flips (G, used)`` on ``device``
    (the last two ``None`` without augmentation).
    """
    orders, offs, flips = zip(*(epoch_draws(n, used, True, augment, gen) for gen in gens))
    order = torch.stack(orders).to(device, non_blocking=True)
    if not augment:
        return order, None, None
    return (order, torch.stack(offs).to(device, non_blocking=True),
            torch.stack(flips).to(device, non_blocking=True))


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


@torch.no_grad()
def _validation(fwd: nn.Module, pack: StackedModel, vals: list[DeviceImages], batch_size: int,
                opts: PackOptions) -> tuple[list[float], list[float]]:
    """Per-model mean cross-entropy (nats) and accuracy (0..1) on the validation set(s), the
    pack in eval mode. Per model this is the arithmetic of ``fit``'s validation."""
    pack.eval()
    g = pack.groups
    device = next(pack.parameters()).device
    loss_sum = torch.zeros(g, dtype=torch.float64, device=device)
    correct = torch.zeros(g, dtype=torch.int64, device=device)
    shared = all(v is vals[0] for v in vals)
    streams = [vals[0].batches(batch_size)] if shared else [v.batches(batch_size) for v in vals]
    for parts in zip(*streams):
        if shared:
            xb, yb = parts[0]
            x, y = xb.unsqueeze(0).expand(g, *xb.shape), yb.unsqueeze(0).expand(g, -1)
        else:
            x = torch.stack([p[0] for p in parts])
            y = torch.stack([p[1] for p in parts])
        if opts.cuda_graphs:
            torch.compiler.cudagraph_mark_step_begin()
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=opts.bf16):
            logits = fwd(x)
        for i in range(g):
            loss_sum[i] += F.cross_entropy(logits[i].float(), y[i], reduction="sum").double()
        correct += (logits.argmax(-1) == y).sum(1)
    n = len(vals[0])
    return (loss_sum / n).tolist(), (correct.double() / n).tolist()


def fit_pack(
    models: Sequence[nn.Module],
    train: DeviceImages | Sequence[DeviceImages],
    val: DeviceImages | Sequence[DeviceImages],
    recipe: Recipe,
    seeds: Sequence[int],
    masks: Sequence[Mapping[str, torch.Tensor] | None] | None = None,
    progress: ProgressFn | None = None,
    options: PackOptions | None = None,
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

    Returns:
        One :class:`~prunescope.train.FitResult` per model, as ``fit`` returns it; its history
        dicts have ``fit``'s keys (``images_per_s`` counts that model's images; the pack trains
        G times as many) plus ``pack_size``. Models are left in eval mode.

    Raises:
        TrainingDiverged: a model's mean training loss over an epoch, or its validation loss,
            is NaN or infinite (checked once per epoch, not per step, to keep the device busy).
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
    opts = options if options is not None else PackOptions.for_device(device)
    opts.check(device)

    masked_params, masked_by = _pack_masks(pack, masks)
    _mask_params(masked_params, masked_by)
    if opts.channels_last:  # converts the parameters' storage; the Parameter objects stay
        pack = pack.to(memory_format=torch.channels_last)
        masked_by = [m.contiguous(memory_format=torch.channels_last) if m.ndim == 4 else m
                     for m in masked_by]
    opt = torch.optim.SGD(
        pack.parameters(), lr=recipe.schedule[0][1], momentum=recipe.momentum,
        nesterov=recipe.nesterov, weight_decay=recipe.weight_decay,
        fused=True if opts.fused_optimizer else None,
    )
    fwd: nn.Module = pack
    if opts.compile:
        # dynamic=False: one static graph per batch shape; with automatic dynamic shapes the
        # epoch's smaller last batch would recompile for a symbolic batch size, and that graph
        # (checked first) would then serve every full-size step too
        fwd = torch.compile(pack, mode="reduce-overhead" if opts.cuda_graphs else None,
                            dynamic=False)

    gens = [data_generator(s) for s in seeds]
    n = len(trains[0])
    bs = recipe.batch_size
    steps = trains[0].num_batches(bs, recipe.max_steps_per_epoch)
    used = min(n, steps * bs)
    total_steps = steps * recipe.epochs
    histories: list[list[dict[str, Any]]] = [[] for _ in range(g)]
    best_loss = [math.inf] * g
    best_epoch = [0] * g
    state = pack.state_dict()
    best = {k: v.detach().clone(memory_format=torch.contiguous_format) for k, v in state.items()}
    best_counters: list[dict[str, torch.Tensor]] = [{} for _ in range(g)]
    step_global = 0
    with _recompile_room(opts.compile):
        for epoch in range(1, recipe.epochs + 1):
            lr = _set_lr(opt, recipe, epoch)
            pack.train()
            t0 = time.perf_counter()
            loss_sum = torch.zeros(g, dtype=torch.float64, device=device)
            order, offsets, flips = _epoch_draws(n, used, recipe.augment, gens, device)
            for step in range(steps):
                sl = slice(step * bs, min((step + 1) * bs, used))
                x, y = _pack_batch(trains, order[:, sl],
                                   None if offsets is None else offsets[:, sl],
                                   None if flips is None else flips[:, sl])
                if opts.cuda_graphs:  # the previous step's graph outputs may be overwritten
                    torch.compiler.cudagraph_mark_step_begin()
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=opts.bf16):
                    logits = fwd(x)
                flat = logits.float().reshape(-1, logits.shape[-1])
                # mean over all G*b images times G = sum over models of each model's mean CE
                loss = F.cross_entropy(flat, y.reshape(-1)) * g
                with torch.no_grad():
                    per_model = F.cross_entropy(flat.detach(), y.reshape(-1), reduction="none")
                    loss_sum += per_model.view(g, -1).sum(1).double()
                _masked_step(opt, loss, masked_params, masked_by)
                step_global += 1
                if progress is not None:
                    progress(step_global, total_steps, {"epoch": epoch, "lr": lr})
            train_losses = (loss_sum / used).tolist()  # one device sync per epoch
            train_seconds = time.perf_counter() - t0
            _check_models(train_losses, epoch, steps, "mean training")
            val_losses, val_accs = _validation(fwd, pack, vals, recipe.val_batch_size, opts)
            seconds = time.perf_counter() - t0
            state = pack.state_dict()
            _check_models(val_losses, epoch, 0, "validation")
            improved = [i for i in range(g) if val_losses[i] < best_loss[i]]
            if improved:  # one contiguous copy per channels_last tensor, shared by the models
                current = {k: v.contiguous() for k, v in state.items()}
            for i in range(g):
                histories[i].append({
                    "epoch": epoch, "lr": lr, "steps": steps, "train_loss": train_losses[i],
                    "val_loss": val_losses[i], "val_acc": val_accs[i], "seconds": seconds,
                    "images_per_s": used / train_seconds if train_seconds > 0 else math.inf,
                    "pack_size": g,
                })
                if i in improved:
                    best_loss[i], best_epoch[i] = val_losses[i], epoch
                    _keep_model(pack, current, best, best_counters[i], i)
            if progress is not None:
                progress(step_global, total_steps,
                         {"epoch": epoch, "lr": lr, "models": [dict(h[-1]) for h in histories]})

    results = []
    for i, model in enumerate(models):
        kept = {}
        for k in state:
            kept[k] = (best_counters[i][k] if k in best_counters[i]
                       else pack.per_model(k, best[k])[i].clone())
        model.load_state_dict(kept)
        model.eval()
        results.append(FitResult(best_epoch=best_epoch[i], history=histories[i], state_dict=kept))
    return results


def _recompile_room(compiling: bool) -> contextlib.AbstractContextManager[Any]:
    """Raise dynamo's per-function recompile limit while a compiled pack trains.

    Every stacked architecture shares one ``forward`` code object per class, and each
    (depth, G, train/eval, grad mode, batch size) is one compiled entry of it. A study worker
    runs many packs in one process; with dynamo's default of 8 entries, later packs would
    silently run eager (measured on the CPU: ResNet-20/32/44 packs of G = 2 and 1 hit the limit at
    the 9th entry, and the ResNet-44 packs ran uncompiled).
    """
    if not compiling:
        return contextlib.nullcontext()
    cfg = torch._dynamo.config
    name = "recompile_limit" if hasattr(cfg, "recompile_limit") else "cache_size_limit"
    return cfg.patch({name: max(getattr(cfg, name), RECOMPILE_LIMIT)})


def _check_models(losses: Sequence[float], epoch: int, step: int, what: str) -> None:
    """Raise :class:`TrainingDiverged` naming every model whose loss is NaN or infinite."""
    bad = tuple(i for i, v in enumerate(losses) if not math.isfinite(v))
    if bad:
        raise TrainingDiverged(epoch, step, losses[bad[0]], models=bad,
                               where=f"model {bad[0]}'s {what}" if len(bad) == 1 else
                               f"models {list(bad)}: model {bad[0]}'s {what}")


def _keep_model(pack: StackedModel, state: Mapping[str, torch.Tensor],
                best: dict[str, torch.Tensor], counters: dict[str, torch.Tensor], i: int) -> None:
    """Copy model ``i``'s slice of the pack's current ``state`` (contiguous tensors) into
    ``best`` (contiguous tensors of the stacked shapes); the pack-wide BatchNorm counters go to
    ``counters``."""
    with torch.no_grad():
        for k, v in state.items():
            if k.endswith("num_batches_tracked"):
                counters[k] = v.detach().clone()
            else:
                pack.per_model(k, best[k])[i].copy_(pack.per_model(k, v)[i])


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
#: compiled entries dynamo may keep per stacked ``forward`` while packs train (see
#: ``_recompile_room``): 6 architectures x a few pack sizes x train/eval x static/dynamic
RECOMPILE_LIMIT = 128
#: packs larger than this gain little more throughput on an H100 and slow every model's epoch
MAX_PACK_SIZE = 64


def auto_pack_size(
    arch: str,
    device: torch.device | str,
    free_memory: int | None = None,
    *,
    batch_size: int = 128,
    num_classes: int = 10,
    in_channels: int = 3,
    image_size: int = 32,
    options: PackOptions | None = None,
    max_size: int = MAX_PACK_SIZE,
) -> int:
    """Pack size G for ``arch`` on ``device``.

    On CUDA: ``G = floor(0.6 * free / per_model)`` with ``per_model = batch_size *
    activation_elements * 2.0 * bytes_per_value + 16 * parameters`` (bytes_per_value 2 with
    bf16 autocast, else 4), clamped to ``1..max_size``. ``free_memory`` (bytes) overrides the
    measured free memory (``torch.cuda.mem_get_info`` plus this process's cached, unallocated
    blocks). Elsewhere (CPU): 1, since a pack trains slower there than its models one after
    another (the CPU's grouped-convolution backward; measured on 2 cores: 0.5-0.9x,
    docs/benchmarks/speed.md).
    """
    device = torch.device(device)
    opts = options if options is not None else PackOptions.for_device(device)
    if max_size < 1:
        raise ValueError(f"max_size must be >= 1, got {max_size}")
    acts = activation_elements(arch, num_classes, in_channels, image_size)  # checks ``arch``
    if device.type != "cuda":
        return 1
    if free_memory is None:
        # the device's free memory plus what this process's allocator holds unused (cached
        # blocks of earlier packs), which the CUDA driver counts as taken
        free_memory = (torch.cuda.mem_get_info(device)[0] + torch.cuda.memory_reserved(device)
                       - torch.cuda.memory_allocated(device))
    value_bytes = 2 if opts.bf16 else 4
    single = skeleton(arch, num_classes, in_channels, image_size=image_size)
    n_params = sum(p.numel() for p in single.parameters())
    per_model = batch_size * acts * _ACT_FACTOR * value_bytes + _PARAM_BYTES * n_params
    g = int(_MEMORY_SHARE * free_memory // per_model)
    return max(1, min(g, max_size))
