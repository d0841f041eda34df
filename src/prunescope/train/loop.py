"""The training loop of SPEC 4: SGD (Nesterov), step schedule, best-validation-loss checkpoint
choice, fixed pruning masks; plus prediction and confusion-matrix evaluation.

There is one loop, :func:`train_net`, for G >= 1 models trained as one network: :func:`fit` runs
it on one model (any ``nn.Module``), :func:`prunescope.train.pack.fit_pack` on G models stacked
into one (:mod:`prunescope.models.stacked`). Each model draws its own data order and
augmentation from ``data_generator(seed)`` exactly as :meth:`DeviceImages.batches` draws them,
its loss is checked for NaN/inf every ``sync_every`` steps, and it keeps its own epoch by the
recipe's ``select`` rule (:mod:`prunescope.train.select`). ``stop_after_step`` ends a run
mid-schedule (LTH rewinding) and ``start_step`` begins one there (LTH retraining to the end of
the schedule).
"""
from __future__ import annotations

import contextlib
import copy
import hashlib
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from prunescope.data.device import DeviceImages, crop_flip, epoch_draws
from prunescope.metrics import confusion_from_predictions
from prunescope.train.options import DeviceProfile, PackOptions, device_profile
from prunescope.train.recipe import Recipe
from prunescope.train.select import EpochChoice

#: progress callback: ``(step, total_steps, info)``; ``step`` counts optimiser steps from 1
ProgressFn = Callable[[int, int, dict[str, Any]], None]


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite. Attributes: ``epoch`` (1-based), ``step`` (1-based
    within the epoch; 0 for the validation loss), ``loss``, and ``models``: in a pack
    (:func:`~prunescope.train.pack.fit_pack`), the indices of every model whose loss was not
    finite in the checked steps (empty for :func:`fit`)."""

    def __init__(self, epoch: int, step: int, loss: float, where: str = "training",
                 models: tuple[int, ...] = ()) -> None:
        self.epoch, self.step, self.loss, self.models = epoch, step, loss, tuple(models)
        super().__init__(
            f"{where} loss is {loss} at epoch {epoch}, step {step}: training diverged. Lower the "
            "learning rate, check the inputs for NaN/inf, or check the normalisation (std > 0)"
        )


@dataclass
class FitResult:
    """What :func:`fit` returns.

    Attributes:
        best_epoch: 1-based epoch whose weights were kept (by the recipe's ``select`` rule:
            the lowest validation loss by default, :mod:`prunescope.train.select`).
        history: one dict per epoch with ``epoch`` (1-based), ``lr``, ``steps``,
            ``train_loss`` (mean cross-entropy over the epoch's training images, nats),
            ``val_loss`` (mean cross-entropy on the validation set, nats), ``val_acc`` (0..1),
            ``seconds`` (wall time of the epoch including validation), ``images_per_s``
            (training images per second of training time).
        state_dict: the kept weights and buffers (tensors on the model's device); they are
            also loaded into the model.
        optimizer_state: after ``fit(stop_after_step=k)``, the SGD state (momentum buffers) at
            step k, which ``fit(start_step=k, optimizer_state=...)`` resumes from; else ``None``.
    """

    best_epoch: int
    history: list[dict[str, Any]] = field(default_factory=list)
    state_dict: dict[str, torch.Tensor] = field(default_factory=dict)
    optimizer_state: dict[str, Any] | None = None


def derive_seed(seed: int, purpose: str) -> int:
    """A 63-bit seed for one ``purpose`` (e.g. ``"data"``) derived from ``seed`` by hashing."""
    digest = hashlib.blake2b(f"{int(seed)}/{purpose}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


def data_generator(seed: int) -> torch.Generator:
    """The CPU generator :func:`fit` draws a model's data order and augmentation from.

    Exposed so that packed training (several models at once) reproduces a single model's data
    stream exactly: model with seed s sees ``data_generator(s)``.
    """
    return torch.Generator().manual_seed(derive_seed(seed, "data"))


def _model_device(model: nn.Module) -> torch.device:
    for p in model.parameters():
        return p.device
    raise ValueError("the model has no parameters to train")


def _same_device(a: torch.device, b: torch.device) -> bool:
    """Whether two devices are the same one (``cuda`` means the current CUDA device)."""
    def norm(d: torch.device) -> tuple[str, int | None]:
        if d.type == "cuda" and d.index is None:
            return ("cuda", torch.cuda.current_device())
        return (d.type, d.index)

    return a.type == b.type and norm(a) == norm(b)


def _check_masks(model: nn.Module, masks: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Mask tensors as float on the parameters' devices, checked against names and shapes."""
    params = dict(model.named_parameters())
    out: dict[str, torch.Tensor] = {}
    for name, m in masks.items():
        if name not in params:
            raise ValueError(
                f"mask for {name!r} names no parameter of the model; parameter names look like "
                f"{list(params)[:3]}"
            )
        p = params[name]
        if tuple(m.shape) != tuple(p.shape):
            raise ValueError(
                f"mask for {name!r} has shape {tuple(m.shape)} but the parameter has "
                f"{tuple(p.shape)}"
            )
        m = torch.as_tensor(m, device=p.device)
        if not bool(((m == 0) | (m == 1)).all()):
            raise ValueError(f"mask for {name!r} must hold only 0/1 (or bool) values")
        out[name] = m.to(p.dtype)
    return out


@torch.no_grad()
def _mask_params(params: Sequence[torch.Tensor], masks: Sequence[torch.Tensor]) -> None:
    """``params[i] *= masks[i]`` in place for every i, as one ``torch._foreach_mul_`` (masks
    0/1 of each parameter's shape and dtype, on its device)."""
    if params:
        torch._foreach_mul_(list(params), list(masks))


@torch.no_grad()
def _mask_grads(params: Sequence[torch.Tensor], masks: Sequence[torch.Tensor]) -> None:
    """``params[i].grad *= masks[i]`` in place for every parameter that has a gradient (one
    without, e.g. unused by the loss, is skipped), as one ``torch._foreach_mul_``."""
    pairs = [(p.grad, m) for p, m in zip(params, masks) if p.grad is not None]
    if pairs:
        torch._foreach_mul_([g for g, _ in pairs], [m for _, m in pairs])


def _masked_step(opt: torch.optim.Optimizer, loss: torch.Tensor, params: Sequence[torch.Tensor],
                 masks: Sequence[torch.Tensor]) -> None:
    """One optimiser step on ``loss`` that keeps masked weights exactly 0: the gradients are
    multiplied by the masks before the step and the weights after it (one
    ``torch._foreach_mul_`` each; nothing to do without masks)."""
    opt.zero_grad(set_to_none=True)
    loss.backward()
    _mask_grads(params, masks)
    opt.step()
    _mask_params(params, masks)


def _set_lr(opt: torch.optim.Optimizer, recipe: Recipe, epoch: int) -> float:
    """Set every parameter group's learning rate to the schedule's for 1-based ``epoch``;
    returns it."""
    lr = recipe.lr_at(epoch - 1)
    for group in opt.param_groups:
        group["lr"] = lr
    return lr


@dataclass(frozen=True)
class Net:
    """What the training loop trains: G models as one module.

    Attributes:
        module: the module holding every parameter and buffer: one model (``stacked`` False,
            G = 1) or a :class:`~prunescope.models.stacked.StackedModel` of G models.
        groups: G.
        stacked: whether ``module`` is a stacked pack (its input is ``(G, B, C, H, W)`` and its
            output ``(G, B, K)``); a single model takes ``(B, C, H, W)``.
    """

    module: nn.Module
    groups: int
    stacked: bool

    def per_model(self, name: str, tensor: torch.Tensor) -> torch.Tensor:
        """``tensor`` (a state tensor ``name`` of ``module``, contiguous) viewed as
        ``(G, *one model's shape)``."""
        return self.module.per_model(name, tensor) if self.stacked else tensor.unsqueeze(0)

    def model_state(self, state: Mapping[str, torch.Tensor], i: int) -> dict[str, torch.Tensor]:
        """Model ``i``'s own copy of every tensor of ``state`` (contiguous tensors of
        ``module``'s state; a pack's BatchNorm ``num_batches_tracked`` counter is shared)."""
        return {k: v.detach().clone() if k.endswith("num_batches_tracked")
                else self.per_model(k, v)[i].clone() for k, v in state.items()}


def _forward(body: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, stacked: bool
             ) -> torch.Tensor:
    """Logits ``(G, B, K)`` of ``x`` ``(G, B, C, H, W)`` (a single model sees ``x[0]``)."""
    return body(x) if stacked else body(x[0]).unsqueeze(0)


def _pack_batch(sets: Sequence[DeviceImages], idx: torch.Tensor, offsets: torch.Tensor | None,
                flips: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Gather, crop/flip and normalise one step's images for every model.

    Args:
        sets: one set per model (length G; the same object G times for a shared set).
        idx: ``(G, b)`` int64 image indices per model.
        offsets, flips: ``(G, b, 2)`` / ``(G, b)`` augmentation draws, or ``None``.

    Returns:
        x float32 ``(G, b, C, H, W)`` (memory laid out ``(b, G, C, H, W)`` so that the stacked
        network's channel view is free; for G = 1, ``x[0]`` is the batch
        :meth:`DeviceImages.batches` yields), y int64 ``(G, b)``.
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


@torch.no_grad()
def _validation(body: Callable[[torch.Tensor], torch.Tensor], net: Net,
                vals: Sequence[DeviceImages], batch_size: int, opts: PackOptions
                ) -> tuple[list[float], list[float]]:
    """Per-model mean cross-entropy (nats) and accuracy (0..1) on the validation set(s), the
    network in eval mode."""
    net.module.eval()
    g = net.groups
    device = _model_device(net.module)
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
            logits = _forward(body, x, net.stacked)
        for i in range(g):
            loss_sum[i] += F.cross_entropy(logits[i].float(), y[i], reduction="sum").double()
        correct += (logits.argmax(-1) == y).sum(1)
    n = len(vals[0])
    return (loss_sum / n).tolist(), (correct.double() / n).tolist()


def _diverged(net: Net, epoch: int, step: int, loss: float, bad: Sequence[int], first: int,
              what: str) -> TrainingDiverged:
    """The error for the models ``bad`` whose ``what`` loss is not finite; ``loss`` is model
    ``first``'s (one of ``bad``) at ``step``."""
    if not net.stacked:
        return TrainingDiverged(epoch, step, loss, where=what)
    return TrainingDiverged(epoch, step, loss, models=tuple(bad),
                            where=f"model {first}'s {what}" if len(bad) == 1 else
                            f"models {list(bad)}: model {first}'s {what}")


def _check_losses(losses: torch.Tensor, start: int, stop: int, net: Net, epoch: int
                  ) -> list[float]:
    """Return the last row of ``losses[start:stop]`` (steps x models; one host-device sync).

    Raises:
        TrainingDiverged: at the first step (reported 1-based) with a non-finite loss, naming
            every model that has one in the window.
    """
    rows = losses[start:stop].tolist()
    bad = [i for i in range(net.groups) if not all(math.isfinite(r[i]) for r in rows)]
    if bad:
        j, i = next((j, i) for j, r in enumerate(rows) for i in bad if not math.isfinite(r[i]))
        raise _diverged(net, epoch, start + j + 1, rows[j][i], bad, i, "training")
    return rows[-1]


def _recompile_room(compiling: bool) -> contextlib.AbstractContextManager[Any]:
    """Raise dynamo's per-function recompile limit while a compiled network trains.

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


#: compiled entries dynamo may keep per stacked ``forward`` while packs train (see
#: ``_recompile_room``): 6 architectures x a few pack sizes x train/eval x static/dynamic
RECOMPILE_LIMIT = 128


def train_net(
    net: Net,
    models: Sequence[nn.Module],
    trains: Sequence[DeviceImages],
    vals: Sequence[DeviceImages],
    recipe: Recipe,
    seeds: Sequence[int],
    masks: tuple[list[torch.Tensor], list[torch.Tensor]],
    progress: ProgressFn | None,
    profile: DeviceProfile,
    sync_every: int,
    stop_after_step: int | None,
    start_step: int = 0,
    optimizer_state: dict[str, Any] | None = None,
    objective: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
) -> list[FitResult]:
    """The one training loop behind :func:`fit` (G = 1) and
    :func:`~prunescope.train.pack.fit_pack` (G models stacked); callers check the arguments.

    Args:
        net: the network (:class:`Net`), on the device of the images.
        models: the G single models; each receives its kept weights (``net.module`` itself for
            an unstacked net).
        trains, vals: one training and one validation set per model (all of one size; the same
            object repeated for a shared set).
        recipe: optimiser and schedule.
        seeds: model g's data order and augmentation come from ``data_generator(seeds[g])``,
            drawn as :meth:`DeviceImages.batches` draws them.
        masks: parallel lists ``(parameters of net.module, 0/1 tensors of their shapes)``:
            weights zeroed at the start, gradients masked before each step and weights after it.
        progress, sync_every, stop_after_step, start_step, optimizer_state: as :func:`fit`
            documents them (``optimizer_state`` only for an unstacked net).
        profile: the device's :class:`~prunescope.train.options.DeviceProfile` (``net`` is on
            its device); its ``pack_options`` are the loop's switches.
        objective: the fine-tuning loss (:class:`prunescope.train.objectives.StepLoss`, built
            for these G models), called as ``objective(logits (G, b, K) float32, y (G, b),
            x (G, b, C, H, W))`` each step; ``None``: the sum of the models' mean
            cross-entropies. The history's ``train_loss`` and the validation loss that
            chooses the kept epoch stay cross-entropy either way.

    Returns:
        One :class:`FitResult` per model.
    """
    g = net.groups
    device = _model_device(net.module)
    if not _same_device(torch.device(profile.name), device):
        raise ValueError(f"the device profile is for {profile.name} but the network is on {device}")
    options = profile.pack_options
    n, bs = len(trains[0]), recipe.batch_size
    steps = trains[0].num_batches(bs, recipe.max_steps_per_epoch)
    used = min(n, steps * bs)
    total_steps = steps * recipe.epochs
    _check_span(start_step, stop_after_step, total_steps)
    module, masked_params, masked_by, opt, body = _prepare(net, masks, recipe, options,
                                                           optimizer_state)
    run = _Run(gens=[data_generator(s) for s in seeds], histories=[[] for _ in range(g)],
               choice=EpochChoice(recipe, g), kept=[{} for _ in range(g)],
               step=start_step, objective=objective)
    restarts = recipe.block_starts() if recipe.restart_momentum else frozenset()
    first_epoch, skip = divmod(start_step, steps)
    for _ in range(first_epoch):  # the data streams of the epochs before start_step
        _epoch_draws(n, used, recipe.augment, run.gens, device)
    with _recompile_room(options.compile):
        for epoch in range(first_epoch + 1, recipe.epochs + 1):
            lr = _set_lr(opt, recipe, epoch)
            module.train()
            t0 = time.perf_counter()
            begin = skip if epoch == first_epoch + 1 else 0  # steps before start_step
            if epoch in restarts and begin == 0:  # a new block: the fork's fresh optimiser
                opt.state.clear()
            order, offsets, flips = _epoch_draws(n, used, recipe.augment, run.gens, device)
            loss_sum, seen = _epoch_steps(
                run, net, body, opt, trains, (order, offsets, flips), masked_params, masked_by,
                options, epoch, lr, begin, steps, bs, used, sync_every, total_steps,
                stop_after_step, progress)
            if run.stopped:
                state = {k: v.contiguous() for k, v in module.state_dict().items()}
                run.kept = [net.model_state(state, i) for i in range(g)]
                break
            _end_epoch(run, net, module, body, vals, recipe, options, epoch, lr, steps - begin,
                       (loss_sum / seen).tolist(), seen, t0)
            if progress is not None:
                progress(run.step, total_steps,
                         {"epoch": epoch, "lr": lr, "models": [dict(h[-1]) for h in run.histories]}
                         if net.stacked else dict(run.histories[0][-1]))
    return _results(run, net, models, opt)


@dataclass
class _Run:
    """What :func:`train_net` carries across epochs: each model's data generator, history, the
    kept-epoch choice and kept state; the optimiser steps taken so far (``step``) and whether
    ``stop_after_step`` was reached (``stopped``)."""

    gens: list[torch.Generator]
    histories: list[list[dict[str, Any]]]
    choice: EpochChoice
    kept: list[dict[str, torch.Tensor]]
    step: int
    stopped: bool = False
    #: the fine-tuning loss (``train_net``'s ``objective``), ``None`` for cross-entropy
    objective: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor] | None = None


def _check_span(start_step: int, stop_after_step: int | None, total_steps: int) -> None:
    """``ValueError`` unless ``0 <= start_step < stop_after_step <= total_steps``."""
    if not 0 <= start_step < total_steps:
        raise ValueError(f"start_step={start_step} is outside the run's 0..{total_steps - 1} "
                         "optimiser steps; lower it or lengthen the recipe")
    if stop_after_step is not None and not start_step < stop_after_step <= total_steps:
        raise ValueError(f"stop_after_step={stop_after_step} is outside the run's "
                         f"{start_step + 1}..{total_steps} optimiser steps; lower it or "
                         "lengthen the recipe")


def _prepare(net: Net, masks: tuple[list[torch.Tensor], list[torch.Tensor]], recipe: Recipe,
             opts: PackOptions, optimizer_state: dict[str, Any] | None
             ) -> tuple[nn.Module, list[torch.Tensor], list[torch.Tensor], torch.optim.SGD,
                        Callable[[torch.Tensor], torch.Tensor]]:
    """The masked weights zeroed, the memory layout, the SGD optimiser (resumed from
    ``optimizer_state``) and the forward body (compiled with ``opts.compile``):
    ``(module, masked params, their masks, optimiser, body)``."""
    module = net.module
    masked_params, masked_by = masks
    _mask_params(masked_params, masked_by)
    if opts.channels_last:  # converts the parameters' storage; the Parameter objects stay
        module = module.to(memory_format=torch.channels_last)
        masked_by = [m.contiguous(memory_format=torch.channels_last) if m.ndim == 4 else m
                     for m in masked_by]
    opt = torch.optim.SGD(
        module.parameters(), lr=recipe.schedule[0][1], momentum=recipe.momentum,
        nesterov=recipe.nesterov, weight_decay=recipe.weight_decay,
        fused=True if opts.fused_optimizer else None,
    )
    if optimizer_state is not None:
        if net.stacked:
            raise ValueError("optimizer_state resumes one model's fit, not a pack")
        opt.load_state_dict(optimizer_state)
    body: Callable[[torch.Tensor], torch.Tensor] = module
    if opts.compile:
        # dynamic=False: one static graph per batch shape; with automatic dynamic shapes the
        # epoch's smaller last batch would recompile for a symbolic batch size, and that graph
        # (checked first) would then serve every full-size step too
        body = torch.compile(module, mode="reduce-overhead" if opts.cuda_graphs else None,
                             dynamic=False)
    return module, masked_params, masked_by, opt, body


def _epoch_steps(run: _Run, net: Net, body: Callable[[torch.Tensor], torch.Tensor],
                 opt: torch.optim.Optimizer, trains: Sequence[DeviceImages],
                 draws: tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None],
                 masked_params: list[torch.Tensor], masked_by: list[torch.Tensor],
                 opts: PackOptions, epoch: int, lr: float, begin: int, steps: int, bs: int,
                 used: int, sync_every: int, total_steps: int, stop_after_step: int | None,
                 progress: ProgressFn | None) -> tuple[torch.Tensor, int]:
    """The optimiser steps ``begin + 1 .. steps`` of one epoch (fewer when ``stop_after_step``
    comes first: ``run.stopped``); losses checked every ``sync_every`` steps and at the end.
    Returns ``(sum of each model's per-image training losses (G,) float64, images seen)``."""
    g, device = net.groups, _model_device(net.module)
    order, offsets, flips = draws
    loss_sum = torch.zeros(g, dtype=torch.float64, device=device)
    losses = torch.zeros(steps, g, dtype=torch.float32, device=device)
    checked, seen, step = begin, 0, begin
    for step in range(checked + 1, steps + 1):
        sl = slice((step - 1) * bs, min(step * bs, used))
        seen += sl.stop - sl.start
        x, y = _pack_batch(trains, order[:, sl], None if offsets is None else offsets[:, sl],
                           None if flips is None else flips[:, sl])
        if opts.cuda_graphs:  # the previous step's graph outputs may be overwritten
            torch.compiler.cudagraph_mark_step_begin()
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=opts.bf16):
            logits = _forward(body, x, net.stacked)
        flat = logits.float().reshape(-1, logits.shape[-1])
        # mean over all G*b images times G = sum over models of each model's mean CE
        loss = (F.cross_entropy(flat, y.reshape(-1)) * g if run.objective is None
                else run.objective(logits.float(), y, x))
        with torch.no_grad():
            per_image = F.cross_entropy(flat.detach(), y.reshape(-1),
                                        reduction="none").view(g, -1)
            loss_sum += per_image.sum(1).double()
            losses[step - 1] = per_image.mean(1)
        synced = step % sync_every == 0
        if synced:  # one host sync for the losses since the last check
            last = _check_losses(losses, checked, step, net, epoch)
            checked = step
        _masked_step(opt, loss, masked_params, masked_by)
        run.step += 1
        if progress is not None:  # every step (rewind captures need exact steps)
            info: dict[str, Any] = {"epoch": epoch, "lr": lr}
            if synced and not net.stacked:
                info["loss"] = last[0]
            progress(run.step, total_steps, info)
        if run.step == stop_after_step:
            run.stopped = True
            break
    if checked < step:
        _check_losses(losses, checked, step, net, epoch)
    return loss_sum, seen


def _end_epoch(run: _Run, net: Net, module: nn.Module, body: Callable[[torch.Tensor], torch.Tensor],
               vals: Sequence[DeviceImages], recipe: Recipe, opts: PackOptions, epoch: int,
               lr: float, steps: int, train_losses: list[float], seen: int, t0: float) -> None:
    """Validate every model, raise on a non-finite validation loss, append each model's
    history record and keep the state of each model that the recipe's ``select`` rule keeps."""
    g = net.groups
    train_seconds = time.perf_counter() - t0
    val_losses, val_accs = _validation(body, net, vals, recipe.val_batch_size, opts)
    seconds = time.perf_counter() - t0
    bad = [i for i, v in enumerate(val_losses) if not math.isfinite(v)]
    if bad:
        raise _diverged(net, epoch, 0, val_losses[bad[0]], bad, bad[0], "validation")
    improved = run.choice.update(epoch, val_losses)
    if improved:  # one contiguous copy per channels_last tensor, shared by the models
        state = {k: v.contiguous() for k, v in module.state_dict().items()}
    for i in range(g):
        record = {
            "epoch": epoch, "lr": lr, "steps": steps,
            "train_loss": train_losses[i], "val_loss": val_losses[i],
            "val_acc": val_accs[i], "seconds": seconds,
            "images_per_s": seen / train_seconds if train_seconds > 0 else math.inf,
        }
        run.histories[i].append(record | {"pack_size": g} if net.stacked else record)
        if i in improved:
            run.kept[i] = net.model_state(state, i)


def _results(run: _Run, net: Net, models: Sequence[nn.Module], opt: torch.optim.Optimizer
             ) -> list[FitResult]:
    """Each model loaded with its kept state (eval mode unless the run stopped mid-schedule)
    and its :class:`FitResult` (the optimiser state for a stopped single model)."""
    results = []
    for i, model in enumerate(models):
        model.load_state_dict(run.kept[i])
        if not run.stopped:
            model.eval()
        results.append(FitResult(
            best_epoch=0 if run.stopped else run.choice.kept_epoch[i], history=run.histories[i],
            state_dict=run.kept[i],
            optimizer_state=copy.deepcopy(opt.state_dict()) if run.stopped and not net.stacked
            else None))
    return results


def fit(
    model: nn.Module,
    train: DeviceImages,
    val: DeviceImages,
    recipe: Recipe,
    seed: int,
    masks: Mapping[str, torch.Tensor] | None = None,
    progress: ProgressFn | None = None,
    sync_every: int | None = None,
    stop_after_step: int | None = None,
    options: PackOptions | None = None,
    start_step: int = 0,
    optimizer_state: dict[str, Any] | None = None,
    objective: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
) -> FitResult:
    """Train ``model`` in place with ``recipe`` and keep the best-validation-loss epoch.

    This is :func:`train_net` for one model (any ``nn.Module`` taking ``(B, C, H, W)``);
    :func:`~prunescope.train.pack.fit_pack` runs the same loop for G stacked models, and a pack
    of one ends with bitwise this function's weights on the CPU.

    Args:
        model: the network (already initialised, e.g. ``build_model(..., seed=seed)``), on the
            device where ``train`` and ``val`` live.
        train: training images (shuffled each epoch; augmented if ``recipe.augment``).
        val: held-out validation images; their mean cross-entropy after each epoch chooses
            the kept weights (SPEC 4). Never pass the test set.
        recipe: optimiser and schedule (:class:`Recipe`).
        seed: seeds the data order and augmentation via :func:`data_generator` (the model's
            initialisation is seeded where it is built).
        masks: ``{param name: 0/1 tensor of the param's shape}``; masked weights are zeroed at
            the start, their gradients are multiplied by the mask before each step and the
            weights after it (one ``torch._foreach_mul_`` each), so they stay exactly 0 through
            momentum and weight decay.
        progress: called as ``progress(step, total_steps, info)`` after every optimiser step
            with ``info = {"epoch", "lr"}``, plus ``"loss"`` (that step's training loss) on
            every ``sync_every``-th step, where the loss has been read anyway; and after each
            epoch's validation with the same step and the epoch's history dict as ``info``.
        sync_every: check the training losses for NaN/inf (one host-device sync) every this
            many steps and at the end of each epoch. Default: 1 on the CPU (a bad loss is
            caught before its step is taken), 25 elsewhere (so the host runs ahead of the GPU).
        stop_after_step: stop the run right after this optimiser step (1-based, counted over
            the whole schedule; e.g. LTH's rewinding point): the losses so far are checked, and
            the model keeps the state of that step (no validation, no best-epoch choice).
        options: device switches (:class:`PackOptions`); default all off (fp32 eager).
        start_step: begin the schedule right after this optimiser step (0: from the start): the
            learning rate, the epoch count and the data stream (order and augmentation drawn
            for the steps before, then skipped) are where a run from step 0 would be, e.g. LTH
            retraining from its rewinding step to the end of the schedule. The first epoch's
            history counts only its steps from there.
        optimizer_state: the SGD state to start from (``FitResult.optimizer_state`` of a run
            stopped at ``start_step``; default: fresh momentum). Stopping at k and resuming
            from k with it ends bitwise where the uninterrupted run ends (CPU, tested).
        objective: the fine-tuning loss of one model
            (:func:`prunescope.train.objectives.build_objective` with ``stacked=False``);
            ``None``: mean cross-entropy (SPEC 4).

    Returns:
        :class:`FitResult`; the model holds the kept weights and is left in eval mode. After
        ``stop_after_step``: ``best_epoch`` 0, the history of the finished epochs, and
        ``state_dict`` the model's state after that step (the model left in train mode).

    Raises:
        TrainingDiverged: a training or validation loss is NaN or infinite.
    """
    device = _model_device(model)
    for name, images in (("train", train), ("val", val)):
        if not _same_device(images.device, device):
            raise ValueError(
                f"the {name} images are on {images.device} but the model is on {device}; "
                f"build DeviceImages with device={str(device)!r} or move the model"
            )
    if len(train) == 0 or len(val) == 0:
        raise ValueError(f"need non-empty train and val sets, got {len(train)} and {len(val)}")
    mask_t = _check_masks(model, masks) if masks else {}
    params = dict(model.named_parameters())
    profile = device_profile(device, pack_options=options or PackOptions())
    [result] = train_net(Net(model, 1, stacked=False), [model], [train], [val], recipe, [seed],
                         ([params[n] for n in mask_t], list(mask_t.values())), progress,
                         profile, default_sync_every(profile, sync_every),
                         stop_after_step, start_step, optimizer_state, objective)
    return result


def default_sync_every(profile: DeviceProfile, sync_every: int | None) -> int:
    """Steps between the loss checks: ``sync_every`` (>= 1), or the device's
    (``profile.sync_every``: 1 on the CPU, 25 elsewhere)."""
    if sync_every is None:
        return profile.sync_every
    if sync_every < 1:
        raise ValueError(f"sync_every must be >= 1, got {sync_every}")
    return sync_every


@torch.no_grad()
def predict(model: nn.Module, images: DeviceImages, batch_size: int = 1000) -> np.ndarray:
    """Predicted class per image, int64 ``(N,)``, in stored order (model in eval mode; its
    train/eval flag is restored afterwards)."""
    was_training = model.training
    model.eval()
    try:
        preds = [model(xb).argmax(1) for xb, _ in images.batches(batch_size)]
    finally:
        model.train(was_training)
    if not preds:
        return np.zeros(0, dtype=np.int64)
    return torch.cat(preds).cpu().numpy().astype(np.int64)


def evaluate(
    model: nn.Module, images: DeviceImages, num_classes: int, batch_size: int = 1000
) -> np.ndarray:
    """Confusion matrix, int64 ``(C, C)``: entry ``[i, j]`` counts images of true class ``i``
    predicted as class ``j`` (rows true, columns predicted; the diagonal is correct), by
    :func:`prunescope.metrics.confusion_from_predictions`, as the study's evaluate jobs count.

    Raises:
        ValueError: a label or a predicted class outside ``0..num_classes - 1``.
    """
    return confusion_from_predictions(images.y.cpu().numpy(), predict(model, images, batch_size),
                                      num_classes)
