"""Channel pruning of any architecture through Torch-Pruning (issue 27 item 3).

prunescope's own structured methods (:mod:`prunescope.prune.structured`: L1-filter, CHIP) know
the CIFAR ResNets' block layout. :func:`prune_channels` removes output channels of any network
Torch-Pruning can trace (``torch_pruning.DependencyGraph``: BatchNorm, the next layers' inputs,
residual additions and depthwise convolutions follow each removed channel), scored by

* ``"l1"``: the L1 norm of each channel group's weights (``MagnitudeImportance(p=1)``, Li et
  al. 2017's criterion for any layer type), or
* ``"taylor"``: first-order Taylor importance ``|w * dL/dw|`` summed over a group
  (``TaylorImportance``, Molchanov et al. 2019), from the mean cross-entropy gradient of the
  given training batches,

to a target compression ratio ``t = parameters before / parameters after`` (SPEC 3's ratio; the
removed channels' parameters are gone, not zeroed). Torch-Pruning takes a channel fraction, not
a parameter ratio, so the fraction is solved for by bisection: the smallest fraction (to
:data:`FRACTION_TOL`) whose pruned model reaches the target. Channel counts are integers, so the
achieved ratio is at or just above the requested one and is recorded, with the CPU latency and
parameter count before and after. The final classifier (the last ``nn.Linear``, else the last
convolution) keeps its outputs.
"""
from __future__ import annotations

import copy
import time
from collections.abc import Iterable
from dataclasses import dataclass

import torch
from torch import nn

from prunescope.prune.masks import UnreachableRatioError
from prunescope.prune.params import count_parameters

#: channel importances :func:`prune_channels` knows
IMPORTANCES = ("l1", "taylor")
#: the largest channel fraction tried; lower for a model whose narrowest prunable layer has
#: fewer than 20 channels (:func:`top_fraction`)
MAX_FRACTION = 0.95
#: bisection stops when the fraction interval is this narrow
FRACTION_TOL = 2.0 ** -7


@dataclass(frozen=True)
class ChannelPruning:
    """A channel-pruned model and what it reached.

    Attributes:
        model: the pruned ``nn.Module`` (a copy; narrower layers), eval mode, CPU.
        importance: ``"l1"`` or ``"taylor"``.
        requested_ratio, achieved_ratio: parameters before / parameters after, asked and reached.
        channel_fraction: the fraction of each layer's channels Torch-Pruning removed.
        params_before, params_after: scalar parameters of the model before and after.
        latency_before_ms, latency_after_ms: CPU wall time of one forward pass of a batch of
            ``latency_batch`` inputs on one thread, milliseconds, fastest of 20
            (:func:`cpu_latency_ms`).
        latency_batch: that batch size.
    """

    model: nn.Module
    importance: str
    requested_ratio: float
    achieved_ratio: float
    channel_fraction: float
    params_before: int
    params_after: int
    latency_before_ms: float
    latency_after_ms: float
    latency_batch: int


def cpu_latency_ms(model: nn.Module, inputs: torch.Tensor, repeats: int = 20,
                   threads: int = 1) -> float:
    """The fastest of ``repeats`` timed passes of ``model(inputs)`` on the CPU with ``threads``
    torch threads (restored after), in eval mode without gradients, in milliseconds, after two
    warm-up passes. One thread and the fastest pass are the figure least disturbed by other
    processes: with two threads on a loaded 2-core machine a pass now and then waited 100 times
    longer for its second thread."""
    net = model.eval()
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with torch.no_grad():
            for _ in range(2):
                net(inputs)
            times = []
            for _ in range(repeats):
                t0 = time.perf_counter()
                net(inputs)
                times.append(time.perf_counter() - t0)
    finally:
        torch.set_num_threads(before)
    return 1e3 * min(times)


def _head(model: nn.Module) -> nn.Module:
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    if not linears and not convs:
        raise ValueError("the model has no nn.Linear or nn.Conv2d layer to prune channels of")
    return (linears or convs)[-1]


def top_fraction(model: nn.Module) -> float:
    """The largest channel fraction that keeps a channel in every layer: Torch-Pruning keeps
    ``int(n * (1 - f))`` of a layer's ``n`` channels and leaves a layer it would empty
    unpruned, so beyond ``1 - 1 / n_min`` fewer parameters go, not more; at most
    :data:`MAX_FRACTION`."""
    head = _head(model)
    widths = [m.out_channels if isinstance(m, nn.Conv2d) else m.out_features
              for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear)) and m is not head]
    if not widths:
        return 0.0
    return min(MAX_FRACTION, 1.0 - (1.0 + 1e-6) / min(widths))


def _gradients(model: nn.Module, batches: Iterable[tuple[torch.Tensor, torch.Tensor]]
               ) -> dict[str, torch.Tensor]:
    """Gradient of the mean cross-entropy over ``batches`` (float NCHW, int64 labels)."""
    net = copy.deepcopy(model).train()
    net.zero_grad()
    n = 0
    for xb, yb in batches:
        nn.functional.cross_entropy(net(xb), yb, reduction="sum").backward()
        n += len(yb)
    if n == 0:
        raise ValueError("taylor importance needs at least one training batch")
    return {k: p.grad.detach() / n for k, p in net.named_parameters() if p.grad is not None}


def _pruned(model: nn.Module, example: torch.Tensor, importance: str, fraction: float,
            grads: dict[str, torch.Tensor] | None) -> nn.Module:
    import torch_pruning as tp

    net = copy.deepcopy(model).eval()
    if fraction <= 0:
        return net
    if grads is not None:
        for k, p in net.named_parameters():
            p.grad = grads[k].clone() if k in grads else None
    imp = (tp.importance.MagnitudeImportance(p=1) if importance == "l1"
           else tp.importance.TaylorImportance())
    tp.pruner.MetaPruner(net, example, importance=imp, pruning_ratio=fraction,
                         ignored_layers=[dict(zip(map(id, model.modules()), net.modules()))[
                             id(_head(model))]]).step()
    net.zero_grad(set_to_none=True)
    return net


def prune_channels(model: nn.Module, example: torch.Tensor, ratio: float,
                   importance: str = "l1", *,
                   batches: Iterable[tuple[torch.Tensor, torch.Tensor]] | None = None,
                   latency_batch: int = 64) -> ChannelPruning:
    """Remove channels of a copy of ``model`` until ``params_before / params_after >= ratio``.

    Args:
        model: any ``nn.Module`` Torch-Pruning can trace (not modified).
        example: one input batch ``(1, C, H, W)`` (float, as the model takes it) to trace with.
        ratio: target compression ratio, > 1.
        importance: ``"l1"`` or ``"taylor"``.
        batches: ``(x float NCHW, y int64)`` training batches for Taylor's gradient (required
            for ``"taylor"``; never test images).
        latency_batch: batch size of the latency measurement.

    Raises:
        ValueError: unknown importance, a ratio <= 1, Taylor without batches, a model
            Torch-Pruning leaves broken (it fails to run or its output shape changes).
        UnreachableRatioError: even :func:`top_fraction` of the channels does not reach
            ``ratio`` (names the largest reachable ratio).
    """
    if importance not in IMPORTANCES:
        raise ValueError(f"importance {importance!r}: choose one of {', '.join(IMPORTANCES)}")
    if not ratio > 1:
        raise ValueError(f"ratio {ratio!r} must be > 1 (parameters before / after)")
    grads = None
    if importance == "taylor":
        if batches is None:
            raise ValueError("taylor importance needs training batches (batches=)")
        grads = _gradients(model, batches)
    model = copy.deepcopy(model).cpu().eval()
    before = count_parameters(model)
    reached = lambda f: before / count_parameters(_pruned(model, example, importance, f, grads))  # noqa: E731
    hi = top_fraction(model)
    top = _pruned(model, example, importance, hi, grads)
    try:
        with torch.no_grad():
            out = top(example)
    except Exception as e:  # noqa: BLE001 -- a graph Torch-Pruning did not follow
        raise ValueError(
            f"Torch-Pruning cannot remove channels of this {type(model).__name__} consistently: "
            f"the pruned model fails ({type(e).__name__}: {(str(e).splitlines() or [''])[0]}); "
            "an operation it does not trace (e.g. a zero-padding shortcut) couples channels "
            "it left apart") from e
    with torch.no_grad():
        if out.shape != model(example).shape:
            raise ValueError(f"Torch-Pruning changed the outputs of this {type(model).__name__} "
                             f"from {tuple(model(example).shape)} to {tuple(out.shape)}")
    if before / count_parameters(top) < ratio:
        raise UnreachableRatioError(
            f"ratio {ratio:g} cannot be reached by removing channels: removing "
            f"{hi:.0%} of every layer's channels (the most that keeps one in each) reaches "
            f"{before / count_parameters(top):.3g}")
    lo = 0.0
    while hi - lo > FRACTION_TOL:
        mid = (lo + hi) / 2
        lo, hi = (lo, mid) if reached(mid) >= ratio else (mid, hi)
    pruned = _pruned(model, example, importance, hi, grads)
    after = count_parameters(pruned)
    batch = example.expand(latency_batch, *example.shape[1:]).contiguous()
    return ChannelPruning(pruned, importance, float(ratio), before / after, hi, before, after,
                          cpu_latency_ms(model, batch), cpu_latency_ms(pruned, batch),
                          latency_batch)


__all__ = ["FRACTION_TOL", "IMPORTANCES", "MAX_FRACTION", "ChannelPruning", "cpu_latency_ms",
           "prune_channels", "top_fraction"]
