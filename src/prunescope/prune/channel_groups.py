"""Channel groups of the CIFAR ResNets and LeNet-5: the channels structured pruning can remove
together (SPEC 3, last bullet).

**Channel groups.** A group is a set of channels that can be removed together without changing
any other shape: the output channels of a *producer* convolution, the matching entries of the
BatchNorm that follows it (if any) and the matching input channels of its *consumers*.

* CIFAR ResNets: one group per basic block, the block's inner channels (``conv1``/``bn1`` outputs,
  ``conv2`` inputs), named ``"layer2.3.conv1"``; with ``streams=True`` also one group per stage's
  residual stream, named ``"layer2"`` (the stem for stage 1, every block's ``conv2``/``bn2``,
  the ``conv1`` inputs reading it, the option-A shortcut into the next stage). The default
  config ``"uniform"`` narrows the inner groups by one fraction; the named configs
  (:data:`STRUCTURED_CONFIGS`: CHIP's and Li et al.'s published ResNet-56 settings) set per-group
  widths, CHIP's including the streams of stages 1-2 (:func:`config_widths`).
* LeNet-5: ``conv1`` (6 channels; consumer ``conv2``) and ``conv2`` (16 channels; consumer
  ``fc1``, 25 flattened inputs per channel on 28x28 images). The fully connected layers keep
  their widths.
"""
from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from prunescope.models.lenet import LeNet5
from prunescope.models.resnet_cifar import CifarResNet

__all__ = ["ChannelGroup", "channel_groups", "group_rows"]


@dataclass(frozen=True)
class ChannelGroup:
    """Channels removable together.

    Attributes:
        name: the group's key everywhere: the producer convolution's module name for a block's
            inner channels (``"layer2.3.conv1"``) and LeNet-5's convolutions, the stage's module
            name for a residual stream (``"layer2"``).
        producers: ``(conv, bn or None)`` module names of every ``nn.Conv2d`` whose output
            channels these are, with the ``nn.BatchNorm2d`` normalising them (one pair for an
            inner group; the stem and every block's ``conv2``/``bn2`` for a stream).
        consumers: ``(module name, span)`` of each layer reading them: ``span`` = input
            columns per channel (1 for a convolution, H*W for a Linear after flatten).
        channels: number of channels (of the model the groups were read from).
        maps: modules whose outputs, after a ReLU, are the group's feature maps (CHIP): the BN
            (ResNet inner), the convolution (LeNet-5), the stem's ``bn1`` and every block of
            the stage (a stream: block outputs are already rectified).
        shortcut: for the stream of stages 2 and 3, ``(block, source stream, offset)``: the
            option-A shortcut of ``block`` carries channel c of ``source`` into channel
            ``c + offset``; ``None`` otherwise.
    """

    name: str
    producers: tuple[tuple[str, str | None], ...]
    consumers: tuple[tuple[str, int], ...]
    channels: int
    maps: tuple[str, ...]
    shortcut: tuple[str, str, int] | None = None


def _stream_groups(model: CifarResNet) -> dict[str, ChannelGroup]:
    """``{stage: its residual-stream group}`` (see :func:`channel_groups`)."""
    stages = ("layer1", "layer2", "layer3")
    out = {}
    for si, stage in enumerate(stages):
        blocks = getattr(model, stage)
        producers = [("conv1", "bn1")] if si == 0 else []
        producers += [(f"{stage}.{b}.conv2", f"{stage}.{b}.bn2") for b in range(len(blocks))]
        # the stream is the input of every block of its stage but the first of stages 2 and 3
        consumers = [(f"{stage}.{b}.conv1", 1) for b in range(0 if si == 0 else 1, len(blocks))]
        consumers.append((f"{stages[si + 1]}.0.conv1", 1) if si < 2 else ("classifier", 1))
        maps = (("bn1",) if si == 0 else ()) + tuple(f"{stage}.{b}" for b in range(len(blocks)))
        shortcut = None if si == 0 else (f"{stage}.0", stages[si - 1],
                                         blocks[0].pad_channels // 2)
        out[stage] = ChannelGroup(stage, tuple(producers), tuple(consumers),
                                  blocks[0].conv2.out_channels, maps, shortcut)
    return out


def channel_groups(model: nn.Module, streams: bool = False) -> list[ChannelGroup]:
    """The removable channel groups of a CIFAR ResNet or LeNet-5, in forward order.

    Args:
        model: the network (unpruned or already narrowed: widths are read from the modules).
        streams: also the residual streams of a CIFAR ResNet (``"layer1"``: the stem
            ``conv1``/``bn1`` and every ``layer1`` block's ``conv2``/``bn2``, read by every
            ``layer1`` block's ``conv1`` and ``layer2.0.conv1``; likewise ``"layer2"``, and
            ``"layer3"`` read by the classifier), each before its stage's inner groups; the
            default (off) is the inner channels only, as the ``"uniform"`` config prunes them.
            LeNet-5 has no stream.

    Raises:
        TypeError: ``model`` is neither :class:`~prunescope.models.CifarResNet` nor
            :class:`~prunescope.models.LeNet5`.
    """
    if isinstance(model, CifarResNet):
        stream = _stream_groups(model) if streams else {}
        groups = []
        for stage in ("layer1", "layer2", "layer3"):
            if stage in stream:
                groups.append(stream[stage])
            for i, block in enumerate(getattr(model, stage)):
                p = f"{stage}.{i}"
                groups.append(ChannelGroup(f"{p}.conv1", ((f"{p}.conv1", f"{p}.bn1"),),
                                           ((f"{p}.conv2", 1),), block.conv1.out_channels,
                                           (f"{p}.bn1",)))
        return groups
    if isinstance(model, LeNet5):
        c2 = model.conv2.out_channels
        span = model.fc1.in_features // c2
        return [ChannelGroup("conv1", (("conv1", None),), (("conv2", 1),),
                             model.conv1.out_channels, ("conv1",)),
                ChannelGroup("conv2", (("conv2", None),), (("fc1", span),), c2, ("conv2",))]
    raise TypeError(
        f"structured pruning knows the channel structure of CifarResNet and LeNet5 only, got "
        f"{type(model).__name__}; use unstructured pruning (prunescope.prune.prune_model) for it"
    )


def group_rows(g: ChannelGroup) -> list[str]:
    """Modules whose output entries are the group's channels: producers and their BNs."""
    return [m for pair in g.producers for m in pair if m is not None]
