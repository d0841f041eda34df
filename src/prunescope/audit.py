"""Audit a user's own trained classifier: what pruning does to it beyond test accuracy.

``audit(model, train_data, test_data, ...)`` prunes one trained ``nn.Module`` with each method at
each ratio (one-shot from the same dense weights, SPEC 3), optionally fine-tunes with the mask
held, evaluates the dense and every pruned model on every test distribution (SPEC 7), and returns
per-class recall changes, the model-level slope alpha (SPEC 2), the classes hurt most, prune
potential per distribution and functional agreement with the dense model; optionally it writes the
report page. ``audit_checkpoint`` does the same for a checkpoint written by prunescope.

Data may be given as ``(x, y)`` arrays or tensors, a ``prunescope.data.ImageSet``, a
``torch.utils.data.Dataset`` of ``(image, label)`` pairs, a ``DeviceImages``, an ``.npz`` file
(keys ``x`` and ``y``) or a folder of such files (concatenated in name order). Images are kept as
uint8 NHWC (the corruptions of SPEC 7 are defined on 8-bit images): uint8 arrays are taken as they
are (NHWC, NCHW or NHW), float arrays must lie in [0, 1] and are rounded to 1/255 steps. The
model receives ``(x / 255 - mean) / std`` in NCHW float32, with ``mean``/``std`` per channel
(default: computed from the training images; pass zeros and ones for a model that takes raw
[0, 1] inputs).
"""
from __future__ import annotations

import copy
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from prunescope import metrics
from prunescope.data.corruptions import apply_distribution
from prunescope.data.device import DeviceImages
from prunescope.data.splits import train_val_indices
from prunescope.prune import GRADIENT_METHODS, count_parameters, data_gradients, prune_model
from prunescope.train import Recipe, derive_seed, fit, load_checkpoint, predict

DataLike = Any
ProgressFn = Callable[[int, int, str], None]


@dataclass(frozen=True)
class AuditResult:
    """Everything an audit measured (all rates are fractions in [0, 1]).

    Attributes:
        counts: tidy per-class count frame (docs/architecture.md) of the dense model
            (``method="dense"``, ``ratio=1.0``) and every pruned model, on every distribution.
        classwise: one row per (method, ratio, distribution, class): ``recall_before``,
            ``recall_after``, ``recall_change`` (after - before), balances ``Bn_before``,
            ``Bn_after``, intensification ``I`` and ``class_name``.
        alphas: per (method, ratio, distribution): ``alpha``, accuracies before/after, the count
            of undefined intensification ratios (``metrics.model_alpha``).
        worst_classes: per (method, ratio, distribution) the ``top_k`` classes with the largest
            recall drop, ``rank`` 1 = hurt most.
        prune_potential: per (method, distribution): the largest ratio whose error is within
            ``delta`` of the dense model's (``metrics.prune_potential``).
        agreement: per (method, ratio, distribution): fraction of test inputs on which the pruned
            and dense models predict the same class.
        runs: per (method, ratio): requested and achieved compression ratio, nominal accuracy of
            the dense model, right after pruning and after fine-tuning, seconds taken.
        report: path of ``report.html`` when one was written, else ``None``.
    """

    counts: pd.DataFrame
    classwise: pd.DataFrame
    alphas: pd.DataFrame
    worst_classes: pd.DataFrame
    prune_potential: pd.DataFrame
    agreement: pd.DataFrame
    runs: pd.DataFrame
    report: Path | None


def _to_numpy(a: Any) -> np.ndarray:
    return a.detach().cpu().numpy() if isinstance(a, torch.Tensor) else np.asarray(a)


def _as_uint8_nhwc(x: np.ndarray, what: str) -> np.ndarray:
    """uint8 ``(N, H, W, C)`` from NHWC, NCHW or NHW images (uint8, or float in [0, 1])."""
    if x.ndim == 3:
        x = x[..., None]
    if x.ndim != 4:
        raise ValueError(f"{what}: images must have 3 or 4 dimensions (N, H, W[, C]), got shape {x.shape}")
    if x.shape[1] in (1, 3) and x.shape[3] not in (1, 3):
        x = x.transpose(0, 2, 3, 1)
    if x.dtype == np.uint8:
        return np.ascontiguousarray(x)
    if not np.issubdtype(x.dtype, np.floating):
        raise ValueError(f"{what}: images must be uint8 (0..255) or float in [0, 1], got dtype {x.dtype}")
    lo, hi = float(x.min()), float(x.max())
    if lo < 0.0 or hi > 1.0:
        raise ValueError(
            f"{what}: float images must lie in [0, 1] (found {lo:.3g}..{hi:.3g}); pass the "
            "unnormalised images and give the model's normalisation as mean=/std="
        )
    return np.ascontiguousarray(np.rint(x * 255.0).astype(np.uint8))


def _load_npz(path: Path) -> tuple[np.ndarray, np.ndarray]:
    files = sorted(path.glob("*.npz")) if path.is_dir() else [path]
    if not files:
        raise FileNotFoundError(f"no .npz files in {path}; put arrays x (images) and y (labels) in one")
    xs, ys = [], []
    for f in files:
        with np.load(f) as d:
            if "x" not in d or "y" not in d:
                raise KeyError(f"{f} must hold arrays 'x' (images) and 'y' (labels); it has {sorted(d.files)}")
            xs.append(d["x"])
            ys.append(d["y"])
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
        raise TypeError(
            f"{what}: unsupported type {type(data).__name__}; give (x, y) arrays or tensors, an "
            "ImageSet, a torch Dataset of (image, label), DeviceImages, an .npz file or a folder of them"
        )
    x = _as_uint8_nhwc(np.asarray(x), what)
    y = np.asarray(y)
    if y.ndim != 1 or len(y) != len(x) or not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"{what}: labels must be integers of shape ({len(x)},), got {y.dtype} {y.shape}")
    return x, y.astype(np.int64)


def _model_device(model: nn.Module) -> torch.device:
    p = next(model.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


def _recipe(finetune: bool | Recipe | Mapping[str, Any] | None) -> Recipe | None:
    if finetune is None or finetune is False:
        return None
    if isinstance(finetune, Recipe):
        return finetune
    if isinstance(finetune, Mapping):
        return Recipe.from_dict(dict(finetune))
    raise TypeError(
        "finetune must be False/None (no fine-tuning), a prunescope.train.Recipe or a dict of its "
        f"fields; got {finetune!r}. For a prunescope checkpoint, audit_checkpoint picks the SPEC 4 recipe."
    )


def audit(
    model: nn.Module,
    train_data: DataLike,
    test_data: DataLike,
    *,
    methods: Sequence[str] = ("mp", "gp", "up", "rp"),
    ratios: Sequence[float] = (2, 4, 10, 20, 50),
    finetune: bool | Recipe | Mapping[str, Any] | None = None,
    val_data: DataLike | None = None,
    n_val: int = 5000,
    distributions: Sequence[str] = ("nominal",),
    class_names: Sequence[str] | None = None,
    num_classes: int | None = None,
    weight_decay: float | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    scope: str = "global",
    grad_mode: str = "full",
    grad_batches: int | None = None,
    seed: int = 0,
    delta: float = metrics.DEFAULT_DELTA,
    top_k: int = 3,
    out_dir: str | Path | None = None,
    name: str = "user-model",
    dataset: str = "user-data",
    meta: Mapping[str, Any] | None = None,
    progress: ProgressFn | None = None,
) -> AuditResult:
    """Prune ``model`` with every method at every ratio and measure what changes (SPEC 2, 3, 7).

    Args:
        model: a trained classifier mapping float ``(B, C, H, W)`` to logits ``(B, classes)``;
            it is never modified (each pruned model is a deep copy).
        train_data: training images (gradients of GP and UP; fine-tuning). See the module doc.
        test_data: test images; only measured, never used to choose anything.
        methods: pruning criteria (``mp``, ``gp``, ``up``, ``rp``).
        ratios: compression ratios ``t = all params / nonzero params``.
        finetune: ``None``/``False`` = no fine-tuning; a ``Recipe`` (or dict of its fields) =
            fine-tune with the mask held, keeping the epoch with the lowest validation loss.
        val_data: validation images for that choice; default: a seeded stratified hold-out of
            ``n_val`` images (at most a tenth) from ``train_data``, used only when fine-tuning.
        distributions: test distributions: ``"nominal"``, ``"<corruption>-<1..5>"``,
            ``"noise-<std>"`` (prunescope.data.corruptions); ``"nominal"`` is always included.
        class_names: names of the classes, for the worst-hit table.
        num_classes: default: ``max(label) + 1`` over train and test labels.
        weight_decay: UP's eps, the decay the model was trained with (required for UP unless
            ``meta`` records it).
        mean, std: per-channel input normalisation on the 0..1 scale (default: from train_data).
        scope: ``"global"`` or ``"layer"``.
        grad_mode, grad_batches: how GP/UP's data gradient is accumulated (computed once).
        seed: seeds RP, the gradient batches, fine-tuning and the corruptions.
        delta: prune-potential tolerance as a fraction (0.005 = 0.5 percentage points).
        top_k: classes listed per (method, ratio, distribution) in ``worst_classes``.
        out_dir: when given, ``report.html`` with figures and tables is written there.
        name, dataset: labels used as ``arch`` and ``dataset`` in the frames and the report.
        meta: a prunescope checkpoint sidecar (gives ``weight_decay`` to UP).
        progress: callback ``(done, total, description)`` after every pruned model.

    Returns:
        :class:`AuditResult`.
    """
    recipe = _recipe(finetune)
    device = _model_device(model)
    x_train, y_train = as_arrays(train_data, "train_data")
    x_test, y_test = as_arrays(test_data, "test_data")
    if x_train.shape[1:] != x_test.shape[1:]:
        raise ValueError(f"train images {x_train.shape[1:]} and test images {x_test.shape[1:]} differ in shape")
    n_cls = int(num_classes or max(y_train.max(), y_test.max()) + 1)
    if class_names is not None and len(class_names) != n_cls:
        raise ValueError(f"class_names has {len(class_names)} names for {n_cls} classes")
    if mean is None or std is None:
        unit = x_train.reshape(-1, x_train.shape[-1]).astype(np.float64) / 255.0
        mean = unit.mean(0) if mean is None else mean
        std = np.maximum(unit.std(0), 1e-6) if std is None else std
    mean, std = [float(v) for v in mean], [float(v) for v in std]
    dists = ["nominal", *[d for d in distributions if d != "nominal"]]

    if recipe is not None and val_data is None:
        tr_idx, va_idx = train_val_indices(y_train, n_val=min(n_val, len(y_train) // 10), seed=seed)
        train = DeviceImages(x_train[tr_idx], y_train[tr_idx], mean, std, device)
        val = DeviceImages(x_train[va_idx], y_train[va_idx], mean, std, device)
    else:
        train = DeviceImages(x_train, y_train, mean, std, device)
        val = (None if val_data is None or recipe is None  # only fine-tuning reads val
               else DeviceImages(*as_arrays(val_data, "val_data"), mean, std, device))
    x_test_t = torch.as_tensor(x_test, device=device)
    test_sets = {d: DeviceImages(apply_distribution(x_test_t, d, derive_seed(seed, d)), y_test, mean, std, device)
                 for d in dists}

    meta = dict(meta or {})
    if weight_decay is not None:
        meta["weight_decay"] = weight_decay
    meta.setdefault("num_classes", n_cls)
    dense = copy.deepcopy(model).eval()
    dense_pred = {d: predict(dense, s) for d, s in test_sets.items()}
    keys = {"dataset": dataset, "arch": name, "model": 0}
    frames = [metrics.from_predictions(y_test, dense_pred[d], n_cls, method="dense", ratio=1.0,
                                            distribution=d, **keys) for d in dists]
    grads = None
    if any(m.lower() in GRADIENT_METHODS for m in methods):
        grads = data_gradients(dense, train, mode=grad_mode, n_batches=grad_batches,
                               seed=derive_seed(seed, "gradients"))
    n_total = count_parameters(dense)
    acc_dense = float((dense_pred["nominal"] == y_test).mean())
    runs, agree = [], []
    total = len(methods) * len(ratios)
    for i, (method, ratio) in enumerate((m, r) for m in methods for r in ratios):
        t0 = time.perf_counter()
        pruned = copy.deepcopy(dense)
        result = prune_model(pruned, method, float(ratio), grads=grads, seed=derive_seed(seed, "rp"),
                             scope=scope, meta=meta)
        if recipe is not None:
            acc_pruned = float((predict(pruned, test_sets["nominal"]) == y_test).mean())
            fit(pruned, train, val, recipe, derive_seed(seed, "finetune"), masks=result.masks)
        pruned.eval()
        preds = {d: predict(pruned, s) for d, s in test_sets.items()}
        if recipe is None:  # nothing changed the weights since pruning
            acc_pruned = float((preds["nominal"] == y_test).mean())
        for d, pred in preds.items():
            frames.append(metrics.from_predictions(y_test, pred, n_cls, method=method.lower(),
                                                        ratio=float(ratio), distribution=d, **keys))
            agree.append({"method": method.lower(), "ratio": float(ratio), "distribution": d,
                          "agreement": float(metrics.functional_agreement(pred, dense_pred[d]))})
        runs.append({"method": method.lower(), "ratio": float(ratio), "achieved_ratio": result.achieved_ratio,
                     "n_parameters": n_total, "accuracy_dense": acc_dense,
                     "accuracy_pruned": acc_pruned, "accuracy_final": float((preds["nominal"] == y_test).mean()),
                     "finetuned": recipe is not None, "seconds": time.perf_counter() - t0})
        if progress is not None:
            progress(i + 1, total, f"{method} x{ratio}")
    counts = pd.concat(frames, ignore_index=True)
    return _summarise(counts, runs, agree, class_names, delta, top_k, out_dir, name)


def _summarise(counts: pd.DataFrame, runs: list[dict], agree: list[dict],
               class_names: Sequence[str] | None, delta: float, top_k: int,
               out_dir: str | Path | None, name: str) -> AuditResult:
    """Turn the count frame into the audit's tables (and the report when ``out_dir`` is set)."""
    paired = metrics.intensification(counts, "recall")
    alphas = metrics.model_alpha(paired)
    classwise = paired.rename(columns={"value_before": "recall_before", "value_after": "recall_after"})
    classwise["recall_change"] = classwise["recall_after"] - classwise["recall_before"]
    names = list(class_names) if class_names is not None else None
    classwise["class_name"] = classwise["cls"].map(lambda c: names[c] if names else str(c))
    cols = ["method", "ratio", "distribution", "cls", "class_name", "recall_before", "recall_after",
            "recall_change", "Bn_before", "Bn_after", "I"]
    classwise = classwise[cols].sort_values(["method", "ratio", "distribution", "cls"], ignore_index=True)
    worst = (classwise.sort_values(["method", "ratio", "distribution", "recall_change", "cls"])
             .groupby(["method", "ratio", "distribution"], sort=False).head(top_k).copy())
    worst["rank"] = worst.groupby(["method", "ratio", "distribution"]).cumcount() + 1
    potential = metrics.prune_potential(metrics.error_frame(counts), delta=delta)
    report = None
    if out_dir is not None:
        from prunescope.report import render_report

        report = render_report(counts, out_dir, study_name=f"audit of {name}")
    return AuditResult(counts, classwise, alphas, worst.reset_index(drop=True), potential,
                       pd.DataFrame(agree), pd.DataFrame(runs), report)


def audit_checkpoint(
    path: str | Path,
    *,
    data_dir: str | Path | None = None,
    train_data: DataLike | None = None,
    test_data: DataLike | None = None,
    finetune_epochs: int | None = None,
    device: torch.device | str = "cpu",
    **kwargs: Any,
) -> AuditResult:
    """:func:`audit` of a checkpoint written by prunescope (``prunescope train``).

    The dataset, its normalisation, class names, weight decay (UP's eps) and the validation split
    come from the checkpoint's sidecar; fine-tuning uses the SPEC 4 recipe of its architecture,
    scaled to ``finetune_epochs`` (``0`` = no fine-tuning; ``None`` = the full recipe).
    Other keyword arguments are passed to :func:`audit`.
    """
    from prunescope import data as D
    from prunescope.prune.finetune import finetune_recipe

    model, meta, _ = load_checkpoint(path, device=device)
    ds = meta["dataset"]
    info = D.info(ds)
    if train_data is None or test_data is None:
        full = D.load(ds, "train", data_dir)
        tr_idx, va_idx = D.train_val_indices(full.y, n_val=int(meta.get("n_val", 5000)),
                                             seed=int(meta.get("split_seed", 0)))
        train_data = train_data if train_data is not None else (full.x[tr_idx], full.y[tr_idx])
        kwargs.setdefault("val_data", (full.x[va_idx], full.y[va_idx]))
        test_data = test_data if test_data is not None else D.load(ds, "test", data_dir)
    if finetune_epochs != 0:
        kwargs.setdefault("finetune", finetune_recipe(meta["arch"], finetune_epochs))
    kwargs.setdefault("class_names", info.classes)
    kwargs.setdefault("mean", info.mean)
    kwargs.setdefault("std", info.std)
    kwargs.setdefault("name", meta["arch"])
    kwargs.setdefault("dataset", ds)
    return audit(model, train_data, test_data, meta=meta, num_classes=info.num_classes, **kwargs)


__all__ = ["AuditResult", "as_arrays", "audit", "audit_checkpoint"]
