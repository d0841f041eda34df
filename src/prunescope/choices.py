"""The one set of rules for the values a user names: datasets and the architectures that fit
them, compression ratios, devices, test distributions, mask scopes and gradient modes.

The study spec (:mod:`prunescope.study.spec`) and the CLI commands (:mod:`prunescope.cli`) both
check with these, so what one accepts the other accepts, and both say why with the same text.
Each ``*_error(value, ...)`` returns ``None`` for an allowed value, else the *allowed* part of
the message ("a finite compression ratio > 1 ..."), which the spec puts after ``allowed:`` in a
:class:`~prunescope.study.spec.SpecError` and the CLI after the option's name.

No torch at import (the command line's ``--help`` lists these choices): the checks that need
the ratio arithmetic or the distribution grammar import them when called.
"""
from __future__ import annotations

import math
import re
from typing import Any

from prunescope.data.registry import names as dataset_names
from prunescope.archs import ARCHS, LENET_ARCHS

__all__ = [
    "ARCHS", "CI_METHODS", "CORRECTIONS", "DATASETS", "DEFAULT_DEVICE", "DEVICES", "FAMILIES",
    "GRADIENT_MODES", "MAX_CUDA_INDEX", "RATIO_ALLOWED", "SCOPES",
    "arch_error", "archs_for", "canonical_distribution", "device_error", "distribution_error",
    "gradient_batches",
    "one_of", "ratio_error", "reach_error", "resolve_device",
]

#: datasets of the data registry (SPEC 4)
DATASETS: tuple[str, ...] = dataset_names()
#: device names besides ``cuda:N``; ``auto`` = CUDA when available, else the CPU
DEVICES = ("auto", "cpu", "cuda")
#: the device of studies and of every CLI command when none is named
DEFAULT_DEVICE = "auto"
#: the largest CUDA device index torch accepts (``cuda:N``)
MAX_CUDA_INDEX = 127
#: mask scopes of one-shot pruning (:mod:`prunescope.prune.masks`, SPEC 3 "Layer-wise scope")
SCOPES: tuple[str, ...] = ("global", "layer")
#: how GP and UP compute their data gradient (:mod:`prunescope.prune.gradients`)
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


def archs_for(dataset: str) -> tuple[str, ...]:
    """The architectures that fit ``dataset``: the LeNets on MNIST-like data (28x28, one
    channel), the ResNets on CIFAR (SPEC 4)."""
    lenet = "mnist" in dataset
    return tuple(a for a in ARCHS if (a in LENET_ARCHS) == lenet)


def arch_error(dataset: str, arch: str) -> str | None:
    """``None`` when ``arch`` (a name of :data:`ARCHS`) fits ``dataset``, else what does."""
    fits = archs_for(dataset)
    return None if arch in fits else f"an architecture that fits {dataset}: {', '.join(fits)}"


def gradient_batches(mode: str, n_batches: int | None = None) -> int | None:
    """Batches a gradient pass of ``mode`` (one of :data:`GRADIENT_MODES`) visits: ``n_batches``
    for ``"batches"``, 1 for ``"shrinkbench"``, ``None`` for ``"full"`` (every batch of the
    set). The study planner counts a gradient job's work with it (no torch)."""
    if mode == "full":
        return None
    return n_batches if mode == "batches" else 1


def ratio_error(ratio: Any) -> str | None:
    """``None`` for a finite number > 1, else :data:`RATIO_ALLOWED`."""
    number = isinstance(ratio, (int, float)) and not isinstance(ratio, bool)
    return None if number and math.isfinite(ratio) and ratio > 1 else RATIO_ALLOWED


def reach_error(n_total: int, n_prunable: int, ratio: float, what: str) -> str | None:
    """``None`` when a mask over ``n_prunable`` of ``n_total`` parameters reaches ``ratio``,
    else the ratios ``what`` (e.g. ``"lenet5 on mnist"``) can reach."""
    from prunescope.prune.masks import UnreachableRatioError, keep_count

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
    from prunescope.data.corruptions import CORRUPTIONS, Distribution

    try:
        Distribution.parse(name)
    except (TypeError, ValueError):
        return ("'nominal', '<corruption>-<severity 1..5>' with corruption one of "
                f"{', '.join(CORRUPTIONS)}, or 'noise-<std>' (std on the 0..1 scale)")
    return None


def canonical_distribution(name: str) -> str:
    """The canonical name of a valid distribution (``noise-0.10`` -> ``noise-0.1``)."""
    from prunescope.data.corruptions import Distribution

    return Distribution.parse(name).name
