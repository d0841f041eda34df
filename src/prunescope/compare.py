"""Compare models a user already has: a dense model and pruned versions of it (issue 27).

``compare(dense, pruned_models, test_data, ...)`` prunes and fine-tunes nothing: it loads the
given models, counts the compression ratio each pruned model reaches from its tensors, evaluates
every model on every test distribution (SPEC 7) and returns the audit's per-class views (recall
and its change, balances, alpha, worst classes, prune potential across the given models by their
measured ratios, functional agreement, the images whose prediction pruning changed) with the
statistics one model pair allows (:mod:`prunescope.stats.pairs`: per-class exact McNemar tests,
Holm-corrected, and stratified-bootstrap 99 % intervals of alpha, each class's recall change and
max EAG). With several seeds (one dense model and its pruned models per seed) the intervals are
the study's t-based ones across seeds instead.

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
import math
import pickle
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from prunescope import metrics

ModelLike = Any  # nn.Module | str | Path
Builder = Callable[[], nn.Module]

#: the label pruned models get when the caller names none (one prune-potential curve)
GIVEN = "given"
#: the flag that lets :func:`load_model` read pickled files (CLI ``--trust-pickle``)
TRUST_FLAG = "--trust-pickle"
#: resamples of the single-pair bootstrap
N_RESAMPLES = 2000


def _error(msg: str) -> Exception:
    from prunescope.audit import AuditError

    return AuditError(msg)


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
            raise _error(
                f"{path} is a pickled object (a whole module, or Torch-Pruning's tp.state_dict), "
                f"which can run code when read, so it is refused; if you trust the file pass "
                f"{TRUST_FLAG} (Python: trust_pickle=True), or save model.state_dict() instead"
            ) from e
        raise _error(f"{e}; save it again with torch.save(model.state_dict(), path)") from e


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
        raise _error(f"no model file at {path}")
    if path.suffix == ".safetensors" and Path(f"{path}.json").is_file():
        from prunescope.audit import load_model_file

        net, _, _ = load_model_file(path)
        return _counted(net.cpu(), label, "prunescope checkpoint")
    obj = _read_file(path, trust_pickle)
    if isinstance(obj, nn.Module):
        from_torch_prune(obj)
        return _counted(obj.cpu(), label, "pickled module")
    if not isinstance(obj, Mapping):
        raise _error(f"{path} holds a {type(obj).__name__}, not a state dict or a module; save "
                     "it with torch.save(model.state_dict(), path)")
    if build is None:
        raise _error(f"{path} holds weights but no architecture: give the builder of its model "
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
            raise _error(f"the weights in {path} have other shapes than the model build() makes "
                         f"and it cannot be narrowed to them ({type(e).__name__}: {e}); give "
                         "this checkpoint its own builder (CLI: one --model per file)") from e
    try:
        net.load_state_dict(state)
    except RuntimeError as e:
        lines = str(e).splitlines()
        raise _error(f"the weights in {path} do not fit the model build() makes: "
                     f"{(lines[1] if len(lines) > 1 else lines[0]).strip()}") from e
    return _counted(net.cpu(), label, source)


# ---- data -------------------------------------------------------------------------------------
def registry_name(data: Any) -> str | None:
    """``data`` when it names a dataset of prunescope's registry (``mnist``, ``cifar10``...)
    and no file or folder of that name exists, else ``None``."""
    from prunescope.data import names

    if isinstance(data, (str, Path)) and not Path(data).exists() and str(data) in names():
        return str(data)
    return None


def read_test_data(data: Any, class_names: Sequence[str] | None = None
                   ) -> tuple[np.ndarray, np.ndarray, tuple[str, ...] | None]:
    """``(x uint8 NHWC, y int64, class names or None)`` of the test images: a registry dataset's
    test split by name (``"mnist"``), an image-folder layout (``DATA/test/<class>/`` or
    ``DATA/<class>/``, :mod:`prunescope.data.folders`), a folder holding ``test.npz``, or
    anything :func:`prunescope.audit.as_arrays` reads."""
    from prunescope.audit import as_arrays
    from prunescope.data.folders import read_image_folder, split_folder

    if (name := registry_name(data)) is not None:
        from prunescope.data import load

        try:
            s = load(name, "test")
        except Exception as e:  # noqa: BLE001 -- one line: what is missing and how to get it
            raise _error(f"dataset {name} is not available ({e}); run `prunescope data fetch "
                         f"{name}`") from e
        return s.x, s.y, s.classes
    if isinstance(data, (str, Path)) and Path(data).is_dir():
        root = split_folder(data, "test")
        if root is not None:
            s = read_image_folder(root, "test")
            return s.x, s.y, s.classes
        if not (Path(data) / "test.npz").is_file():
            raise _error(f"{data} holds no test images: give a folder with test/<class>/ (or "
                         "<class>/) folders of PNG/JPEG images, or with test.npz (arrays x, y)")
        data = Path(data) / "test.npz"
    x, y = as_arrays(data, "test data")
    return x, y, tuple(class_names) if class_names is not None else None


def normalisation(x: np.ndarray, mean: Sequence[float] | None, std: Sequence[float] | None,
                  data: Any = None) -> tuple[list[float], list[float]]:
    """Per-channel ``(mean, std)`` on the 0..1 scale: the given ones, else the registry's when
    ``data`` names a registry dataset, else those of the uint8 NHWC images ``x`` (std at least
    1e-6)."""
    if (name := registry_name(data)) is not None:
        from prunescope.data import info

        mean = info(name).mean if mean is None else mean
        std = info(name).std if std is None else std
    unit = x.reshape(-1, x.shape[-1]).astype(np.float64) / 255.0
    mean = unit.mean(0) if mean is None else mean
    std = np.maximum(unit.std(0), 1e-6) if std is None else std
    return [float(v) for v in mean], [float(v) for v in std]


# ---- the result -------------------------------------------------------------------------------
@dataclass(frozen=True)
class CompareResult:
    """What :func:`compare` measured (rates are fractions in [0, 1]).

    Attributes:
        models: one row per given model: ``seed``, ``role`` (dense/pruned), ``method`` (its
            label), ``name``, ``source`` (how it was read), ``params_total``,
            ``params_nonzero``, ``achieved_ratio`` (dense parameters / its nonzero parameters,
            counted from the tensors; 1.0 for the dense), ``accuracy`` (nominal test set).
        counts, classwise, alphas, worst_classes, prune_potential, agreement, changed_images:
            the audit's views (:class:`prunescope.audit.AuditResult`), keyed by ``method`` and
            ``ratio`` = the pruned model's achieved ratio (with several seeds, also ``seed``).
        mcnemar: per (method, ratio, distribution, class), single seed only: the exact
            McNemar test of dense vs pruned (:func:`prunescope.stats.pairs.mcnemar_by_class`).
        intervals: per (method, ratio, distribution, statistic): ``estimate``, ``ci_low``,
            ``ci_high``, ``level``, ``ci_method`` (``bootstrap over test images`` for one seed;
            ``t across seeds`` for several: alpha only, :func:`prunescope.analysis.cell_ci`).
        class_intervals: per (method, ratio, distribution, class), single seed only: recall
            change, EAG and the bootstrap interval of the recall change.
        uncertainty: what the intervals and tests measure, in one sentence.
        out_dir: where the tables (and the report) were written, or ``None``.
        report: ``report.html``'s path when one was written.
    """

    models: pd.DataFrame
    counts: pd.DataFrame
    classwise: pd.DataFrame
    alphas: pd.DataFrame
    worst_classes: pd.DataFrame
    prune_potential: pd.DataFrame
    agreement: pd.DataFrame
    changed_images: pd.DataFrame
    mcnemar: pd.DataFrame
    intervals: pd.DataFrame
    class_intervals: pd.DataFrame
    uncertainty: str
    out_dir: Path | None = None
    report: Path | None = None


#: the frames of a :class:`CompareResult` written as ``<out_dir>/<name>.csv``
TABLES = ("models", "classwise", "alphas", "worst_classes", "prune_potential", "agreement",
          "changed_images", "mcnemar", "intervals", "class_intervals")


def _seed_lists(dense: Any, pruned: Any) -> tuple[list[Any], list[list[Any]]]:
    """``(dense per seed, pruned per seed)``: one dense model and a list of pruned ones, or a
    list of dense models (seeds) and a list of as many lists."""
    if isinstance(dense, (list, tuple)):
        if not isinstance(pruned, (list, tuple)) or len(pruned) != len(dense) or not all(
                isinstance(p, (list, tuple)) for p in pruned):
            raise _error(f"with {len(dense)} dense models (seeds) give as many lists of pruned "
                         "models, one per seed, in the same order")
        return list(dense), [list(p) for p in pruned]
    return [dense], [list(pruned)]


def compare(
    dense: ModelLike | Sequence[ModelLike],
    pruned_models: Sequence[ModelLike] | Sequence[Sequence[ModelLike]],
    test_data: Any,
    *,
    methods: Sequence[str] | None = None,
    names: Sequence[str] | None = None,
    build: Builder | Sequence[Builder | None] | None = None,
    trust_pickle: bool = False,
    distributions: Sequence[str] = ("nominal",),
    class_names: Sequence[str] | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    seed: int = 0,
    n_resamples: int = N_RESAMPLES,
    top_k: int = 3,
    delta: float = metrics.DEFAULT_DELTA,
    out_dir: str | Path | None = None,
    report: bool = False,
    name: str = "user-model",
    dataset: str = "user-data",
) -> CompareResult:
    """Measure what the given pruning did to ``dense``, per class, without pruning anything.

    Args:
        dense: the dense model (``nn.Module`` or file, :func:`load_model`), or one per seed.
        pruned_models: its pruned versions (for several seeds: one list per seed, the i-th
            models of every seed pruned the same way).
        test_data: test images: a registry dataset's name (``"mnist"``: its test split, its
            normalisation by default), a folder (``test/<class>/*.png``, ``<class>/*.png`` or
            ``test.npz``) or anything :func:`prunescope.audit.as_arrays` reads.
        methods: a label per pruned model (per position with seeds), e.g. ``"l1"``; models
            with one label form one prune-potential curve. Default: all ``"given"``.
        names: a name per pruned model for the tables (default: its file name, or
            ``pruned<i>`` for a module).
        build: ``build() -> nn.Module`` for state-dict files: one for every file, or a list
            with one per model (dense first, then the pruned ones; ``None`` where not needed).
            A pruned state dict without a builder loads into a copy of its dense model.
        trust_pickle: read pickled files (whole modules, Torch-Pruning's ``tp.state_dict``);
            only for files you trust.
        distributions: test distributions (``"nominal"`` always included; SPEC 7 names).
        class_names: names of the classes (default: the image folders' names, else ids).
        mean, std: the models' per-channel input normalisation on the 0..1 scale (default:
            a registry dataset's, else the test images' own statistics; zeros and ones for raw
            [0, 1] inputs).
        seed: seeds the corruptions and the bootstrap.
        n_resamples: bootstrap resamples (single seed).
        top_k: classes per model in ``worst_classes``.
        delta: prune-potential tolerance (as :func:`prunescope.audit.audit`).
        out_dir: write every table as CSV there (and ``report/report.html`` with ``report``).
        name, dataset: labels used as ``arch`` and ``dataset`` in the frames and the report.

    Raises:
        AuditError: one line, before any evaluation, for a bad file, mismatched outputs or
            class counts, images a model cannot take, duplicate labels.
    """
    from prunescope.audit import AuditError, _check_data, _summarise
    from prunescope.data.corruptions import Distribution, apply_distribution
    from prunescope.data.device import DeviceImages
    from prunescope.train import predict

    dense_list, pruned_lists = _seed_lists(dense, pruned_models)
    n_pruned = len(pruned_lists[0])
    if n_pruned == 0 or any(len(p) != n_pruned for p in pruned_lists):
        raise _error("give at least one pruned model (and as many for every seed)")
    labels = list(methods) if methods is not None else [GIVEN] * n_pruned
    if "dense" in labels:
        raise _error("'dense' names the dense model; give the pruned models other method labels")
    if len(labels) != n_pruned or (names is not None and len(names) != n_pruned):
        raise _error(f"give one method label and name per pruned model ({n_pruned}), got "
                     f"{len(labels)} and {n_pruned if names is None else len(names)}")
    builds = list(build) if isinstance(build, (list, tuple)) else [build] * (1 + n_pruned)
    if len(builds) != 1 + n_pruned:
        raise _error(f"give one builder for every model or {1 + n_pruned} (dense, then each "
                     f"pruned model), got {len(builds)}")
    dists: list[str] = []
    for d in ["nominal", *distributions]:
        try:
            dname = Distribution.parse(d).name
        except (TypeError, ValueError) as e:
            raise _error(f"distribution {d!r} is invalid: {e}") from e
        dists += [dname] if dname not in dists else []

    x, y, class_names = read_test_data(test_data, class_names)
    mean, std = normalisation(x, mean, std, test_data)
    example = next(DeviceImages(x[:1], y[:1], mean, std, "cpu").batches(1))[0]

    # every model read and checked before any evaluation
    models: list[tuple[int, str, LoadedModel]] = []
    for s, (d, ps) in enumerate(zip(dense_list, pruned_lists)):
        for i, m in enumerate([d, *ps]):
            # a pruned state dict without a builder loads into (a copy of) its dense model
            b = builds[i] if builds[i] is not None or i == 0 else \
                (lambda net=dense_net: copy.deepcopy(net))
            given = None if i == 0 or names is None else names[i - 1]
            lm = load_model(m, build=b, trust_pickle=trust_pickle, example=example,
                            name=given or (None if not isinstance(m, nn.Module) else
                                           "dense" if i == 0 else f"pruned{i}"))
            models.append((s, "dense" if i == 0 else labels[i - 1], lm))
            dense_net = lm.model if i == 0 else dense_net
    outputs = None
    for s, label, lm in models:
        try:
            k = _check_data(lm.model, {"train": (x, y)}, mean, std, torch.device("cpu"), None,
                            class_names, {"train": "test data"})
        except AuditError as e:
            raise _error(f"{lm.name}: {e}") from e
        if outputs is None:
            outputs = k
        elif k != outputs:
            raise _error(f"{lm.name} has {k} outputs but the dense model has {outputs}: a pruned "
                         "model must classify the same classes")
    assert outputs is not None
    n_cls = outputs

    dense_params = {s: lm.params_total for s, label, lm in models if label == "dense"}
    rows = []
    for s, label, lm in models:
        ratio = 1.0 if label == "dense" else dense_params[s] / max(1, lm.params_nonzero)
        rows.append({"seed": s, "role": "dense" if label == "dense" else "pruned",
                     "method": label, "name": lm.name, "source": lm.source,
                     "params_total": lm.params_total, "params_nonzero": lm.params_nonzero,
                     "achieved_ratio": ratio})
    table = pd.DataFrame(rows)
    n_seeds = len(dense_list)
    # the cell ratio of a position: its achieved ratio (mean over seeds), 4 significant digits
    table["ratio"] = table.groupby(["method", table.index % (1 + n_pruned)])[
        "achieved_ratio"].transform("mean").map(lambda r: float(f"{r:.4g}"))
    dup = table[table.role == "pruned"].drop_duplicates(["seed", "method", "ratio"], keep=False)
    if len(dup) != int((table.role == "pruned").sum()):
        raise _error("two pruned models have the same label and the same achieved ratio; give "
                     "them different method labels (CLI --methods)")

    # evaluate: predictions (models x N) per distribution
    preds: dict[str, np.ndarray] = {}
    for d in dists:
        xd = torch.from_numpy(x) if d == "nominal" else apply_distribution(
            torch.from_numpy(x), d, seed, quantize="truncate")
        images = DeviceImages(xd, y, mean, std, "cpu")
        with torch.no_grad():
            preds[d] = np.stack([predict(lm.model, images) for _, _, lm in models])
    keys = pd.DataFrame({"dataset": dataset, "arch": name,
                         "method": table.method.where(table.role == "pruned", "dense"),
                         "ratio": table.ratio.where(table.role == "pruned", 1.0),
                         "model": table.seed})
    counts = pd.concat([metrics.from_predictions(y, preds[d][j], n_cls, distribution=d,
                                                 **keys.iloc[j].to_dict())
                        for d in dists for j in range(len(models))], ignore_index=True)
    table["accuracy"] = (preds["nominal"] == y).mean(1)

    agree, changed = [], []
    dense_row = {s: j for j, (s, label, _) in enumerate(models) if label == "dense"}
    for d in dists:
        for j, (s, label, _) in enumerate(models):
            if label == "dense":
                continue
            p, dp = preds[d][j], preds[d][dense_row[s]]
            key = {"method": label, "ratio": float(table.ratio[j]), "distribution": d}
            agree.append({**key, "model": s,
                          "agreement": float(metrics.functional_agreement(p, dp))})
            idx = np.flatnonzero(p != dp)
            changed.append(pd.DataFrame({**key, "model": s, "index": idx, "label": y[idx],
                                         "dense_label": dp[idx], "pruned_label": p[idx]}))
    agreement = pd.DataFrame(agree)
    # the audit's views of each seed's models (the audit's tables have no seed key)
    parts = [_summarise(counts[counts.model == s], table[table.seed == s],
                        agreement[agreement.model == s].drop(columns="model"), class_names,
                        delta, top_k, (), None, None) for s in range(n_seeds)]
    views = {v: pd.concat([getattr(p, v).assign(seed=s) if n_seeds > 1 else getattr(p, v)
                           for s, p in enumerate(parts)], ignore_index=True)
             for v in ("classwise", "alphas", "worst_classes", "prune_potential")}
    changed_images = pd.concat(changed, ignore_index=True)
    if n_seeds == 1:
        agreement, changed_images = (f.drop(columns="model") for f in (agreement, changed_images))
    else:
        agreement, changed_images = (f.rename(columns={"model": "seed"})
                                     for f in (agreement, changed_images))

    mc, iv, civ = _pair_statistics(models, table, preds, y, n_cls, dists, seed, n_resamples,
                                   views["alphas"], n_seeds)
    if n_seeds == 1:
        from prunescope.stats.pairs import PAIR_UNCERTAINTY

        uncertainty = PAIR_UNCERTAINTY
    else:
        uncertainty = (f"seed-to-seed variation: t-based 99 % intervals of alpha across the "
                       f"{n_seeds} seeds (the study's statistics)")
    result = CompareResult(table, counts, views["classwise"], views["alphas"],
                           views["worst_classes"], views["prune_potential"], agreement,
                           changed_images, mc, iv, civ, uncertainty)
    if out_dir is not None:
        result = _write(result, Path(out_dir), report, name, delta)
    return result


def audit_channels(
    model: ModelLike,
    test_data: Any,
    *,
    ratios: Sequence[float],
    importances: Sequence[str] = ("l1", "taylor"),
    train_data: Any = None,
    build: Builder | None = None,
    trust_pickle: bool = False,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    taylor_images: int = 256,
    **kwargs: Any,
) -> CompareResult:
    """Channel-prune ``model`` for every importance at every ratio through Torch-Pruning
    (:func:`prunescope.prune.channels.prune_channels`; any architecture it can trace) and
    :func:`compare` the pruned models with it (no fine-tuning).

    ``models`` gains per pruned model: ``requested_ratio``, ``channel_fraction``,
    ``latency_before_ms``, ``latency_after_ms`` (CPU forward of a batch of 64, fastest of 20)
    and ``latency_batch``; ``method`` is ``<importance>-channel``, ``name``
    ``<importance>-channel-x<requested ratio>``.

    Args:
        model: the dense model (``nn.Module`` or file, :func:`load_model`).
        test_data: as :func:`compare` (measured only).
        ratios: parameter ratios (before / after), each > 1.
        importances: ``"l1"`` and/or ``"taylor"``.
        train_data: images for Taylor's gradient (the first ``taylor_images`` of them, in
            order); a registry dataset's name (its training split), a folder with
            ``train/<class>/`` or ``train.npz``, or anything
            :func:`prunescope.audit.as_arrays` reads. Required for ``"taylor"``.
        build, trust_pickle: how to read a model file (:func:`load_model`).
        mean, std: input normalisation (default: the test images' statistics).
        kwargs: passed on to :func:`compare`.
    """
    from prunescope.audit import as_arrays
    from prunescope.data.device import DeviceImages
    from prunescope.prune.channels import IMPORTANCES, prune_channels
    from prunescope.prune.masks import UnreachableRatioError

    bad = [i for i in importances if i not in IMPORTANCES]
    if bad or not importances:
        raise _error(f"importance {bad[0] if bad else 'none'!r}: choose from "
                     f"{', '.join(IMPORTANCES)}")
    if not ratios or any(not (math.isfinite(float(r)) and float(r) > 1) for r in ratios):
        raise _error(f"ratios {list(ratios)}: give parameter ratios (before / after) > 1")
    x, y, classes = read_test_data(test_data, kwargs.pop("class_names", None))
    mean, std = normalisation(x, mean, std, test_data)
    example = next(DeviceImages(x[:1], y[:1], mean, std, "cpu").batches(1))[0]
    dense = load_model(model, build=build, trust_pickle=trust_pickle, example=example).model
    batches = None
    if "taylor" in importances:
        if train_data is None:
            raise _error("taylor importance needs training images (train_data=; CLI: a "
                         "train/ folder or train.npz beside the test data); or use l1 only")
        if (rname := registry_name(train_data)) is not None:
            from prunescope.data import load

            full = load(rname, "train")
            train_data = (full.x, full.y)
        elif isinstance(train_data, (str, Path)) and Path(train_data).is_dir():
            from prunescope.data.folders import read_image_folder, split_folder

            root = split_folder(train_data, "train")
            train_data = (read_image_folder(root, "train", classes) if root is not None
                          else Path(train_data) / "train.npz")
        xt, yt = as_arrays(train_data, "train data")
        batches = list(DeviceImages(xt[:taylor_images], yt[:taylor_images], mean, std,
                                    "cpu").batches(64))
    pruned, extra, labels = [], [], []
    for imp in importances:
        for r in sorted(float(v) for v in ratios):
            labels.append(f"{imp}-channel")
            try:
                res = prune_channels(dense, example, r, imp, batches=batches)
            except UnreachableRatioError as e:
                raise _error(f"{e}; lower the ratios") from e
            except ValueError as e:
                raise _error(str(e)) from e
            pruned.append(res.model)
            extra.append({"requested_ratio": r, "channel_fraction": res.channel_fraction,
                          "latency_before_ms": res.latency_before_ms,
                          "latency_after_ms": res.latency_after_ms,
                          "latency_batch": res.latency_batch})
    out = compare(dense, pruned, (x, y), methods=labels, class_names=classes, mean=mean,
                  std=std, names=[f"{m}-x{e['requested_ratio']:g}" for m, e in zip(labels, extra)],
                  **kwargs)
    models = out.models.copy()
    for col in extra[0]:
        models[col] = [np.nan] + [e[col] for e in extra]

    result = replace(out, models=models)
    if result.out_dir is not None:
        models.to_csv(result.out_dir / "models.csv", index=False)
    return result


def _pair_statistics(models: list[tuple[int, str, LoadedModel]], table: pd.DataFrame,
                     preds: dict[str, np.ndarray], y: np.ndarray, n_cls: int, dists: list[str],
                     seed: int, n_resamples: int, alphas: pd.DataFrame, n_seeds: int
                     ) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """``(mcnemar, intervals, class_intervals)``: single-pair tests and bootstrap for one
    seed; t-based intervals of alpha across seeds for several (the two others empty)."""
    if n_seeds > 1:
        from prunescope.analysis import cell_ci

        ci = cell_ci(alphas, "alpha", ["method", "ratio", "distribution"], null=1.0)
        iv = ci.rename(columns={"mean": "estimate"}).assign(statistic="alpha",
                                                             ci_method="t across seeds")
        cols = ["method", "ratio", "distribution", "statistic", "estimate", "ci_low", "ci_high",
                "level", "ci_method", "n"]
        return pd.DataFrame(), iv[cols], pd.DataFrame()
    from prunescope.stats.pairs import mcnemar_by_class, pair_bootstrap

    mcs, ivs, civs = [], [], []
    for d in dists:
        for j, (_, label, _) in enumerate(models):
            if j == 0:
                continue
            key = {"method": label, "ratio": float(table.ratio[j]), "distribution": d}
            mcs.append(mcnemar_by_class(y, preds[d][0], preds[d][j], n_cls).assign(**key))
            boot = pair_bootstrap(y, preds[d][0], preds[d][j], n_cls, n_resamples=n_resamples,
                                  seed=seed)
            ivs.append(boot.summary.assign(**key, ci_method="bootstrap over test images"))
            civs.append(boot.classes.assign(**key))
    front = ["method", "ratio", "distribution"]

    def order(frames: list[pd.DataFrame]) -> pd.DataFrame:
        f = pd.concat(frames, ignore_index=True)
        return f[front + [c for c in f.columns if c not in front]]

    return order(mcs), order(ivs), order(civs)


def _write(result: CompareResult, out: Path, report: bool, name: str, delta: float
           ) -> CompareResult:
    """Every table as ``<out>/<table>.csv`` and, with ``report``, ``<out>/report/report.html``."""

    out.mkdir(parents=True, exist_ok=True)
    for t in TABLES:
        getattr(result, t).to_csv(out / f"{t}.csv", index=False)
    page = None
    if report:
        from prunescope.report import render_report

        frame = result.counts.assign(
            achieved_ratio=result.counts["ratio"],
            seed=result.counts["model"])
        agreement = result.agreement.rename(columns={"seed": "model"}).assign(
            dataset=result.counts.dataset.iloc[0], arch=name)
        if "model" not in agreement:
            agreement["model"] = 0
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", metrics.ImbalanceWarning)
            page = render_report(frame, out / "report", study_name=f"comparison of {name}",
                                 agreement=agreement, delta=delta,
                                 notices=(result.uncertainty,))
    return replace(result, out_dir=out, report=page)


__all__ = ["GIVEN", "TABLES", "TRUST_FLAG", "CompareResult", "LoadedModel", "audit_channels", "compare",
           "fold_torch_prune", "load_model", "narrow_to", "normalisation", "read_test_data"]
