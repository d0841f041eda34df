"""What a user gives an audit, read and checked before any work: data in any supported form
(as uint8 NHWC images and int64 labels), the options, the fine-tuning recipe, and that the model
takes the images and has an output for every label. Every refusal is one :class:`AuditError`
line."""
from __future__ import annotations

import math
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from prunescope import choices
from prunescope.catalog import methods as registry
from prunescope.data.device import DeviceImages
from prunescope.prune import UnreachableRatioError, count_parameters, keep_count, prunable
from prunescope.train import Recipe

__all__ = ["MAX_LABEL", "AuditError", "DataLike", "Options", "as_arrays", "as_recipe", "check_data",
           "check_options", "model_device", "normalisation", "registry_name"]

#: anything :func:`as_arrays` reads (see :mod:`prunescope.audit`)
DataLike = Any


class AuditError(ValueError):
    """An audit cannot start (bad option, model or data) or some of its jobs failed; the message
    is one line naming what is wrong and how to go on. Finished jobs are kept in ``out_dir``."""


def _to_numpy(a: Any) -> np.ndarray:
    return a.detach().cpu().numpy() if isinstance(a, torch.Tensor) else np.asarray(a)


def _as_uint8_nhwc(x: np.ndarray, what: str) -> np.ndarray:
    """uint8 ``(N, H, W, C)`` from NHWC, NCHW or NHW images (uint8, or float in [0, 1])."""
    if x.ndim == 3:
        x = x[..., None]
    if x.ndim != 4:
        raise AuditError(f"{what}: images must have 3 or 4 dimensions (N, H, W[, C]), got shape "
                         f"{x.shape}")
    if len(x) == 0:
        raise AuditError(f"{what}: no images")
    if x.shape[1] in (1, 3) and x.shape[3] not in (1, 3):
        x = x.transpose(0, 2, 3, 1)
    if x.dtype == np.uint8:
        return np.ascontiguousarray(x)
    if not np.issubdtype(x.dtype, np.floating):
        raise AuditError(f"{what}: images must be uint8 (0..255) or float in [0, 1], got dtype "
                         f"{x.dtype}; convert with x.astype(np.uint8) (0..255) or x / 255.0")
    bad = ~np.isfinite(x)
    if bad.any():
        n = int(bad.reshape(len(x), -1).any(1).sum())
        raise AuditError(f"{what}: {n} image(s) hold NaN or infinite values (first: image "
                         f"{int(np.argmax(bad.reshape(len(x), -1).any(1)))}); clean or drop them")
    lo, hi = float(x.min()), float(x.max())
    if lo < 0.0 or hi > 1.0:
        raise AuditError(
            f"{what}: float images must lie in [0, 1] (found {lo:.3g}..{hi:.3g}); pass the "
            "unnormalised images and give the model's normalisation as mean=/std=")
    return np.ascontiguousarray(np.rint(x * 255.0).astype(np.uint8))


#: largest label ``audit`` takes (class indices are model outputs; a larger one is damage)
MAX_LABEL = (1 << 24) - 1
_NPY_MAGIC = b"\x93NUMPY"


def _npz_array(z: zipfile.ZipFile, member: str, f: Path) -> np.ndarray:
    """One array of an ``.npz`` archive, its header checked against the bytes it holds before
    anything is allocated (a header may declare 10^12 images): no object arrays, no size
    mismatch."""
    info = z.getinfo(member)
    with z.open(info) as fh:
        version = np.lib.format.read_magic(fh)
        read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                       else np.lib.format.read_array_header_2_0)
        shape, fortran, dtype = read_header(fh)
        if dtype.hasobject:
            raise AuditError(f"{f}: array {member!r} holds Python objects; save numbers only")
        need = math.prod(shape) * dtype.itemsize
        held = info.file_size - fh.tell()
        if need != held:
            raise AuditError(f"{f}: array {member!r} declares shape {shape} of {dtype} "
                             f"({need:,} bytes) but holds {held:,} bytes: the file is truncated "
                             "or damaged; write it again with numpy.savez(path, x=images, "
                             "y=labels)")
        data = bytearray(fh.read(need))
    return np.frombuffer(data, dtype).reshape(shape, order="F" if fortran else "C")


def _load_npz(path: Path) -> tuple[np.ndarray, np.ndarray]:
    files = sorted(path.glob("*.npz")) if path.is_dir() else [path]
    if not files or not files[0].exists():
        raise AuditError(f"no .npz file at {path}; put arrays x (images) and y (labels) in one")
    xs, ys = [], []
    for f in files:
        try:
            with open(f, "rb") as fh:
                if fh.read(len(_NPY_MAGIC)) == _NPY_MAGIC:
                    raise AuditError(f"{f} is a single .npy array, not an .npz archive of x "
                                     "and y; write it with numpy.savez(path, x=images, y=labels)")
            with zipfile.ZipFile(f) as z:
                names = {n.removesuffix(".npy"): n for n in z.namelist()}
                if "x" not in names or "y" not in names:
                    raise AuditError(f"{f} must hold arrays 'x' (images) and 'y' (labels); it "
                                     f"has {sorted(names)}")
                x, y = _npz_array(z, names["x"], f), _npz_array(z, names["y"], f)
        except AuditError:
            raise
        except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile) as e:
            raise AuditError(f"{f} is not a readable .npz file ({type(e).__name__}: {e}); write "
                             "it with numpy.savez(path, x=images, y=labels)") from e
        if x.ndim not in (3, 4) or y.ndim != 1:
            raise AuditError(f"{f}: x must be images (N, H, W[, C]) and y labels (N,); got "
                             f"shapes {x.shape} and {y.shape}")
        xs.append(x)
        ys.append(y)
    if len({x.shape[1:] for x in xs}) > 1:
        raise AuditError(f"the .npz files of {path} hold images of different shapes "
                         f"{sorted({x.shape[1:] for x in xs})}; give one shape")
    return np.concatenate(xs), np.concatenate(ys)


def as_arrays(data: DataLike, what: str = "data") -> tuple[np.ndarray, np.ndarray]:
    """Images uint8 ``(N, H, W, C)`` and labels int64 ``(N,)`` from any supported data form."""
    if isinstance(data, DeviceImages):
        x, y = data.x.cpu().numpy(), data.y.cpu().numpy()
    elif hasattr(data, "x") and hasattr(data, "y"):  # prunescope.data.ImageSet
        x, y = np.asarray(data.x), np.asarray(data.y)
    elif isinstance(data, (str, Path)):
        x, y = _load_npz(Path(data))
    elif isinstance(data, (tuple, list)) and len(data) == 2:
        x, y = _to_numpy(data[0]), _to_numpy(data[1])
    elif isinstance(data, torch.utils.data.Dataset):
        items = [data[i] for i in range(len(data))]  # type: ignore[arg-type]
        x = np.stack([_to_numpy(a) for a, _ in items])
        y = np.array([int(b) for _, b in items])
    else:
        raise AuditError(
            f"{what}: unsupported type {type(data).__name__}; give (x, y) arrays or tensors, an "
            "ImageSet, a torch Dataset of (image, label), DeviceImages, an .npz file or a folder of them"
        )
    x = _as_uint8_nhwc(np.asarray(x), what)
    y = np.asarray(y)
    if y.ndim != 1 or len(y) != len(x) or not np.issubdtype(y.dtype, np.integer):
        raise AuditError(f"{what}: labels must be integers of shape ({len(x)},), got {y.dtype} "
                         f"{y.shape}")
    if len(y) and (int(y.min()) < 0 or int(y.max()) > MAX_LABEL):
        raise AuditError(f"{what}: labels run {int(y.min())}..{int(y.max())}; they must be class "
                         f"indices 0..C-1 (at most {MAX_LABEL})")
    return x, y.astype(np.int64)


def model_device(model: nn.Module) -> torch.device:
    p = next(model.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


def as_recipe(finetune: bool | Recipe | Mapping[str, Any] | None) -> Recipe | None:
    if finetune is None or finetune is False:
        return None
    if isinstance(finetune, Recipe):
        return finetune
    if isinstance(finetune, Mapping):
        try:
            return Recipe.from_dict(dict(finetune))
        except (TypeError, ValueError) as e:
            raise AuditError(f"finetune: not a valid recipe: {e}") from e
    raise AuditError(
        "finetune must be False/None (no fine-tuning), a prunescope.train.Recipe or a dict of its "
        f"fields; got {finetune!r}. For a prunescope checkpoint, audit_checkpoint picks the SPEC 4 recipe.")


@dataclass(frozen=True)
class Options:
    methods: tuple[str, ...]
    ratios: tuple[float, ...]
    distributions: tuple[str, ...]


def check_options(model: nn.Module, methods: Sequence[str], ratios: Sequence[float],
                   distributions: Sequence[str], scope: str, grad_mode: str,
                   grad_batches: int | None, delta: float, top_k: int, workers: int,
                   weight_decay: float | None) -> Options:
    """Every option of :func:`audit` checked (ratios reachable on ``model``), or ``AuditError``."""
    meths = tuple(dict.fromkeys(str(m).lower() for m in methods))
    one_shot = ", ".join(registry.names("one-shot"))
    if not meths:
        raise AuditError(f"methods: give at least one of {one_shot}")
    for m in meths:
        if choices.method_error(m, "one-shot") is not None:
            raise AuditError(f"method {m!r} is not one an audit runs; choose from {one_shot} "
                             "(iterative and structured methods run in studies, docs/studies.md)")
    try:
        rs = tuple(sorted({float(r) for r in ratios}))
    except (TypeError, ValueError) as e:
        raise AuditError(f"ratios must be numbers, got {list(ratios)!r}") from e
    if not rs:
        raise AuditError("ratios: give at least one compression ratio > 1")
    bad = [r for r in rs if choices.ratio_error(r) is not None]
    if bad:
        raise AuditError(f"ratio {bad[0]:g} is invalid: {choices.RATIO_ALLOWED}")
    try:
        n_prunable = sum(p.numel() for p in prunable(model).values())
        keep_count(count_parameters(model), n_prunable, rs[-1])
    except UnreachableRatioError as e:
        raise AuditError(f"ratio {rs[-1]:g} cannot be reached on this model: {e}; lower --ratios"
                         ) from e
    except ValueError as e:
        raise AuditError(f"this model cannot be pruned: {e}") from e
    dists = []
    for d in ["nominal", *distributions]:
        if (error := choices.distribution_error(d)) is not None:
            raise AuditError(f"distribution {d!r} is invalid; use {error}")
        if (name := choices.canonical_distribution(d)) not in dists:
            dists.append(name)
    for option, error in (("scope", choices.choice_error(scope, choices.SCOPES)),
                          ("grad_mode", choices.choice_error(grad_mode, choices.GRADIENT_MODES)),
                          ("grad_batches", choices.grad_batches_error(grad_mode, grad_batches)),
                          ("delta", choices.delta_error(delta))):
        if error is not None:
            value = {"scope": scope, "grad_mode": grad_mode, "grad_batches": grad_batches,
                     "delta": delta}[option]
            raise AuditError(f"{option} = {value!r} is invalid: {error}")
    if top_k < 1:
        raise AuditError(f"top_k = {top_k!r} must be >= 1")
    if workers < 1:
        raise AuditError(f"workers = {workers!r} must be >= 1")
    needs_decay = [m for m in meths if registry.method(m).needs_weight_decay]
    if needs_decay and weight_decay is None:
        raise AuditError(f"method {needs_decay[0]} needs the weight decay the model was trained "
                         "with (its eps, SPEC 3): pass weight_decay= (CLI: --weight-decay), or "
                         f"drop {needs_decay[0]}")
    if weight_decay is not None and not (math.isfinite(weight_decay) and weight_decay >= 0):
        raise AuditError(f"weight_decay = {weight_decay!r} must be a finite number >= 0")
    return Options(meths, rs, tuple(dists))


def check_data(model: nn.Module, sets: dict[str, tuple[np.ndarray, np.ndarray]],
                mean: list[float], std: list[float], device: torch.device,
                num_classes: int | None, class_names: Sequence[str] | None,
                where: Mapping[str, str]) -> int:
    """Check that the model takes every split's images and that every label is one of its
    outputs; returns the number of outputs (the classes). ``AuditError`` naming the split by
    ``where[split]`` (the argument it came from)."""
    shapes = {where[k]: x.shape[1:] for k, (x, _) in sets.items()}
    first = next(iter(shapes))
    for k, s in shapes.items():
        if s != shapes[first]:
            raise AuditError(f"{k} images are {tuple(s)} (H, W, C) but {first} images are "
                             f"{tuple(shapes[first])}; every split must have one image shape")
    c = shapes[first][2]
    if len(mean) != c or len(std) != c:
        raise AuditError(f"mean/std have {len(mean)}/{len(std)} values for images with {c} "
                         "channel(s); give one per channel")
    if not all(math.isfinite(v) for v in [*mean, *std]) or min(std) <= 0:
        raise AuditError(f"mean {mean} / std {std} must be finite with std > 0")
    x, _ = sets["train"]
    probe = DeviceImages(x[:2], np.zeros(min(2, len(x)), np.int64), mean, std, device)
    xb, _ = next(probe.batches(2))
    was = model.training
    model.eval()
    try:
        with torch.no_grad():
            out = model(xb)
    except Exception as e:  # noqa: BLE001 -- any failure means these images do not fit
        raise AuditError(f"the model cannot take the images: a batch of shape "
                         f"{tuple(xb.shape)} (B, C, H, W) from {first} raised "
                         f"{type(e).__name__}: {e}") from e
    finally:
        model.train(was)
    if not isinstance(out, torch.Tensor) or out.ndim != 2:
        raise AuditError(f"the model must return logits (B, classes); on a {tuple(xb.shape)} "
                         f"batch it returned {getattr(out, 'shape', type(out).__name__)}")
    k = int(out.shape[1])
    if num_classes is not None and int(num_classes) != k:
        raise AuditError(f"num_classes = {num_classes} but the model has {k} outputs")
    for split, (_, y) in sets.items():
        name = where[split]
        if len(y) and (y.min() < 0 or y.max() >= k):
            raise AuditError(f"{name} labels run {int(y.min())}..{int(y.max())} but the model has "
                             f"{k} outputs (classes 0..{k - 1}); relabel the data or give the "
                             "model's matching data")
    if class_names is not None and len(class_names) != k:
        raise AuditError(f"class_names has {len(class_names)} names for the model's {k} classes")
    return k


def registry_name(data: Any) -> str | None:
    """``data`` when it names a dataset of prunescope's registry (``mnist``, ``cifar10``...)
    and no file or folder of that name exists, else ``None``."""
    from prunescope.data import names

    if isinstance(data, (str, Path)) and not Path(data).exists() and str(data) in names():
        return str(data)
    return None


def normalisation(x: np.ndarray, mean: Sequence[float] | None, std: Sequence[float] | None,
                  data: Any = None) -> tuple[list[float], list[float]]:
    """Per-channel ``(mean, std)`` on the 0..1 scale: the given ones, else the registry's when
    ``data`` names a registry dataset (:func:`registry_name`), else those of the uint8 NHWC
    images ``x`` (std at least 1e-6)."""
    if (name := registry_name(data)) is not None:
        from prunescope.data import info

        mean = info(name).mean if mean is None else mean
        std = info(name).std if std is None else std
    if mean is None or std is None:
        unit = x.reshape(-1, x.shape[-1]).astype(np.float64) / 255.0
        mean = unit.mean(0) if mean is None else mean
        std = np.maximum(unit.std(0), 1e-6) if std is None else std
    return [float(v) for v in mean], [float(v) for v in std]


