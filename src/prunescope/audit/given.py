"""The models and test data :func:`prunescope.audit.compare` measures, read and counted:
:func:`load_model` (its nonzero parameters counted from the tensors), :func:`read_test_data`
and the input normalisation.

Models may be given as ``nn.Module`` objects or as files (:func:`load_model`):

* a prunescope checkpoint (``.safetensors`` with its ``.json`` sidecar);
* a state dict (``.safetensors``, or ``.pt``/``.pth`` read with ``torch.load(weights_only=True)``)
  loaded into ``build()``: plain weights whose zeros are the pruning, ``torch.nn.utils.prune``'s
  ``<name>_orig`` + ``<name>_mask`` pairs (folded to ``orig * mask``), or weights of a
  structurally pruned model with narrower layers (``build()``'s model is narrowed to the stored
  shapes with Torch-Pruning's dependency graph, then loaded strictly);
* only with ``trust_pickle=True`` (CLI ``--trust-pickle``), for files the user trusts: a pickled
  whole module (``torch.save(model)``) or Torch-Pruning's ``tp.state_dict(model)`` (loaded into
  ``build()`` by ``tp.load_state_dict``); both can run code when read, so by default they are
  refused with a one-line message naming the flag.

Every input is checked before any evaluation: each file readable, every model taking the images,
every model with the dense model's number of outputs, every label one of them.
"""
from __future__ import annotations

import copy
import pickle
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from prunescope.audit.inputs import AuditError, as_arrays, normalisation, registry_name
from prunescope.audit.run import load_model_file

ModelLike = Any  # nn.Module | str | Path
Builder = Callable[[], nn.Module]

#: the label pruned models get when the caller names none (one prune-potential curve)
GIVEN = "given"
#: the flag that lets :func:`load_model` read pickled files (CLI ``--trust-pickle``)
TRUST_FLAG = "--trust-pickle"


@dataclass(frozen=True)
class LoadedModel:
    """A model ready to evaluate and what its tensors say.

    Attributes:
        model: the ``nn.Module`` in eval mode, plain (no pruning hooks).
        name: a label (the file name, or ``model<i>``).
        source: where it came from (``module``, ``prunescope checkpoint``, ``state dict``,
            ``torch.nn.utils.prune state dict``, ``narrowed state dict``, ``pickled module``,
            ``Torch-Pruning state``).
        params_total: its scalar parameters (every tensor, SPEC 3's numerator).
        params_nonzero: those that are not exactly zero.
    """

    model: nn.Module
    name: str
    source: str
    params_total: int
    params_nonzero: int


def _counted(model: nn.Module, name: str, source: str) -> LoadedModel:
    model.eval()
    with torch.no_grad():
        total = sum(p.numel() for p in model.parameters())
        nonzero = sum(int(torch.count_nonzero(p)) for p in model.parameters())
    return LoadedModel(model, name, source, total, nonzero)


def fold_torch_prune(state: Mapping[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], bool]:
    """A ``torch.nn.utils.prune`` state dict (``<name>_orig`` + ``<name>_mask``) as the plain
    one: ``<name> = <name>_orig * <name>_mask``; other entries unchanged. Returns ``(state,
    whether any pair was folded)``."""
    out = dict(state)
    folded = False
    for key in [k for k in state if k.endswith("_orig")]:
        base = key[: -len("_orig")]
        if base + "_mask" in state:
            out[base] = state[key] * state[base + "_mask"].to(state[key].dtype)
            del out[key], out[base + "_mask"]
            folded = True
    return out, folded


def narrow_to(model: nn.Module, state: Mapping[str, torch.Tensor], example: torch.Tensor) -> bool:
    """Remove output channels of ``model``'s convolutions and linear layers (with everything
    coupled to them: BatchNorm, the next layers' inputs, residual partners) until each layer's
    width is that of ``state[<layer>.weight]``: Torch-Pruning's dependency graph, so any
    architecture a structured pruner could have narrowed is narrowed the same way. Which
    channels go does not matter, the stored weights replace them. Returns whether anything was
    narrowed."""
    import torch_pruning as tp

    graph = tp.DependencyGraph().build_dependency(model, example_inputs=example)
    narrowed = False
    for name, module in model.named_modules():
        key = f"{name}.weight"
        if not isinstance(module, (nn.Conv2d, nn.Linear)) or key not in state:
            continue
        want, have = int(state[key].shape[0]), int(module.weight.shape[0])
        if want < have:
            fn = (tp.prune_conv_out_channels if isinstance(module, nn.Conv2d)
                  else tp.prune_linear_out_channels)
            graph.get_pruning_group(module, fn, idxs=list(range(want, have))).prune()
            narrowed = True
    return narrowed


def _read_file(path: Path, trust_pickle: bool) -> Any:
    """The object in ``path`` through the one weights loader
    (:func:`prunescope.train.checkpoint.load_state_dict`: safetensors, or ``torch.load`` with
    ``weights_only=True``; pickled objects only with ``trust_pickle``)."""
    from prunescope.train.checkpoint import CheckpointError, load_state_dict

    try:
        return load_state_dict(path, "cpu", trust_pickle=trust_pickle)
    except CheckpointError as e:
        if isinstance(e.__cause__, pickle.UnpicklingError):
            raise AuditError(
                f"{path} is a pickled object (a whole module, or Torch-Pruning's tp.state_dict), "
                f"which can run code when read, so it is refused; if you trust the file pass "
                f"{TRUST_FLAG} (Python: trust_pickle=True), or save model.state_dict() instead"
            ) from e
        raise AuditError(f"{e}; save it again with torch.save(model.state_dict(), path)") from e


def load_model(model: ModelLike, *, build: Builder | None = None, trust_pickle: bool = False,
               example: torch.Tensor | None = None, name: str | None = None) -> LoadedModel:
    """One model of a comparison, on the CPU in eval mode (module docstring: accepted forms).

    Args:
        model: an ``nn.Module`` (used as it is, pruning hooks folded) or a file.
        build: ``build() -> nn.Module`` making the architecture a state dict loads into.
        trust_pickle: allow pickled files (a whole module, ``tp.state_dict``).
        example: one input batch ``(1, C, H, W)``, needed to narrow ``build()``'s model to a
            structurally pruned state dict.
        name: the label (default: the file name).

    Raises:
        AuditError: one line naming the file and the way forward.
    """
    from prunescope.prune.interop import from_torch_prune

    if isinstance(model, nn.Module):
        # a copy: the caller's module keeps its hooks and device (the weights a live
        # torch.nn.utils.prune hook computed are not graph leaves, so they are copied detached)
        computed = {id(t): t.detach() for m in model.modules() for t in vars(m).values()
                    if isinstance(t, torch.Tensor) and not t.is_leaf}
        model = copy.deepcopy(model, computed).cpu()
        masks = from_torch_prune(model)  # a live torch.nn.utils.prune model becomes plain
        return _counted(model, name or type(model).__name__,
                        "torch.nn.utils.prune module" if masks else "module")
    path = Path(model)
    label = name or path.name
    if not path.is_file():
        raise AuditError(f"no model file at {path}")
    if path.suffix == ".safetensors" and Path(f"{path}.json").is_file():

        net, _, _ = load_model_file(path)
        return _counted(net.cpu(), label, "prunescope checkpoint")
    obj = _read_file(path, trust_pickle)
    if isinstance(obj, nn.Module):
        from_torch_prune(obj)
        return _counted(obj.cpu(), label, "pickled module")
    if not isinstance(obj, Mapping):
        raise AuditError(f"{path} holds a {type(obj).__name__}, not a state dict or a module; save "
                     "it with torch.save(model.state_dict(), path)")
    if build is None:
        raise AuditError(f"{path} holds weights but no architecture: give the builder of its model "
                     "(CLI --model package.module:callable; Python build=)")
    net = build()
    if "full_state_dict" in obj and "attributions" in obj:  # tp.state_dict(model), trusted
        import torch_pruning as tp

        tp.load_state_dict(net, state_dict=obj)
        return _counted(net.cpu(), label, "Torch-Pruning state")
    state = obj["state_dict"] if isinstance(obj.get("state_dict"), Mapping) else obj
    state, folded = fold_torch_prune(state)
    source = "torch.nn.utils.prune state dict" if folded else "state dict"
    if example is not None and any(
            k in state and tuple(state[k].shape) != tuple(v.shape)
            for k, v in net.state_dict().items()):
        try:
            if narrow_to(net, state, example):
                source = "narrowed " + source
        except Exception as e:  # noqa: BLE001 -- a graph Torch-Pruning cannot trace
            raise AuditError(f"the weights in {path} have other shapes than the model build() makes "
                         f"and it cannot be narrowed to them ({type(e).__name__}: {e}); give "
                         "this checkpoint its own builder (CLI: one --model per file)") from e
    try:
        net.load_state_dict(state)
    except RuntimeError as e:
        lines = str(e).splitlines()
        raise AuditError(f"the weights in {path} do not fit the model build() makes: "
                     f"{(lines[1] if len(lines) > 1 else lines[0]).strip()}") from e
    return _counted(net.cpu(), label, source)


# ---- data -------------------------------------------------------------------------------------
def read_test_data(data: Any, class_names: Sequence[str] | None = None
                   ) -> tuple[np.ndarray, np.ndarray, tuple[str, ...] | None]:
    """``(x uint8 NHWC, y int64, class names or None)`` of the test images: a registry dataset's
    test split by name (``"mnist"``), an image-folder layout (``DATA/test/<class>/`` or
    ``DATA/<class>/``, :mod:`prunescope.data.folders`), a folder holding ``test.npz``, or
    anything :func:`prunescope.audit.as_arrays` reads."""
    from prunescope.data.folders import read_image_folder, split_folder

    if (name := registry_name(data)) is not None:
        from prunescope.data import load

        try:
            s = load(name, "test")
        except Exception as e:  # noqa: BLE001 -- one line: what is missing and how to get it
            raise AuditError(f"dataset {name} is not available ({e}); run `prunescope data fetch "
                         f"{name}`") from e
        return s.x, s.y, s.classes
    if isinstance(data, (str, Path)) and Path(data).is_dir():
        root = split_folder(data, "test")
        if root is not None:
            s = read_image_folder(root, "test")
            return s.x, s.y, s.classes
        if not (Path(data) / "test.npz").is_file():
            raise AuditError(f"{data} holds no test images: give a folder with test/<class>/ (or "
                         "<class>/) folders of PNG/JPEG images, or with test.npz (arrays x, y)")
        data = Path(data) / "test.npz"
    x, y = as_arrays(data, "test data")
    return x, y, tuple(class_names) if class_names is not None else None

