"""CIFAR ResNets of He et al. 2016 ("Deep Residual Learning", section 4.2), depth 6n+2.

Structure (input ``(N, C_in, 32, 32)``):

* ``conv1`` 3x3, 16 channels, stride 1, no bias; ``bn1``; ReLU.
* ``layer1``, ``layer2``, ``layer3``: ``nn.Sequential`` of n :class:`BasicBlock` each, widths
  16, 32, 64; the first block of ``layer2`` and ``layer3`` has stride 2 (32 -> 16 -> 8 pixels).
* global average pool, ``classifier`` = Linear(64, C).

Shortcuts are "option A": parameter-free identity; where the shape changes, the input is
subsampled with stride 2 (``x[:, :, ::2, ::2]``) and zero-padded in the channel dimension
(planes // 4 channels on each side). All parameters therefore live in plain ``nn.Conv2d``
(bias-free), ``nn.BatchNorm2d`` and ``nn.Linear`` modules with predictable names such as
``layer2.0.conv1.weight``. A block whose residual-stream channels structured pruning narrowed
(``prunescope.prune.structured``) carries its shortcut as a channel map instead (the
``shortcut_index`` buffer, see :meth:`BasicBlock.shortcut`). Depths: n = 3, 5, 7, 9, 18 give ResNet-20, 32, 44, 56, 110.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from prunescope.catalog.architectures import name_of


class BasicBlock(nn.Module):
    """Two 3x3 conv-BN layers with an option-A identity shortcut.

    Input ``(N, in_planes, H, W)`` -> output ``(N, planes, H / stride, W / stride)``.
    """

    def __init__(self, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.stride = stride
        self.pad_channels = planes - in_planes  # zero channels added by the shortcut
        # None (the dense option-A shortcut) or, once structured pruning narrowed the residual
        # streams on either side, int64 (out channels,): output channel j copies input channel
        # shortcut_index[j], or is zero where shortcut_index[j] == in channels
        self.register_buffer("shortcut_index", None)

    def shortcut(self, x: torch.Tensor) -> torch.Tensor:
        """Option A: identity, or stride-2 subsampling plus symmetric zero channel padding; with a
        ``shortcut_index`` (narrowed streams), the subsampled input's channels gathered by it."""
        if self.shortcut_index is not None:
            x = x[:, :, :: self.stride, :: self.stride]
            return F.pad(x, (0, 0, 0, 0, 0, 1)).index_select(1, self.shortcut_index)
        if self.stride == 1 and self.pad_channels == 0:
            return x
        x = x[:, :, :: self.stride, :: self.stride]
        half = self.pad_channels // 2
        return F.pad(x, (0, 0, 0, 0, half, self.pad_channels - half))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class CifarResNet(nn.Module):
    """ResNet-(6n+2) for 32x32 images.

    Args:
        depth: 20, 32, 44, 56 or 110 (a depth of a record in :mod:`prunescope.catalog`).
        num_classes: number of output logits C.
        in_channels: input channels (3 for CIFAR; 1 works for grey images).

    Input ``(N, in_channels, H, W)`` float (any H, W >= 4; 32 in the paper); output
    ``(N, num_classes)`` logits.
    """

    def __init__(self, depth: int = 20, num_classes: int = 10, in_channels: int = 3) -> None:
        super().__init__()
        self.arch = name_of(f"{__name__}:CifarResNet", depth=depth)
        n = (depth - 2) // 6  # blocks per stage: depth = 6n + 2
        self.depth = depth
        self.conv1 = nn.Conv2d(in_channels, 16, 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.layer1 = self._stage(16, 16, n, stride=1)
        self.layer2 = self._stage(16, 32, n, stride=2)
        self.layer3 = self._stage(32, 64, n, stride=2)
        self.classifier = nn.Linear(64, num_classes)

    @staticmethod
    def _stage(in_planes: int, planes: int, n: int, stride: int) -> nn.Sequential:
        blocks = [BasicBlock(in_planes, planes, stride)]
        blocks += [BasicBlock(planes, planes, 1) for _ in range(n - 1)]
        return nn.Sequential(*blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layer3(self.layer2(self.layer1(out)))
        out = F.adaptive_avg_pool2d(out, 1).flatten(1)
        return self.classifier(out)
