"""Published per-layer settings of structured pruning on CIFAR ResNet-56 (the data behind the
``config`` argument of :func:`prunescope.prune.structured.structured_prune`).

A *setting* gives each channel group it narrows a removal rate, as its source publishes it; the
published width of a group of ``n`` channels is ``int(n * (1 - rate))`` (both sources truncate).
Groups a setting does not name keep every channel. A *config* is the list of its source's
settings; how a requested ratio picks and scales one is documented in
:func:`~prunescope.prune.structured.config_widths` and docs/iterative_structured.md.

Group names are those of :func:`~prunescope.prune.channel_groups.channel_groups` with
``streams=True``: ``"layer{s}.{b}.conv1"`` for the inner channels of block b of stage s, and
``"layer{s}"`` for the residual stream of stage s (for ``"layer1"`` the stem ``conv1``/``bn1``
too).

* ``"chip-resnet56"``: CHIP (Sui et al., NeurIPS 2021), the two ResNet-56 "Sparsity Setting"
  strings of the official code's README (github.com/Eclipsess/CHIP_NeurIPS2021), read as its
  ``models/resnet_cifar10.py`` (``adapt_channel``) reads them: entry 0 the stem, entries 1 and
  2 the residual streams of stages 1 and 2 (stage 3's stream is never narrowed), entries 3-29
  the inner channels of the 27 blocks in order.
* ``"li-resnet56"``: L1-norm filter pruning (Li et al., ICLR 2017), ResNet-56-pruned-A and -B:
  per-stage rates of the first convolution of each block, skipping the sensitive layers the
  paper lists (conv layer numbers counted from the stem = 1, so block b's first convolution is
  layer ``2b + 2``); the same numbers as the res56prune.py of Liu et al.'s reproduction
  (github.com/Eric-mingjie/rethinking-network-pruning, cifar/l1-norm-pruning). The second
  convolutions and the residual streams keep their widths.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["PublishedSetting", "StructuredConfig", "STRUCTURED_CONFIGS", "chip_sparsity",
           "structured_config"]

_STAGES = 3
_BLOCKS = 9  # ResNet-56: 9 blocks per stage


@dataclass(frozen=True)
class PublishedSetting:
    """One published pruned network.

    Attributes:
        name: short name, e.g. ``"chip-0.24M"``, ``"pruned-B"``.
        source: where the numbers are published.
        reported_ratio: the compression ratio its source reports, ``1 / (1 - removed fraction)``
            of the parameters (a label: what the source counted, not what prunescope counts).
        rates: ``(group name, fraction of its channels removed)`` for every group it narrows
            (rate 0 = kept whole at this setting, but scaled with the others).
    """

    name: str
    source: str
    reported_ratio: float
    rates: tuple[tuple[str, float], ...]


@dataclass(frozen=True)
class StructuredConfig:
    """A source's published settings for one architecture (``arch``, e.g. ``"resnet56"``)."""

    name: str
    arch: str
    settings: tuple[PublishedSetting, ...]

    def groups(self) -> tuple[str, ...]:
        """Every group some setting narrows, in first-seen order."""
        seen: dict[str, None] = {}
        for s in self.settings:
            seen.update((g, None) for g, _ in s.rates)
        return tuple(seen)


def chip_sparsity(text: str) -> list[float]:
    """CHIP's ``--sparsity`` string, e.g. ``"[0.]+[0.4]*2+[0.5]*9"``, as a list of rates
    (``[0.0, 0.4, 0.4, 0.5, ...]``), parsed as the official ``prune_finetune_cifar.py`` does."""
    rates: list[float] = []
    for term in text.split("+"):
        m = re.fullmatch(r"\s*\[(\d+\.\d*)\](?:\*(\d+))?\s*", term)
        if m is None:
            raise ValueError(f"bad CHIP sparsity term {term!r} in {text!r}; expected [rate] or "
                             "[rate]*count")
        rates += [float(m.group(1))] * int(m.group(2) or 1)
    return rates


def _inner(stage: int, block: int) -> str:
    return f"layer{stage}.{block}.conv1"


def _chip_resnet56(name: str, sparsity: str, reported_removed: float) -> PublishedSetting:
    r = chip_sparsity(sparsity)
    if len(r) != 3 + _STAGES * _BLOCKS or r[0] != 0.0:
        raise ValueError(f"CHIP ResNet-56 sparsity {sparsity!r}: expected 30 rates with the "
                         "stem's (entry 0) 0, as both published settings have")
    # the stem shares stage 1's stream (its width follows "layer1"); stage 3's stream rate is 0
    rates = [("layer1", r[1]), ("layer2", r[2]), ("layer3", 0.0)]
    rates += [(_inner(s + 1, b), r[3 + _BLOCKS * s + b])
              for s in range(_STAGES) for b in range(_BLOCKS)]
    return PublishedSetting(
        name, f"Sui et al. 2021 (CHIP), official README, ResNet-56 sparsity {sparsity}",
        1.0 / (1.0 - reported_removed), tuple(rates))


def _li_resnet56(name: str, stage_rates: tuple[float, float, float], skip: tuple[int, ...],
                 reported_removed: float) -> PublishedSetting:
    rates = tuple((_inner(s + 1, b), stage_rates[s])
                  for s in range(_STAGES) for b in range(_BLOCKS)
                  if 2 * (_BLOCKS * s + b) + 2 not in skip)
    return PublishedSetting(
        name, f"Li et al. 2017, ResNet-56-{name.split('-')[1]}: rates {stage_rates} per stage, "
        f"layers {skip} skipped", 1.0 / (1.0 - reported_removed), rates)


STRUCTURED_CONFIGS: dict[str, StructuredConfig] = {
    "chip-resnet56": StructuredConfig("chip-resnet56", "resnet56", (
        # README: 0.48M params (42.8% removed), 0.24M (70.0% removed; 0.24M / 0.85M is 71.8%)
        _chip_resnet56("chip-0.48M", "[0.]+[0.15]*2+[0.4]*27", 0.428),
        _chip_resnet56("chip-0.24M", "[0.]+[0.4]*2+[0.5]*9+[0.6]*9+[0.7]*9", 0.700),
    )),
    "li-resnet56": StructuredConfig("li-resnet56", "resnet56", (
        # Table 1: 7.7e5 params, 9.4% pruned; 7.3e5, 13.7% pruned
        _li_resnet56("pruned-A", (0.1, 0.1, 0.1), (16, 20, 38, 54), 0.094),
        _li_resnet56("pruned-B", (0.6, 0.3, 0.1), (16, 18, 20, 34, 38, 54), 0.137),
    )),
}
"""Named per-layer configs beside ``"uniform"`` (today's default: every block's inner channels
narrowed by one fraction)."""


def structured_config(name: str) -> StructuredConfig:
    """The config called ``name`` (one of :data:`STRUCTURED_CONFIGS`).

    Raises:
        ValueError: an unknown name (the message lists the known ones).
    """
    try:
        return STRUCTURED_CONFIGS[name]
    except KeyError:
        raise ValueError(f"unknown structured config {name!r}; choose 'uniform' or one of "
                         f"{', '.join(STRUCTURED_CONFIGS)}") from None
