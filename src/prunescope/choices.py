"""The one set of rules for the values a user names: datasets and the architectures that fit
them, pruning methods, compression ratios, devices, test distributions, mask scopes, gradient
modes and their batch counts, prune-potential tolerances, and any choice from a fixed list.

The study spec (:mod:`prunescope.study.spec`) and the CLI commands (:mod:`prunescope.cli`) both
check with these, so what one accepts the other accepts, and both say why with the same text.
Each ``*_error(value, ...)`` returns ``None`` for an allowed value, else the *allowed* part of
the message ("a finite compression ratio > 1 ..."), which the spec puts after ``allowed:`` in a
:class:`~prunescope.study.spec.SpecError` and the CLI after the option's name.

No torch at import (the command line's ``--help`` lists these choices): the ratio arithmetic
and the distribution grammar are the torch-free :mod:`prunescope.catalog`'s.
"""
from __future__ import annotations

import math
import re
from typing import Any

from prunescope.catalog import architectures, methods, objectives
from prunescope.catalog.distributions import CORRUPTIONS, Distribution
from prunescope.catalog.ratios import UnreachableRatioError, keep_count
from prunescope.data.registry import info as dataset_info, names as dataset_names

__all__ = [
    "CI_METHODS", "CORRECTIONS", "CORRUPTIONS", "DATASETS", "DEFAULT_DEVICE", "DEVICES",
    "FAMILIES", "GRADIENT_MODES", "MAX_CUDA_INDEX", "RATIO_ALLOWED", "SCOPES",
    "arch_error", "archs_for", "canonical_distribution", "choice_error", "delta_error",
    "device_error", "distribution_error", "grad_batches_error", "gradient_batches",
    "method_error", "one_of", "ratio_error", "reach_error", "resolve_device",
]

#: datasets of the data registry (SPEC 4)
DATASETS: tuple[str, ...] = dataset_names()
#: device names besides ``cuda:N``; ``auto`` = CUDA when available, else the CPU
DEVICES = ("auto", "cpu", "cuda")
#: the device of studies and of every CLI command when none is named
DEFAULT_DEVICE = "auto"
#: the largest CUDA device index torch accepts (``cuda:N``)
MAX_CUDA_INDEX = 127
#: the mask scopes (SPEC 3): one threshold over every prunable weight, or one per layer
SCOPES: tuple[str, ...] = ("global", "layer")
#: how GP and UP's data-loss gradient is computed (:func:`prunescope.prune.data_gradients`)
GRADIENT_MODES: tuple[str, ...] = ("full", "batches", "shrinkbench")
#: 99 % intervals of E(alpha) per cell (:func:`prunescope.stats.mean_ci`)
CI_METHODS: tuple[str, ...] = ("t", "bootstrap")
#: multiple-testing corrections of the p-value tables (:func:`prunescope.stats.correct`)
CORRECTIONS: tuple[str, ...] = ("bonferroni", "holm")
#: what one correction family of the report's p-values spans (:mod:`prunescope.stats.families`)
FAMILIES: tuple[str, ...] = ("column", "table")
#: what a compression ratio must be (SPEC 3)
RATIO_ALLOWED = "a finite compression ratio > 1 (all params / nonzero params, SPEC 3)"


def one_of(allowed: tuple[str, ...] | list[str]) -> str:
    """The allowed text of a choice: ``one of a, b, c``."""
    return f"one of {', '.join(allowed)}"


def choice_error(value: Any, allowed: tuple[str, ...] | list[str]) -> str | None:
    """``None`` when ``value`` is one of ``allowed``, else :func:`one_of` them (scopes,
    gradient modes, executors, export formats, corrections, CI methods, families)."""
    return None if value in allowed else one_of(allowed)


def method_error(name: Any, kind: methods.Kind | None = None) -> str | None:
    """``None`` for a method of the catalog (of ``kind`` when given), else the allowed ones."""
    allowed = methods.names(kind)
    return choice_error(name, allowed)


def objective_error(name: Any) -> str | None:
    """``None`` for a fine-tuning objective of the catalog, else the allowed ones."""
    return choice_error(name, objectives.names())


def grad_batches_error(mode: str, batches: Any) -> str | None:
    """``None`` when ``batches`` goes with gradient ``mode``: an integer >= 1 with
    ``batches``, ``None`` with any other mode; else what is allowed."""
    if mode == "batches":
        ok = isinstance(batches, int) and not isinstance(batches, bool) and batches >= 1
        return None if ok else "an integer >= 1 with gradient mode 'batches'"
    return None if batches is None else "no batch count: it goes with gradient mode 'batches'"


def gradient_batches(mode: str, n_batches: int | None = None) -> int | None:
    """Batches a gradient pass of ``mode`` (one of :data:`GRADIENT_MODES`) visits: ``n_batches``
    for ``"batches"``, 1 for ``"shrinkbench"``, ``None`` for ``"full"`` (every batch of the
    set). The study planner counts a gradient job's work with it (no torch)."""
    if mode == "full":
        return None
    return n_batches if mode == "batches" else 1


def delta_error(delta: Any) -> str | None:
    """``None`` for a prune-potential tolerance in percentage points (0, or 0.1 to 100; 0.5 =
    half a point: :func:`prunescope.metrics.check_delta`), else why not."""
    from prunescope.metrics.potential import check_delta  # pandas: only when a delta is given

    try:
        check_delta(delta)
    except ValueError as e:
        return str(e)
    return None


def archs_for(dataset: str) -> tuple[str, ...]:
    """The architectures made for ``dataset``'s image shape: the LeNets on MNIST-like data
    (28x28, one channel), the ResNets on CIFAR (SPEC 4)."""
    return architectures.for_shape(dataset_info(dataset).shape_hwc)


def arch_error(dataset: str, arch: str) -> str | None:
    """``None`` when ``arch`` (a name of :mod:`prunescope.catalog.architectures`) fits ``dataset``, else what does."""
    fits = archs_for(dataset)
    return None if arch in fits else f"an architecture that fits {dataset}: {', '.join(fits)}"


def ratio_error(ratio: Any) -> str | None:
    """``None`` for a finite number > 1, else :data:`RATIO_ALLOWED`."""
    number = isinstance(ratio, (int, float)) and not isinstance(ratio, bool)
    return None if number and math.isfinite(ratio) and ratio > 1 else RATIO_ALLOWED


def reach_error(n_total: int, n_prunable: int, ratio: float, what: str) -> str | None:
    """``None`` when a mask over ``n_prunable`` of ``n_total`` parameters reaches ``ratio``,
    else the ratios ``what`` (e.g. ``"lenet5 on mnist"``) can reach."""
    try:
        keep_count(n_total, n_prunable, ratio)
    except UnreachableRatioError as e:
        return f"ratios {what} can reach: {e}"
    return None


def device_error(device: Any) -> str | None:
    """``None`` for ``auto``, ``cpu``, ``cuda`` or ``cuda:N`` (N = 0..127, no leading zero)."""
    index = re.fullmatch(r"cuda:(0|[1-9][0-9]{0,2})", device) if isinstance(device, str) else None
    if device in DEVICES or (index and int(index[1]) <= MAX_CUDA_INDEX):
        return None
    return f"'auto', 'cpu', 'cuda' or 'cuda:N' with N = 0..{MAX_CUDA_INDEX}"


def resolve_device(device: str) -> str:
    """The torch device of a valid device name: ``auto`` is ``cuda`` when CUDA is available,
    else ``cpu``; any other name is itself."""
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def distribution_error(name: Any) -> str | None:
    """``None`` for a test distribution :class:`Distribution` parses, else what is allowed."""
    try:
        Distribution.parse(name)
    except (TypeError, ValueError):
        return ("'nominal', '<corruption>-<severity 1..5>' with corruption one of "
                f"{', '.join(CORRUPTIONS)}, or 'noise-<std>' (std on the 0..1 scale)")
    return None


def canonical_distribution(name: str) -> str:
    """The canonical name of a valid distribution (``noise-0.10`` -> ``noise-0.1``)."""
    return Distribution.parse(name).name
