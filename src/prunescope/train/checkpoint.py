"""Checkpoints: weights (and pruning masks) as safetensors plus a JSON sidecar.

``save_checkpoint("run/m.safetensors", model, meta)`` writes

* ``run/m.safetensors``: every ``state_dict`` entry under its own name, and each mask as a
  bool tensor under ``"mask/" + param name``;
* ``run/m.safetensors.json``: ``meta`` (JSON) plus ``prunescope_version`` and
  ``checkpoint_format``.

``meta`` must name ``arch``, ``num_classes``, ``in_channels`` (to rebuild the model) and
``weight_decay`` (the ``eps`` of Undecayed Pruning, SPEC 3); ``image_size`` is used for LeNet-5.
Conventional further keys: ``recipe`` (``Recipe.to_dict()``), ``seed``, ``epochs``,
``best_epoch``, ``metrics``, ``dataset``, ``history``.
"""
from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save
from torch import nn

import prunescope
from prunescope.models import build_model
from prunescope.train.recipe import Recipe

CHECKPOINT_FORMAT = 1
MASK_PREFIX = "mask/"
_REQUIRED = ("arch", "num_classes", "in_channels", "weight_decay")


def sidecar_path(path: str | os.PathLike[str]) -> Path:
    """The JSON sidecar of a checkpoint: ``<path>.json``."""
    return Path(str(path) + ".json")


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, Recipe):
        return obj.to_dict()
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, torch.Tensor):
        return obj.tolist()
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    raise TypeError(f"checkpoint meta value of type {type(obj).__name__} is not JSON-able: {obj!r}")


def save_checkpoint(
    path: str | os.PathLike[str],
    model: nn.Module,
    meta: dict[str, Any],
    masks: dict[str, torch.Tensor] | None = None,
) -> Path:
    """Write ``model``'s weights, optional ``masks`` and ``meta`` (see the module docstring).

    If ``meta`` has a ``recipe`` but no ``weight_decay``, the recipe's is recorded. Both files
    are written to temporary names and renamed, so a crash leaves no half-written checkpoint.
    Returns the path of the safetensors file.
    """
    meta = dict(meta)
    if "weight_decay" not in meta and "recipe" in meta:
        rec = meta["recipe"]
        meta["weight_decay"] = rec.weight_decay if isinstance(rec, Recipe) else rec["weight_decay"]
    missing = [k for k in _REQUIRED if k not in meta]
    if missing:
        raise ValueError(
            f"checkpoint meta lacks {missing}; give arch, num_classes, in_channels (to rebuild "
            "the model) and weight_decay (or a recipe) so pruning can read the decay"
        )
    params = dict(model.named_parameters())
    tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in model.state_dict().items()}
    for name, m in (masks or {}).items():
        if name not in params:
            raise ValueError(f"mask for {name!r} names no parameter of the model")
        if tuple(m.shape) != tuple(params[name].shape):
            raise ValueError(
                f"mask for {name!r} has shape {tuple(m.shape)}, parameter {tuple(params[name].shape)}"
            )
        tensors[MASK_PREFIX + name] = m.detach().to("cpu").bool().contiguous()
    side = dict(meta, prunescope_version=prunescope.__version__,
                checkpoint_format=CHECKPOINT_FORMAT)
    text = json.dumps(side, default=_jsonable, indent=1, sort_keys=True)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    # serialised in memory and written with open() so the file gets the usual umask permissions
    tmp.write_bytes(save(tensors, metadata={"checkpoint_format": str(CHECKPOINT_FORMAT)}))
    side_path = sidecar_path(path)
    side_tmp = side_path.with_name(side_path.name + ".tmp")
    side_tmp.write_text(text + "\n")
    os.replace(tmp, path)
    os.replace(side_tmp, side_path)
    return path


def model_from_meta(meta: dict[str, Any]) -> nn.Module:
    """The model a sidecar describes, freshly built on the CPU: ``build_model(arch,
    num_classes, in_channels, image_size=image_size or 28)`` (weights still to be loaded), or,
    when the sidecar names a ``module`` file (a user's own model audited by
    :func:`prunescope.audit.audit`, saved there with ``torch.save(module)``; :func:`load_checkpoint`
    resolves a relative name against the artifact root, the checkpoint's grandparent folder),
    that module unpickled (its classes must be importable, as for any pickle)."""
    if "module" in meta:
        return torch.load(meta["module"], map_location="cpu", weights_only=False)
    return build_model(
        meta["arch"], int(meta["num_classes"]), int(meta["in_channels"]),
        image_size=int(meta.get("image_size", 28)),
    )


def load_checkpoint(
    path: str | os.PathLike[str],
    device: torch.device | str = "cpu",
    *,
    build: Callable[[dict[str, Any]], nn.Module] = model_from_meta,
) -> tuple[nn.Module, dict[str, Any], dict[str, torch.Tensor] | None]:
    """Read a checkpoint written by :func:`save_checkpoint`.

    Args:
        path: the safetensors file (its sidecar is ``<path>.json``).
        device: where the model and masks go.
        build: ``build(meta) -> nn.Module`` makes the (CPU) model the stored weights are loaded
            into, strictly; default :func:`model_from_meta`. A loader of models whose shapes
            are not the architecture's own (structurally pruned ones,
            :func:`prunescope.prune.load_structured_checkpoint`) passes its own, which may raise
            to reject the sidecar.

    Returns:
        ``(model, meta, masks)``: the rebuilt model with the stored weights (bit-identical) on
        ``device`` in eval mode; the sidecar dict; the masks as bool tensors on ``device``
        keyed by parameter name, or ``None`` if none were saved.
    """
    path = Path(path)
    side_path = sidecar_path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    if not side_path.is_file():
        raise FileNotFoundError(
            f"checkpoint {path} has no sidecar {side_path}; it was not written by save_checkpoint"
        )
    meta = json.loads(side_path.read_text())
    fmt = meta.get("checkpoint_format")
    if fmt != CHECKPOINT_FORMAT:
        raise ValueError(
            f"{side_path} has checkpoint_format {fmt!r}; this prunescope reads {CHECKPOINT_FORMAT}"
        )
    if "module" in meta and not os.path.isabs(meta["module"]):  # <root>/<kind>/<id>.safetensors
        model = build(dict(meta, module=str(path.parent.parent / meta["module"])))
    else:
        model = build(meta)
    tensors = load_file(str(path), device=str(device))
    masks = {k[len(MASK_PREFIX):]: v for k, v in tensors.items() if k.startswith(MASK_PREFIX)}
    state = {k: v for k, v in tensors.items() if not k.startswith(MASK_PREFIX)}
    model = model.to(device)
    model.load_state_dict(state, strict=True)
    model.eval()
    return model, meta, (masks or None)
