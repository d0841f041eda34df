"""LeNet-5 (LeCun et al. 1998) in the two forms the study uses.

``variant="classic"`` (architecture ``lenet5``). Layer sizes (input ``(N, in_channels, 28, 28)``, MNIST-like; see ``docs/training.md``):

=========  ==================================  =================
name       layer                               output shape
=========  ==================================  =================
conv1      Conv2d(in, 6, 5x5, padding 2)       (N, 6, 28, 28)
           MaxPool 2x2, ReLU                   (N, 6, 14, 14)
conv2      Conv2d(6, 16, 5x5)                  (N, 16, 10, 10)
           MaxPool 2x2, ReLU                   (N, 16, 5, 5)
           flatten                             (N, 400)
fc1        Linear(400, 120), ReLU              (N, 120)
fc2        Linear(120, 84), ReLU               (N, 84)
classifier Linear(84, C)                       (N, C) logits
=========  ==================================  =================

Why: the original net took 32x32 inputs with no padding; padding conv1 by 2 keeps the
original 28x28 -> 14 -> 10 -> 5 feature-map sizes on 28x28 MNIST images, so the layer
widths (6, 16, 120, 84) and all parameter counts of the classic design are unchanged
(61,706 parameters for 1 channel and 10 classes). ReLU and max-pooling replace the original
scaled tanh and trainable subsampling, as in the pruning literature's LeNet-5.

``variant="shrinkbench"`` (architecture ``lenet5-shrinkbench``): ShrinkBench's ``LeNet``, the
"adaptation of LeNet5" of Good et al. 2022 (SPEC 4), with 3x3 kernels and no padding:

=========  ==================================  =================
name       layer                               output shape
=========  ==================================  =================
conv1      Conv2d(in, 6, 3x3)                  (N, 6, 26, 26)
           MaxPool 2x2, ReLU                   (N, 6, 13, 13)
conv2      Conv2d(6, 16, 3x3)                  (N, 16, 11, 11)
           MaxPool 2x2 (floor), ReLU           (N, 16, 5, 5)
           flatten                             (N, 400)
fc1        Linear(400, 120), ReLU              (N, 120)
fc2        Linear(120, 84), ReLU               (N, 84)
classifier Linear(84, C)                       (N, C) logits
=========  ==================================  =================

60,074 parameters for 1 channel and 10 classes (ShrinkBench calls the last layer ``fc3``; it
is ``classifier`` here as in every prunescope model). The authors' ShrinkBench fork marks
``fc3.is_classifier = True`` and never masks a bias (SPEC 8), so the paper pruned neither:
prunescope's default prunable set; upstream ShrinkBench's LeNet marks no classifier.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from prunescope.catalog.architectures import LENET_WIDTHS, lenet_side, name_of

#: ``{variant: (conv kernel size, conv1 padding)}``; the architecture of each is named by its
#: record in :mod:`prunescope.catalog.architectures`
VARIANTS: dict[str, tuple[int, int]] = {"classic": (5, 2), "shrinkbench": (3, 0)}


class LeNet5(nn.Module):
    """LeNet-5 for square ``image_size`` x ``image_size`` inputs.

    Args:
        num_classes: number of output logits C.
        in_channels: input channels (1 for MNIST, 3 for RGB).
        image_size: input height = width in pixels (28 for MNIST; 32 works too, giving a
            16x6x6 = 576-wide flatten for the classic variant).
        variant: ``"classic"`` (5x5 kernels, conv1 padded by 2) or ``"shrinkbench"`` (3x3
            kernels, no padding); see the module docstring.

    Attributes:
        arch: the architecture name of the variant (``lenet5`` or ``lenet5-shrinkbench``).

    Input ``(N, in_channels, image_size, image_size)`` float; output ``(N, num_classes)`` logits.
    """

    def __init__(self, num_classes: int = 10, in_channels: int = 1, image_size: int = 28,
                 variant: str = "classic") -> None:
        super().__init__()
        if variant not in VARIANTS:
            raise ValueError(f"unknown LeNet-5 variant {variant!r}; choose one of "
                             f"{', '.join(VARIANTS)}")
        kernel, pad = VARIANTS[variant]
        self.arch = name_of(f"{__name__}:LeNet5", variant=variant)
        self.variant = variant
        side = lenet_side(kernel, pad, image_size)
        if side < 1:
            raise ValueError(
                f"LeNet-5 ({variant}) needs larger images than image_size={image_size}; "
                "pass the real input size as image_size"
            )
        self.image_size = image_size
        c1, c2, f1, f2 = LENET_WIDTHS
        self.conv1 = nn.Conv2d(in_channels, c1, kernel_size=kernel, padding=pad)
        self.conv2 = nn.Conv2d(c1, c2, kernel_size=kernel)
        self.fc1 = nn.Linear(c2 * side * side, f1)
        self.fc2 = nn.Linear(f1, f2)
        self.classifier = nn.Linear(f2, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, in_channels, S, S)`` float -> ``(N, num_classes)`` logits."""
        if x.shape[-1] != self.image_size or x.shape[-2] != self.image_size:
            raise ValueError(
                f"LeNet-5 was built for {self.image_size}x{self.image_size} inputs, got "
                f"{tuple(x.shape[-2:])}; build it with image_size={x.shape[-1]}"
            )
        # ReLU after the 2x2 max-pool: max and ReLU commute, so output and gradients are
        # bitwise those of ReLU-then-pool, with ReLU on a quarter of the elements (issue 22)
        x = F.relu(F.max_pool2d(self.conv1(x), 2))
        x = F.relu(F.max_pool2d(self.conv2(x), 2))
        x = torch.flatten(x, 1)
        x = F.relu(self.fc1(x))
        x = F.relu(self.fc2(x))
        return self.classifier(x)
