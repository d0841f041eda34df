"""Device-resident image sets: uint8 NHWC on the training device, batches made there.

The whole split lives on the device as uint8 (60,000 MNIST images are 47 MB, 50,000 CIFAR
images 154 MB). Shuffling, per-sample random crop (4-pixel zero padding) and horizontal flip,
conversion to float and per-channel normalisation happen on that device; no DataLoader
workers. All randomness of an epoch is drawn up front from a CPU ``torch.Generator`` and moved
to the device in one copy, so a seed gives the same data order and augmentation on every
device.
"""
from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import torch

#: zero padding (pixels, each side) of the random-crop augmentation (SPEC 4)
CROP_PADDING = 4


class DeviceImages:
    """A labelled image set held on ``device`` as uint8 NHWC.

    Args:
        x_uint8_nhwc: images, shape ``(N, H, W, C)``, dtype uint8, values 0..255
            (``numpy.ndarray`` or tensor).
        y: labels, shape ``(N,)``, integer class indices 0..C-1.
        mean, std: per-channel normalisation on the 0..1 scale, length C each
            (``prunescope.data.info(name).mean/.std``).
        device: where the images live and batches are produced.

    Attributes:
        x: uint8 tensor ``(N, H, W, C)`` on ``device``; y: int64 tensor ``(N,)`` on ``device``.
    """

    def __init__(
        self,
        x_uint8_nhwc: np.ndarray | torch.Tensor,
        y: np.ndarray | torch.Tensor,
        mean: Sequence[float],
        std: Sequence[float],
        device: torch.device | str = "cpu",
    ) -> None:
        x = torch.as_tensor(x_uint8_nhwc)
        y = torch.as_tensor(y)
        if x.dtype != torch.uint8 or x.ndim != 4:
            raise ValueError(
                f"images must be uint8 NHWC (N, H, W, C), got dtype {x.dtype} and shape "
                f"{tuple(x.shape)}; convert with np.asarray(x, dtype=np.uint8) and add a channel "
                "axis to grey images (x[..., None])"
            )
        if y.ndim != 1 or y.shape[0] != x.shape[0]:
            raise ValueError(
                f"labels must have shape ({x.shape[0]},) to match the images, got {tuple(y.shape)}"
            )
        if y.dtype.is_floating_point or y.dtype == torch.bool:
            raise ValueError(f"labels must be integers, got dtype {y.dtype}")
        channels = x.shape[3]
        if len(mean) != channels or len(std) != channels:
            raise ValueError(
                f"mean and std need one value per channel ({channels}), got {len(mean)} and "
                f"{len(std)}"
            )
        if any(s <= 0 for s in std):
            raise ValueError(f"std values must be positive, got {list(std)}")
        self.device = torch.device(device)
        self.x = x.to(self.device).contiguous()
        self.y = y.to(device=self.device, dtype=torch.int64)
        self.mean = tuple(float(m) for m in mean)
        self.std = tuple(float(s) for s in std)
        self._mean_t = torch.tensor(self.mean, dtype=torch.float32, device=self.device)
        self._inv_std_t = 1.0 / torch.tensor(self.std, dtype=torch.float32, device=self.device)

    def __len__(self) -> int:
        return int(self.x.shape[0])

    @property
    def shape_hwc(self) -> tuple[int, int, int]:
        """``(H, W, C)`` of one image."""
        return tuple(self.x.shape[1:])  # type: ignore[return-value]

    def subset(self, indices: np.ndarray | torch.Tensor | Sequence[int]) -> DeviceImages:
        """The images at ``indices`` (int array ``(M,)``) as a new set on the same device."""
        if not isinstance(indices, torch.Tensor):
            indices = torch.from_numpy(np.asarray(indices, dtype=np.int64))
        idx = indices.to(device=self.device, dtype=torch.int64)
        return DeviceImages(self.x[idx], self.y[idx], self.mean, self.std, self.device)

    def to(self, device: torch.device | str) -> DeviceImages:
        """This set moved to ``device``."""
        return DeviceImages(self.x, self.y, self.mean, self.std, device)

    def normalize(self, x_uint8_nhwc: torch.Tensor) -> torch.Tensor:
        """uint8 ``(B, H, W, C)`` on the device -> float32 ``(B, C, H, W)``, ``(x/255 - mean)/std``."""
        x = x_uint8_nhwc.to(torch.float32).mul_(1.0 / 255.0)
        x = x.sub_(self._mean_t).mul_(self._inv_std_t)
        return x.permute(0, 3, 1, 2).contiguous()

    def num_batches(self, batch_size: int, max_steps: int | None = None) -> int:
        """Number of batches :meth:`batches` yields (the last one may be smaller)."""
        n = -(-len(self) // batch_size)
        return n if max_steps is None else min(n, max_steps)

    def batches(
        self,
        batch_size: int,
        *,
        shuffle: bool = False,
        augment: bool = False,
        generator: torch.Generator | None = None,
        max_steps: int | None = None,
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Yield ``(x, y)`` batches: x float32 ``(B, C, H, W)`` normalised, y int64 ``(B,)``.

        Args:
            batch_size: images per batch B; the last batch holds the remainder.
            shuffle: visit the images in a random order drawn from ``generator``
                (otherwise in stored order, as for evaluation).
            augment: per-sample random crop of the image zero-padded by 4 pixels and random
                horizontal flip (p = 0.5), drawn from ``generator`` (CIFAR; not for MNIST).
            generator: a CPU ``torch.Generator``; required when shuffling or augmenting.
            max_steps: stop after this many batches (a shortened epoch).
        """
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if (shuffle or augment) and generator is None:
            raise ValueError("shuffle/augment need an explicit generator: pass "
                             "generator=torch.Generator().manual_seed(seed)")
        if generator is not None and generator.device.type != "cpu":
            raise ValueError(f"the generator must live on the CPU, got {generator.device}")
        n = len(self)
        steps = self.num_batches(batch_size, max_steps)
        used = min(n, steps * batch_size)
        order, offsets, flips = epoch_draws(n, used, shuffle, augment, generator)
        order = order.to(self.device, non_blocking=True)
        if augment:
            offsets = offsets.to(self.device, non_blocking=True)
            flips = flips.to(self.device, non_blocking=True)
        for step in range(steps):
            sl = slice(step * batch_size, min((step + 1) * batch_size, used))
            idx = order[sl]
            xb = self.x[idx]
            if augment:
                xb = crop_flip(xb, offsets[sl], flips[sl])
            yield self.normalize(xb), self.y[idx]


def epoch_draws(
    n: int, used: int, shuffle: bool, augment: bool, generator: torch.Generator | None
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """One epoch's random choices, on the CPU, drawn from ``generator`` in this fixed order:
    the permutation of the ``n`` images (when ``shuffle``; else stored order), then the crop
    offsets and the flips of the ``used`` visited images (when ``augment``).

    Returns ``order`` int64 ``(used,)``, ``offsets`` int64 ``(used, 2)`` in ``0..2*CROP_PADDING``
    and ``flips`` bool ``(used,)`` (the last two ``None`` without augmentation). The stacked
    pack trainer calls this per model, so a model in a pack sees the batches it sees alone.
    """
    order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
    if not augment:
        return order[:used], None, None
    offsets = torch.randint(0, 2 * CROP_PADDING + 1, (used, 2), generator=generator)
    flips = torch.rand(used, generator=generator) < 0.5
    return order[:used], offsets, flips


def crop_flip(
    x_uint8_nhwc: torch.Tensor, offsets: torch.Tensor, flips: torch.Tensor,
    padding: int = CROP_PADDING,
) -> torch.Tensor:
    """Per-sample crop of the zero-padded images, then optional horizontal flip.

    Args:
        x_uint8_nhwc: ``(B, H, W, C)`` uint8 images.
        offsets: ``(B, 2)`` int64, the (row, column) of each crop's top-left corner in the
            padded image, each in ``0..2*padding`` (``padding`` = no shift).
        flips: ``(B,)`` bool, flip image b left-right after cropping.
        padding: zero pixels added on each side before cropping.

    Returns:
        ``(B, H, W, C)`` uint8: ``out[b, i, j] = padded[b, oy + i, ox + j']`` with
        ``j' = W - 1 - j`` where flipped, else ``j``.
    """
    b, h, w, _ = x_uint8_nhwc.shape
    padded = torch.nn.functional.pad(x_uint8_nhwc, (0, 0, padding, padding, padding, padding))
    ar_h = torch.arange(h, device=x_uint8_nhwc.device)
    ar_w = torch.arange(w, device=x_uint8_nhwc.device)
    cols = torch.where(flips[:, None], ar_w.flip(0)[None, :], ar_w[None, :])
    rows = offsets[:, 0:1] + ar_h[None, :]  # (B, H)
    cols = offsets[:, 1:2] + cols  # (B, W)
    bidx = torch.arange(b, device=x_uint8_nhwc.device)[:, None, None]
    return padded[bidx, rows[:, :, None], cols[:, None, :]]
