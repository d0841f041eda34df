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

Reading never runs code from a file unless the caller says it trusts the file
(``trust_pickle=True``, the command line's ``--trust-pickle``; docs/reliability.md "Checkpoints
never run code"): safetensors and JSON hold no code, a ``.pt`` file is unpickled with
``torch.load(weights_only=True)``, and a sidecar naming a pickled ``module`` (written by
prunescope 0.1's audit) is refused. :func:`load_state_dict` is the one way to read a user's
weights file.
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
from prunescope.errors import UserError
from prunescope.models import build_model
from prunescope.train.recipe import Recipe

CHECKPOINT_FORMAT = 1
MASK_PREFIX = "mask/"
_REQUIRED = ("arch", "num_classes", "in_channels", "weight_decay")


class CheckpointError(UserError, ValueError):
    """A checkpoint that cannot be read safely: truncated or foreign weights, a sidecar that is
    not JSON, or one that names a pickled module without ``trust_pickle``; the message names the
    file and the remedy."""


class CheckpointMismatch(CheckpointError, RuntimeError):
    """Stored weights whose names or shapes do not fit the model the sidecar describes (a
    ``RuntimeError``, as ``load_state_dict`` raises)."""


def _first_line(e: BaseException) -> str:
    return f"{type(e).__name__}: {(str(e).splitlines() or [''])[0][:300]}"


def load_state_dict(path: str | os.PathLike[str], device: torch.device | str = "cpu", *,
                    trust_pickle: bool = False) -> dict[str, torch.Tensor]:
    """The tensors of a weights file: ``.safetensors`` (no code), else a ``torch.save`` file
    read with ``torch.load(weights_only=True)`` (tensors and plain containers only; a file
    holding anything else is refused). ``trust_pickle=True`` (``--trust-pickle``) unpickles it
    fully, which runs whatever code the file names: only for a file the user trusts.

    Returns ``{name: tensor}`` on ``device`` for safetensors; for a ``.pt`` file the object as
    ``torch.load`` returns it (usually such a state dict; the caller checks). Raises
    :class:`CheckpointError` (one line naming the file) for a truncated or foreign file."""
    path = Path(path)
    try:
        if path.suffix == ".safetensors":
            return load_file(str(path), device=str(device))
        # the one place a user's .pt file is unpickled; fully only when the user trusts it
        return torch.load(path, map_location=device, weights_only=not trust_pickle)
    except Exception as e:  # noqa: BLE001 -- truncated / foreign files raise many types
        hint = ("" if trust_pickle or path.suffix == ".safetensors" else
                "; a file that pickles more than tensors is refused unless you trust it "
                "(--trust-pickle, trust_pickle=True: it can run code)")
        raise CheckpointError(f"{path} cannot be read as weights ({_first_line(e)}); it may be "
                              f"truncated or not a weights file{hint}") from e


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


def model_from_meta(meta: dict[str, Any], *, trust_pickle: bool = False) -> nn.Module:
    """The model a sidecar describes, freshly built on the CPU: ``build_model(arch,
    num_classes, in_channels, image_size=image_size or 28)`` (weights still to be loaded).

    A sidecar naming a ``module`` file (a user model audited by prunescope 0.1, pickled with
    ``torch.save(module)``; :func:`load_checkpoint` resolves a relative name against the
    checkpoint's grandparent folder) is refused with :class:`CheckpointError`: unpickling it
    runs any code the file names. ``trust_pickle=True`` unpickles it (its classes must be
    importable)."""
    if "module" in meta:
        if not trust_pickle:
            raise CheckpointError(
                f"the sidecar names a pickled module {meta['module']!r}; prunescope "
                "does not unpickle it, as that can run any code the file holds. Load it only if "
                "you trust whoever wrote it: --trust-pickle (trust_pickle=True)")
        return torch.load(meta["module"], map_location="cpu", weights_only=False)
    return build_model(
        meta["arch"], int(meta["num_classes"]), int(meta["in_channels"]),
        image_size=int(meta.get("image_size", 28)),
    )


def load_checkpoint(
    path: str | os.PathLike[str],
    device: torch.device | str = "cpu",
    *,
    build: Callable[[dict[str, Any]], nn.Module] | None = None,
    trust_pickle: bool = False,
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
        trust_pickle: with the default ``build``, unpickle a ``module`` the sidecar names
            (see :func:`model_from_meta`); ``False`` refuses such a sidecar.

    Returns:
        ``(model, meta, masks)``: the rebuilt model with the stored weights (bit-identical) on
        ``device`` in eval mode; the sidecar dict; the masks as bool tensors on ``device``
        keyed by parameter name, or ``None`` if none were saved.

    Raises:
        FileNotFoundError: no checkpoint or no sidecar at ``path``.
        CheckpointError: a sidecar that is not a JSON object or of another format, a pickled
            module without ``trust_pickle``, weights that are truncated or foreign.
    """
    path = Path(path)
    side_path = sidecar_path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    if not side_path.is_file():
        raise FileNotFoundError(
            f"checkpoint {path} has no sidecar {side_path}; it was not written by save_checkpoint"
        )
    try:
        meta = json.loads(side_path.read_bytes())
    except (ValueError, RecursionError) as e:  # not UTF-8, not JSON, nested too deep
        raise CheckpointError(f"{side_path} is not a checkpoint sidecar ({_first_line(e)}); "
                              "keep the .json `prunescope train` wrote beside it") from e
    if not isinstance(meta, dict):
        raise CheckpointError(f"{side_path} holds a JSON {type(meta).__name__}, not a "
                              "checkpoint sidecar (an object)")
    fmt = meta.get("checkpoint_format")
    if fmt != CHECKPOINT_FORMAT:
        raise CheckpointError(
            f"{side_path} has checkpoint_format {fmt!r}; this prunescope reads {CHECKPOINT_FORMAT}"
        )
    if build is None:
        def build(meta: dict[str, Any]) -> nn.Module:
            module = meta.get("module")
            if isinstance(module, str) and not os.path.isabs(module):  # <root>/<kind>/<id>.safetensors
                meta = dict(meta, module=str(path.parent.parent / module))
            return model_from_meta(meta, trust_pickle=trust_pickle)
    try:
        model = build(meta)
    except CheckpointError as e:
        raise CheckpointError(f"{side_path}: {e}") from e
    except (KeyError, TypeError) as e:  # a sidecar without arch/num_classes/in_channels
        raise CheckpointError(f"{side_path} does not describe a model ({_first_line(e)}); keep "
                              "the .json `prunescope train` wrote beside the weights") from e
    try:
        tensors = load_file(str(path), device=str(device))
    except Exception as e:  # noqa: BLE001 -- truncated / foreign files raise many types
        raise CheckpointError(f"{path} cannot be read as safetensors weights ({_first_line(e)}); "
                              "it may be truncated: copy or write it again") from e
    masks = {k[len(MASK_PREFIX):]: v for k, v in tensors.items() if k.startswith(MASK_PREFIX)}
    state = {k: v for k, v in tensors.items() if not k.startswith(MASK_PREFIX)}
    model = model.to(device)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise CheckpointMismatch(f"the weights in {path} do not fit the model its sidecar describes "
                              f"({(str(e).splitlines() + [''])[1].strip() or _first_line(e)}); "
                              "keep each checkpoint with its own .json") from e
    model.eval()
    return model, meta, (masks or None)
