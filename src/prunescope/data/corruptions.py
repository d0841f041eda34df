"""Deterministic corrupted test sets (SPEC 7): CIFAR-10-C corruptions and Gaussian input noise.

Eight corruptions of Hendrycks & Dietterich, "Benchmarking Neural Network Robustness to Common
Corruptions and Perturbations", ICLR 2019, with the parameters of their CIFAR-10-C generation
script ``make_cifar_c.py`` (github.com/hendrycks/robustness, ``ImageNet-C/create_c/``), computed
in torch on the images' device, batched and seeded. See docs/corruptions.md for the parameter
table, the exact semantics and the determinism scheme.

Images are uint8 NHWC tensors (``(N, H, W, C)``, C = 1 for MNIST-like, 3 for RGB, values
0..255); :func:`corrupt` and :func:`gaussian_input_noise` return a new uint8 tensor of the same
shape on the same device. All arithmetic on the 0..1 scale happens in float64 (CPU and CUDA;
not Apple MPS), in the order of the published script's numpy/scipy/skimage calls; results are
clipped to [0, 1], scaled by 255 and truncated to uint8 as the script's ``np.uint8(...)`` does
(``quantize="truncate"``, the default), so every deterministic corruption equals the published
recipe bit for bit; ``quantize="round"`` rounds half to even instead (see docs/corruptions.md).

Randomness (Gaussian, shot, impulse noise and Gaussian input noise) is counter based: the value
of element ``e`` of image ``start + i`` is a function of ``(seed, noise family, start + i, e)``
only, so a result does not depend on the batch split or the chunking. Each noisy
pixel is drawn by inverting the exact distribution of its output level (a 256 x 256 table per
corruption and severity) with a 53-bit uniform integer, using integer arithmetic only.
"""
from __future__ import annotations

import functools
import io
import math
from collections.abc import Callable, Sequence

import numpy as np
import torch
from scipy import special

from prunescope.catalog.distributions import (CORRUPTIONS, SEVERITIES, Distribution, check_severity,
                                              check_std, distribution_names, unknown_corruption)

#: how a result on the 0..1 scale becomes a uint8 level: ``"truncate"`` (default) is
#: ``np.uint8(clip(v, 0, 1) * 255)`` of make_cifar_c.py, ``"round"`` rounds half to even
QUANTIZE: tuple[str, ...] = ("truncate", "round")

#: Parameter ``c`` per corruption, severity 1..5, copied from make_cifar_c.py (Hendrycks &
#: Dietterich, ICLR 2019; github.com/hendrycks/robustness, ImageNet-C/create_c/make_cifar_c.py).
#: These are the CIFAR values, which differ from the ImageNet-C ones. Units:
#: gaussian_noise: noise std on the 0..1 scale; shot_noise: photons per unit intensity (Poisson
#: rate = c * x); impulse_noise: fraction of elements replaced by 0 or 1; gaussian_blur: sigma in
#: pixels; contrast: factor on the deviation from the mean; brightness: added to HSV value;
#: pixelate: side of the downsampled image as a fraction of the original; jpeg_compression: the
#: Pillow/libjpeg quality.
PARAMETERS: dict[str, tuple[float, ...]] = {
    "gaussian_noise": (0.04, 0.06, 0.08, 0.09, 0.10),
    "shot_noise": (500, 250, 100, 75, 50),
    "impulse_noise": (0.01, 0.02, 0.03, 0.05, 0.07),
    "gaussian_blur": (0.4, 0.6, 0.7, 0.8, 1.0),
    "contrast": (0.75, 0.5, 0.4, 0.3, 0.15),
    "brightness": (0.05, 0.1, 0.15, 0.2, 0.3),
    "pixelate": (0.95, 0.9, 0.85, 0.75, 0.65),
    "jpeg_compression": (80, 65, 58, 50, 40),
}

#: truncation of the Gaussian blur kernel in sigmas (skimage.filters.gaussian / scipy default)
BLUR_TRUNCATE = 4.0

#: images processed per step; results do not depend on it (every operation is per image)
_CHUNK = 1024

_M32 = 0xFFFFFFFF
_U_BITS = 53  # bits of the uniform integer that drives each noisy element
_U_ONE = 1 << _U_BITS
_LEVELS = 256

# Noise families: the stream id mixed into the counter-based generator. The gaussian_noise
# corruption and Gaussian input noise share a family: "gaussian_noise-1" and "noise-0.04" are the
# same distribution and give the same images for a seed. Severities of one family share their
# uniforms (common random numbers), so a pixel's noise grows monotonically with the severity.
_STREAM_GAUSSIAN = 1
_STREAM_SHOT = 2
_STREAM_IMPULSE = 3


# --------------------------------------------------------------------------- input checks


def _check_images(x: torch.Tensor) -> None:
    if not isinstance(x, torch.Tensor):
        raise TypeError(
            f"images must be a torch.Tensor (uint8, NHWC), got {type(x).__name__}; "
            "use torch.from_numpy(x) for a numpy array"
        )
    if x.dtype != torch.uint8 or x.ndim != 4 or x.shape[3] not in (1, 3):
        raise ValueError(
            f"images must be uint8 NHWC (N, H, W, C) with C = 1 or 3, got dtype {x.dtype} and shape "
            f"{tuple(x.shape)}; convert floats with (x * 255).round().to(torch.uint8), add a channel "
            "axis to grey images (x[..., None]) and permute NCHW with x.permute(0, 2, 3, 1)"
        )


def _check_seed(seed: int) -> int:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"seed must be an int, got {seed!r} ({type(seed).__name__})")
    return int(seed) % (1 << 64)


def _check_start(start: int, n: int) -> int:
    if isinstance(start, bool) or not isinstance(start, (int, np.integer)) or start < 0:
        raise ValueError(f"start must be a non-negative int (the index of x[0] in the full set), got {start!r}")
    if int(start) + n > (1 << 32):
        raise ValueError(f"image indices start + N = {int(start) + n} exceed 2**32; split the set into smaller ones")
    return int(start)


def _check_quantize(quantize: str) -> str:
    if quantize not in QUANTIZE:
        raise ValueError(f"quantize must be one of {', '.join(map(repr, QUANTIZE))} (how results "
                         f"become uint8 levels), got {quantize!r}")
    return quantize


# --------------------------------------------------------------------------- random numbers


def _mix32(h):
    """The 'lowbias32' integer hash (C. Wellons), a bijection of [0, 2**32).

    Works on Python ints and on int64 tensors holding values in [0, 2**32): products may wrap
    around 2**64, which leaves the low 32 bits (the only ones kept) exact.
    """
    h = h ^ (h >> 16)
    h = (h * 0x7FEB352D) & _M32
    h = h ^ (h >> 15)
    h = (h * 0x846CA68B) & _M32
    return h ^ (h >> 16)


def _uniform_ints(n: int, per_image: int, seed: int, stream: int, start: int, device: torch.device) -> torch.Tensor:
    """Counter-based uniform integers in [0, 2**53), int64 of shape ``(n, per_image)``.

    Element ``e`` of image ``j = start + i`` gets two 32-bit words, word ``w`` being
    ``mix(mix((2e + w) ^ a_j) ^ b_j)`` with the image keys ``a_j = mix(j ^ k)``,
    ``b_j = mix(a_j ^ 0x9E3779B9)`` and the key ``k = mix(mix(seed_lo ^ mix(stream)) ^ seed_hi)``;
    the result is 27 bits of word 0 followed by 26 bits of word 1.
    """
    if per_image > (1 << 31):
        raise ValueError(f"images with {per_image} elements are too large for the generator (at most 2**31)")
    key = _mix32(_mix32((seed & _M32) ^ _mix32(stream)) ^ (seed >> 32))
    image = torch.arange(start, start + n, dtype=torch.int64, device=device)
    key_a = _mix32(image ^ key)[:, None]
    key_b = _mix32(key_a ^ 0x9E3779B9)
    counter = 2 * torch.arange(per_image, dtype=torch.int64, device=device)[None, :]
    word0 = _mix32(_mix32(counter ^ key_a) ^ key_b)
    word1 = _mix32(_mix32((counter + 1) ^ key_a) ^ key_b)
    return ((word0 >> 5) << 26) | (word1 >> 6)


def _thresholds(cdf: np.ndarray) -> torch.Tensor:
    """Integer inversion table from output-level CDFs.

    Args:
        cdf: float64 ``(256, 255)``; ``cdf[k, m]`` = P(output level <= m | input level k) for
            m = 0..254 (P(<= 255) = 1 is implied).

    Returns:
        int64 ``(256, 256)``: ``floor(cdf * 2**53)`` made non-decreasing along each row (float
        evaluation of a CDF need not be), with a last column of exactly ``2**53``.
    """
    scaled = np.floor(np.clip(cdf, 0.0, 1.0) * float(_U_ONE)).astype(np.int64)
    scaled = np.maximum.accumulate(scaled, axis=1)
    full = np.concatenate([scaled, np.full((_LEVELS, 1), _U_ONE, dtype=np.int64)], axis=1)
    return torch.from_numpy(full)


@functools.lru_cache(maxsize=64)
def _gaussian_table(std: float, quantize: str = "truncate") -> torch.Tensor:
    """Table of ``q(clip(k/255 + N(0, std), 0, 1) * 255)`` for input levels k (std > 0), ``q``
    truncation (upper edge of level m at ``(m + 1)/255``) or rounding (at ``(m + 0.5)/255``)."""
    level = np.arange(_LEVELS, dtype=np.float64)[:, None] / 255.0
    offset = 1.0 if quantize == "truncate" else 0.5
    upper_edge = (np.arange(_LEVELS - 1, dtype=np.float64)[None, :] + offset) / 255.0
    return _thresholds(special.ndtr((upper_edge - level) / std))


@functools.lru_cache(maxsize=16)
def _shot_table(rate: float, quantize: str = "truncate") -> torch.Tensor:
    """Table of ``q(clip(Poisson(rate * k/255) / rate, 0, 1) * 255)`` for input levels k.

    A count p >= rate saturates at 255; smaller counts map to ``q(p / rate * 255)`` (float64, in
    the script's order; ``q`` floor or round half to even), which is non-decreasing in p and 0
    for p = 0, so P(level <= m) is the Poisson CDF at the largest count below the rate that maps
    to at most m.
    """
    counts = np.arange(math.ceil(rate), dtype=np.float64)  # the counts below the rate
    count_level = (np.floor if quantize == "truncate" else np.round)(counts / rate * 255.0)
    largest = np.searchsorted(count_level, np.arange(_LEVELS - 1), side="right") - 1  # (255,), >= 0
    mean = rate * np.arange(_LEVELS, dtype=np.float64)[:, None] / 255.0
    return _thresholds(special.pdtr(largest[None, :], mean))


@functools.lru_cache(maxsize=16)
def _impulse_table(amount: float) -> torch.Tensor:
    """Table of salt-and-pepper noise: level 0 w.p. amount/2, 255 w.p. amount/2, else unchanged."""
    prob = np.zeros((_LEVELS, _LEVELS), dtype=np.float64)
    prob[:, 0] += amount / 2
    prob[:, -1] += amount / 2
    prob[np.arange(_LEVELS), np.arange(_LEVELS)] += 1.0 - amount
    return _thresholds(np.cumsum(prob, axis=1)[:, :-1])


def _sample_levels(x: torch.Tensor, table: torch.Tensor, seed: int, stream: int, start: int) -> torch.Tensor:
    """Draw each element's output level from its input level's row of ``table``.

    Args:
        x: uint8 ``(n, H, W, C)``; table: int64 ``(256, 256)`` from :func:`_thresholds`.

    Returns:
        uint8 ``(n, H, W, C)``: the smallest m with ``u < table[x, m]``, u the element's uniform
        integer. One ``searchsorted`` over the rows laid end to end (row k offset by ``k * 2**53``).
    """
    device = x.device
    offsets = torch.arange(_LEVELS, dtype=torch.int64)[:, None] << _U_BITS
    flat = (table + offsets).reshape(-1).to(device)
    n = x.shape[0]
    level = x.reshape(n, -1).to(torch.int64)
    u = _uniform_ints(n, level.shape[1], seed, stream, start, device)
    index = torch.searchsorted(flat, (level << _U_BITS) + u, right=True)
    return (index - (level << 8)).to(torch.uint8).reshape(x.shape)


# --------------------------------------------------------------------------- deterministic ops


def _to_unit(x: torch.Tensor) -> torch.Tensor:
    return x.to(torch.float64) / 255.0


def _to_uint8(v: torch.Tensor, quantize: str) -> torch.Tensor:
    """``clip(v, 0, 1) * 255`` as uint8: truncated (``np.uint8`` of make_cifar_c.py) or rounded
    half to even."""
    scaled = v.clamp(0.0, 1.0) * 255.0
    return (scaled.floor() if quantize == "truncate" else scaled.round()).to(torch.uint8)


@functools.lru_cache(maxsize=16)
def _gaussian_kernel(sigma: float) -> tuple[float, ...]:
    """Normalised 1-D Gaussian weights, radius ``int(4 sigma + 0.5)``, computed as
    scipy.ndimage's ``_gaussian_kernel1d`` computes them (same float64 operations)."""
    radius = int(BLUR_TRUNCATE * sigma + 0.5)
    taps = np.arange(-radius, radius + 1)
    weights = np.exp(-0.5 / (sigma * sigma) * taps**2)
    return tuple(float(w) for w in weights / weights.sum())


def _blur_axis(v: torch.Tensor, weights: Sequence[float], dim: int) -> torch.Tensor:
    """Correlate float ``v`` with the symmetric ``weights`` along ``dim``, edges extended
    ('nearest'), in scipy.ndimage's order for symmetric kernels (``NI_Correlate1D``): the centre
    tap times its weight, then each pair of taps at distance r summed first and times its
    weight, from the outermost pair inward; so the float64 result is scipy's to the last bit."""
    size = v.shape[dim]
    radius = len(weights) // 2
    index = torch.arange(-radius, size + radius, device=v.device).clamp(0, size - 1)
    padded = v.index_select(dim, index)
    out = padded.narrow(dim, radius, size) * weights[radius]
    for r in range(radius, 0, -1):
        out = out + (padded.narrow(dim, radius - r, size) + padded.narrow(dim, radius + r, size)) * weights[radius - r]
    return out


def _gaussian_blur(x: torch.Tensor, sigma: float, quantize: str) -> torch.Tensor:
    weights = _gaussian_kernel(sigma)
    v = _blur_axis(_to_unit(x), weights, dim=1)
    return _to_uint8(_blur_axis(v, weights, dim=2), quantize)


def _contrast(x: torch.Tensor, factor: float, quantize: str) -> torch.Tensor:
    """``(x - mean) * factor + mean``, mean per image and channel (as make_cifar_c.py).

    The means are numpy's ``np.mean(x / 255., axis=(0, 1))`` of each HWC image, computed on the
    CPU with that very call (a reduction's summation order decides its last bit, which truncation
    to uint8 can expose); the rest runs on the images' device.
    """
    means = np.mean(x.cpu().numpy() / 255.0, axis=(1, 2), keepdims=True)  # (n, 1, 1, C) float64
    mean = torch.from_numpy(means).to(x.device)
    return _to_uint8((_to_unit(x) - mean) * factor + mean, quantize)


def _brightness(x: torch.Tensor, shift: float, quantize: str) -> torch.Tensor:
    """Add ``shift`` to the HSV value, clipped to [0, 1], keeping hue and saturation.

    RGB images go through skimage's ``rgb2hsv`` and ``hsv2rgb`` (the pure-numpy versions
    make_cifar_c.py ran) operation for operation, so the float64 result is the script's to the
    last bit. A one-channel image is an RGB image with three equal channels, for which that round
    trip is exactly ``clip(x + shift, 0, 1)`` (S = H = 0, every output channel V').
    """
    v = _to_unit(x)
    if x.shape[3] == 1:
        return _to_uint8((v + shift).clamp(0.0, 1.0), quantize)
    r, g, b = v.unbind(dim=3)
    value = v.amax(dim=3)
    delta = value - v.amin(dim=3)
    flat = delta == 0
    safe = torch.where(flat, torch.ones_like(delta), delta)  # masked below, as skimage's 0/0
    sat = torch.where(flat, torch.zeros_like(delta), delta / torch.where(value == 0, safe, value))
    # hue: the last of red, green, blue that equals the maximum wins (skimage's order of writes)
    hue = torch.where(b == value, 4.0 + (r - g) / safe,
                      torch.where(g == value, 2.0 + (b - r) / safe, (g - b) / safe))
    hue = torch.fmod(hue / 6.0, 1.0)
    hue = torch.where(hue < 0, hue + 1.0, hue)  # numpy's % 1.0 (sign of the divisor)
    hue = torch.where(flat, torch.zeros_like(hue), hue)
    value = (value + shift).clamp(0.0, 1.0)
    # hsv2rgb
    hi = torch.floor(hue * 6)
    f = hue * 6 - hi
    p = value * (1 - sat)
    q = value * (1 - f * sat)
    t = value * (1 - (1 - f) * sat)
    sector = (hi.to(torch.int64) % 6)[None, ..., None].expand(1, *x.shape)  # (1, n, H, W, 3)
    choices = torch.stack([torch.stack(c, dim=-1) for c in (  # (6, n, H, W, 3), np.choose's list
        (value, t, p), (q, value, p), (p, value, t), (p, q, value), (t, p, value), (value, p, q))])
    return _to_uint8(torch.gather(choices, 0, sector)[0], quantize)


# Pillow's fixed-point resampling (libImaging/Resample.c): 22 fractional bits for 8-bit images.
_PIL_PRECISION_BITS = 32 - 8 - 2


@functools.lru_cache(maxsize=64)
def _pil_box_windows(in_size: int, out_size: int) -> tuple[tuple[int, int, int], ...]:
    """Per output pixel of a Pillow BOX resize: (first input, end input, fixed-point weight).

    Mirrors ``precompute_coeffs`` of Pillow's Resample.c with the box filter (weight 1 where
    ``-0.5 < (x - center + 0.5) / filterscale <= 0.5``), normalised weight 1/count rounded to
    22-bit fixed point.
    """
    scale = in_size / out_size
    filterscale = max(scale, 1.0)
    support = 0.5 * filterscale
    windows = []
    for i in range(out_size):
        center = (i + 0.5) * scale
        lo = max(int(center - support + 0.5), 0)
        hi = min(int(center + support + 0.5), in_size)
        taps = [p for p in range(lo, hi) if -0.5 < (p - center + 0.5) / filterscale <= 0.5]
        weight = int(0.5 + (1.0 / len(taps)) * (1 << _PIL_PRECISION_BITS))
        windows.append((taps[0], taps[-1] + 1, weight))
    return tuple(windows)


def _pil_box_resize_axis(x: torch.Tensor, out_size: int, dim: int) -> torch.Tensor:
    """One pass of a Pillow BOX resize of uint8 ``x`` along ``dim``, in exact integer arithmetic."""
    windows = _pil_box_windows(x.shape[dim], out_size)
    lo, hi, weight = (torch.tensor(col, dtype=torch.int64, device=x.device) for col in zip(*windows))
    zero = torch.zeros_like(x.narrow(dim, 0, 1), dtype=torch.int64)
    cumulative = torch.cat([zero, x.to(torch.int64).cumsum(dim)], dim=dim)
    sums = cumulative.index_select(dim, hi) - cumulative.index_select(dim, lo)
    shape = [1] * x.ndim
    shape[dim] = out_size
    rounded = (sums * weight.reshape(shape) + (1 << (_PIL_PRECISION_BITS - 1))) >> _PIL_PRECISION_BITS
    return rounded.clamp(0, 255).to(torch.uint8)


def _pixelate(x: torch.Tensor, fraction: float) -> torch.Tensor:
    """Pillow BOX resize to ``int(side * fraction)`` and back, width first then height (as Pillow)."""
    height, width = x.shape[1], x.shape[2]
    small_h, small_w = int(height * fraction), int(width * fraction)
    if small_h < 1 or small_w < 1:
        raise ValueError(
            f"pixelate with fraction {fraction} shrinks {height}x{width} images to {small_h}x{small_w}; "
            f"it needs sides of at least {math.ceil(1 / fraction)} pixels"
        )
    small = _pil_box_resize_axis(_pil_box_resize_axis(x, small_w, dim=2), small_h, dim=1)
    return _pil_box_resize_axis(_pil_box_resize_axis(small, width, dim=2), height, dim=1)


def _jpeg(x: torch.Tensor, quality: int) -> torch.Tensor:
    """Pillow JPEG encode/decode at ``quality`` (default 4:2:0 chroma subsampling for RGB).

    The only corruption computed on the CPU, one image at a time; the result is moved back.
    """
    try:
        from PIL import Image
    except ImportError as e:  # Pillow comes with matplotlib, a dependency of prunescope
        raise ImportError("jpeg_compression needs Pillow: pip install pillow") from e
    images = x.cpu().numpy()
    channels = images.shape[3]
    out = np.empty_like(images)
    for i, image in enumerate(images):
        buffer = io.BytesIO()
        Image.fromarray(image[..., 0] if channels == 1 else image).save(buffer, "JPEG", quality=int(quality))
        buffer.seek(0)
        with Image.open(buffer) as decoded:
            out[i] = np.asarray(decoded.convert("L" if channels == 1 else "RGB")).reshape(image.shape)
    return torch.from_numpy(out).to(x.device)


# --------------------------------------------------------------------------- public API


def _chunked(x: torch.Tensor, start: int, fn: Callable[[torch.Tensor, int], torch.Tensor]) -> torch.Tensor:
    """Apply ``fn(chunk, start_of_chunk)`` to chunks of :data:`_CHUNK` images and concatenate."""
    if x.shape[0] == 0:
        return x.clone()
    parts = [fn(x[i : i + _CHUNK], start + i) for i in range(0, x.shape[0], _CHUNK)]
    return torch.cat(parts)


def corrupt(x: torch.Tensor, name: str, severity: int, seed: int, *, start: int = 0,
            quantize: str = "truncate") -> torch.Tensor:
    """Apply CIFAR-10-C corruption ``name`` at ``severity`` to a batch of images.

    Args:
        x: uint8 tensor ``(N, H, W, C)``, C = 1 or 3, values 0..255, on any device.
        name: one of :data:`CORRUPTIONS`.
        severity: 1..5 (parameters in :data:`PARAMETERS`).
        seed: any int (taken modulo 2**64); used by the three noise corruptions, ignored by the
            deterministic ones.
        start: index of ``x[0]`` in the full test set. Image ``i`` is keyed by
            ``(seed, start + i)``, so ``corrupt(x[a:b], ..., start=a)`` equals
            ``corrupt(x, ...)[a:b]`` bit for bit.
        quantize: how results on the 0..1 scale become uint8 levels (:data:`QUANTIZE`):
            ``"truncate"`` (default) as make_cifar_c.py's ``np.uint8(clip(v, 0, 1) * 255)``, so
            blur, contrast, brightness, pixelate and JPEG equal the published recipe bit for bit
            and the noise corruptions have its distribution; ``"round"`` rounds half to even.
            Pixelate and JPEG are uint8 operations either way.

    Returns:
        uint8 tensor of the shape and device of ``x``. The same arguments give bit-identical
        results on every call and batch split. The arithmetic (integers, and float64 steps that
        are single IEEE operations) is chosen to give the same bits on every device as well;
        JPEG always runs on the CPU.
    """
    _check_images(x)
    if name not in PARAMETERS:
        raise unknown_corruption(name)
    c = PARAMETERS[name][check_severity(name, severity) - 1]
    seed = _check_seed(seed)
    start = _check_start(start, x.shape[0])
    quantize = _check_quantize(quantize)
    if name == "gaussian_noise":
        table = _gaussian_table(c, quantize)
        return _chunked(x, start, lambda v, s: _sample_levels(v, table, seed, _STREAM_GAUSSIAN, s))
    if name == "shot_noise":
        table = _shot_table(c, quantize)
        return _chunked(x, start, lambda v, s: _sample_levels(v, table, seed, _STREAM_SHOT, s))
    if name == "impulse_noise":
        return _chunked(x, start, lambda v, s: _sample_levels(v, _impulse_table(c), seed, _STREAM_IMPULSE, s))
    if name == "jpeg_compression":
        return _jpeg(x, int(c))
    if name == "pixelate":  # a uint8 operation: no quantisation step
        return _chunked(x, start, lambda v, s: _pixelate(v, c))
    deterministic = {"gaussian_blur": _gaussian_blur, "contrast": _contrast,
                     "brightness": _brightness}[name]
    return _chunked(x, start, lambda v, s: deterministic(v, c, quantize))


def gaussian_input_noise(x: torch.Tensor, std: float, seed: int, *, start: int = 0,
                         quantize: str = "truncate") -> torch.Tensor:
    """Add Gaussian noise of standard deviation ``std`` (0..1 pixel scale), clip, requantise.

    Args:
        x: uint8 tensor ``(N, H, W, C)``, C = 1 or 3, on any device.
        std: noise standard deviation in units of the full pixel range (0.1 = 25.5 levels); 0
            returns a copy of ``x``.
        seed, start, quantize: as in :func:`corrupt`. Shares its noise stream with
            ``gaussian_noise``: ``gaussian_input_noise(x, 0.04, s)`` equals
            ``corrupt(x, "gaussian_noise", 1, s)`` (for the same ``quantize``).

    Returns:
        uint8 tensor of the shape and device of ``x``: ``q(clip(x/255 + N(0, std²)) * 255)``, ``q``
        truncation (default) or rounding.
    """
    _check_images(x)
    std = check_std(std)
    seed = _check_seed(seed)
    start = _check_start(start, x.shape[0])
    quantize = _check_quantize(quantize)
    if std == 0.0:
        return x.clone()
    table = _gaussian_table(std, quantize)
    return _chunked(x, start, lambda v, s: _sample_levels(v, table, seed, _STREAM_GAUSSIAN, s))


def apply_distribution(x: torch.Tensor, name: str | Distribution, seed: int, *, start: int = 0,
                       quantize: str = "truncate") -> torch.Tensor:
    """The images of distribution ``name`` (a name or a :class:`Distribution`) made from ``x``.

    See :func:`corrupt` for ``x``, ``seed``, ``start`` and ``quantize``; the nominal
    distribution returns ``x``.
    """
    dist = name if isinstance(name, Distribution) else Distribution.parse(name)
    if dist.kind == "corruption":
        return corrupt(x, dist.corruption, dist.severity, seed, start=start, quantize=quantize)
    if dist.kind == "noise":
        return gaussian_input_noise(x, dist.std, seed, start=start, quantize=quantize)
    _check_images(x)
    _check_quantize(quantize)
    return x


__all__ = [
    "BLUR_TRUNCATE",
    "CORRUPTIONS",
    "Distribution",
    "PARAMETERS",
    "QUANTIZE",
    "SEVERITIES",
    "apply_distribution",
    "corrupt",
    "distribution_names",
    "gaussian_input_noise",
]
