"""The training loop of SPEC 4: SGD (Nesterov), step schedule, best-validation-loss checkpoint
choice, fixed pruning masks; plus prediction and confusion-matrix evaluation."""
from __future__ import annotations

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

from prunescope.data.device import DeviceImages
from prunescope.train.recipe import Recipe

#: progress callback: ``(step, total_steps, info)``; ``step`` counts optimiser steps from 1
ProgressFn = Callable[[int, int, dict[str, Any]], None]


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite. Attributes: ``epoch`` (1-based), ``step`` (1-based
    within the epoch; 0 for the validation loss), ``loss``, and ``models``: in a pack
    (:func:`~prunescope.train.pack.fit_pack`), the indices of every model whose loss diverged
    that epoch (empty for :func:`fit`)."""

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
        best_epoch: 1-based epoch whose weights were kept (lowest validation loss).
        history: one dict per epoch with ``epoch`` (1-based), ``lr``, ``steps``,
            ``train_loss`` (mean cross-entropy over the epoch's training images, nats),
            ``val_loss`` (mean cross-entropy on the validation set, nats), ``val_acc`` (0..1),
            ``seconds`` (wall time of the epoch including validation), ``images_per_s``
            (training images per second of training time).
        state_dict: the kept weights and buffers (tensors on the model's device); they are
            also loaded into the model.
    """

    best_epoch: int
    history: list[dict[str, Any]] = field(default_factory=list)
    state_dict: dict[str, torch.Tensor] = field(default_factory=dict)


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

    return norm(a) == norm(b)


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


def _check_losses(losses: torch.Tensor, start: int, stop: int, epoch: int) -> float:
    """Raise :class:`TrainingDiverged` at the first non-finite entry of ``losses[start:stop]``
    (0-based steps; reported 1-based); return the last loss."""
    values = losses[start:stop].tolist()
    for i, v in enumerate(values):
        if not math.isfinite(v):
            raise TrainingDiverged(epoch, start + i + 1, v)
    return values[-1]


@torch.no_grad()
def _validation(model: nn.Module, val: DeviceImages, batch_size: int) -> tuple[float, float]:
    """Mean cross-entropy (nats) and accuracy (0..1) on ``val``, model in eval mode."""
    model.eval()
    device = _model_device(model)
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    correct = torch.zeros((), dtype=torch.int64, device=device)
    for xb, yb in val.batches(batch_size):
        logits = model(xb)
        loss_sum += F.cross_entropy(logits.float(), yb, reduction="sum").double()
        correct += (logits.argmax(1) == yb).sum()
    n = len(val)
    return float(loss_sum) / n, int(correct) / n


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
) -> FitResult:
    """Train ``model`` in place with ``recipe`` and keep the best-validation-loss epoch.

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
            weights after it (one ``torch._foreach_mul_`` each, as ``fit_pack`` does), so they
            stay exactly 0 through momentum and weight decay.
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

    Returns:
        :class:`FitResult`; the model holds the kept weights and is left in eval mode. After
        ``stop_after_step``: ``best_epoch`` 0, the history of the finished epochs, and
        ``state_dict`` the model's state after that step (the model left as it is).

    Raises:
        TrainingDiverged: a training or validation loss is NaN or infinite.
    """
    device = _model_device(model)
    if sync_every is None:
        sync_every = 1 if device.type == "cpu" else 25
    if sync_every < 1:
        raise ValueError(f"sync_every must be >= 1, got {sync_every}")
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
    masked_params = [params[n] for n in mask_t]
    masked_by = list(mask_t.values())
    _mask_params(masked_params, masked_by)

    opt = torch.optim.SGD(
        model.parameters(),
        lr=recipe.schedule[0][1],
        momentum=recipe.momentum,
        nesterov=recipe.nesterov,
        weight_decay=recipe.weight_decay,
    )
    gen = data_generator(seed)
    steps_per_epoch = train.num_batches(recipe.batch_size, recipe.max_steps_per_epoch)
    total_steps = steps_per_epoch * recipe.epochs
    if stop_after_step is not None and not 1 <= stop_after_step <= total_steps:
        raise ValueError(f"stop_after_step={stop_after_step} is outside the run's 1..{total_steps} "
                         "optimiser steps; lower it or lengthen the recipe")
    history: list[dict[str, Any]] = []
    best_loss = math.inf
    best_epoch = 0
    best_state: dict[str, torch.Tensor] = {}
    step_global = 0
    for epoch in range(1, recipe.epochs + 1):
        lr = _set_lr(opt, recipe, epoch)
        model.train()
        t0 = time.perf_counter()
        losses = torch.zeros(steps_per_epoch, dtype=torch.float32, device=device)
        loss_sum = torch.zeros((), dtype=torch.float64, device=device)
        seen = checked = steps = 0
        batches = train.batches(
            recipe.batch_size, shuffle=True, augment=recipe.augment, generator=gen,
            max_steps=recipe.max_steps_per_epoch,
        )
        for steps, (xb, yb) in enumerate(batches, start=1):
            loss = F.cross_entropy(model(xb), yb)
            losses[steps - 1] = loss.detach()
            loss_sum += loss.detach().double() * len(yb)
            seen += len(yb)
            synced = steps % sync_every == 0
            if synced:  # one host sync for the losses since the last check
                last = _check_losses(losses, checked, steps, epoch)
                checked = steps
            _masked_step(opt, loss, masked_params, masked_by)
            step_global += 1
            if progress is not None:  # every step (rewind captures need exact steps)
                info = {"epoch": epoch, "lr": lr}
                progress(step_global, total_steps, {**info, "loss": last} if synced else info)
            if step_global == stop_after_step:
                if checked < steps:
                    _check_losses(losses, checked, steps, epoch)
                state = {k: v.detach().clone() for k, v in model.state_dict().items()}
                return FitResult(best_epoch=0, history=history, state_dict=state)
        if checked < steps:
            _check_losses(losses, checked, steps, epoch)
        train_seconds = time.perf_counter() - t0
        val_loss, val_acc = _validation(model, val, recipe.val_batch_size)
        if not math.isfinite(val_loss):
            raise TrainingDiverged(epoch, 0, val_loss, where="validation")
        record = {
            "epoch": epoch,
            "lr": lr,
            "steps": steps,
            "train_loss": float(loss_sum) / seen,
            "val_loss": val_loss,
            "val_acc": val_acc,
            "seconds": time.perf_counter() - t0,
            "images_per_s": seen / train_seconds if train_seconds > 0 else math.inf,
        }
        history.append(record)
        if progress is not None:
            progress(step_global, total_steps, dict(record))
        if val_loss < best_loss:
            best_loss, best_epoch = val_loss, epoch
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    model.load_state_dict(best_state)
    model.eval()
    return FitResult(best_epoch=best_epoch, history=history, state_dict=best_state)


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
    predicted as class ``j`` (rows true, columns predicted; the diagonal is correct)."""
    pred = torch.as_tensor(predict(model, images, batch_size))
    true = images.y.cpu()
    if len(true) and (int(true.max()) >= num_classes or int(true.min()) < 0):
        raise ValueError(
            f"labels run from {int(true.min())} to {int(true.max())} but num_classes={num_classes}"
        )
    if len(pred) and int(pred.max()) >= num_classes:
        raise ValueError(
            f"the model predicts class {int(pred.max())} but num_classes={num_classes}; pass the "
            "model's number of outputs"
        )
    counts = torch.bincount(true * num_classes + pred, minlength=num_classes * num_classes)
    return counts.reshape(num_classes, num_classes).numpy().astype(np.int64)
