"""Train one model on a registered dataset end to end: data -> fit -> test confusion -> meta.

This is the Python API behind ``prunescope train``: load the official splits, hold out the
validation images (SPEC 4: seeded stratified draw from the training split), put the sets on
the device, build the model from ``seed``, ``fit`` it and evaluate it on the test set.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from prunescope import data as D
from prunescope.catalog.protocol import TrainOptions
from prunescope.data.device import DeviceImages
from prunescope.models import build_model
from prunescope.train.checkpoint import save_checkpoint
from prunescope.train.loop import FitResult, ProgressFn, evaluate, fit
from prunescope.train.recipe import Recipe


@dataclass
class TrainRun:
    """Result of :func:`train_on_dataset`.

    Attributes:
        model: the trained model (best-validation-loss weights), eval mode, on the device.
        fit: the :class:`FitResult` (history per epoch).
        confusion: test-set confusion matrix, int64 ``(C, C)``, rows true, columns predicted.
        classes: class names, index = label.
        meta: the checkpoint sidecar contents (JSON-able): arch, dataset, seed, recipe, ...
    """

    model: nn.Module
    fit: FitResult
    confusion: np.ndarray
    classes: tuple[str, ...]
    meta: dict[str, Any]

    @property
    def test_accuracy(self) -> float:
        """Fraction of test images classified correctly (0..1)."""
        return float(np.trace(self.confusion) / self.confusion.sum())

    @property
    def test_recall(self) -> np.ndarray:
        """Per-class test recall, float ``(C,)``: correct in class c / samples of class c."""
        return np.diag(self.confusion) / self.confusion.sum(axis=1)

    def save(self, path: str | Path) -> Path:
        """Write the checkpoint (safetensors + ``<path>.json``); returns its path."""
        return save_checkpoint(path, self.model, self.meta)


#: ``load(part)``: ``(x uint8 (N, H, W, C), y int64 (N,))`` of a dataset's ``"train"`` or
#: ``"test"`` split
SplitLoader = Callable[[str], tuple[np.ndarray, np.ndarray]]
#: ``(x, y)`` arrays as a :data:`SplitLoader` returns them
Arrays = tuple[np.ndarray, np.ndarray]


def train_val_arrays(n_val: int, split_seed: int, imbalance: dict | None,
                     training: TrainOptions, load: SplitLoader) -> tuple[Arrays, Arrays]:
    """``((x, y) train, (x, y) val)`` of a model's training split: the official training split
    (or its long-tailed subset, ``imbalance``) less a seeded stratified hold-out of ``n_val``
    images (SPEC 4, :func:`D.training_split`), which is ``val``; with ``training.validation =
    "test"`` (the authors' code, SPEC 8; ``n_val`` 0) ``val`` is the test split instead. The one
    place this rule lives: :func:`train_val_images` (the trainers) and the audit of a checkpoint
    call it, each with its own ``load``."""
    x, y = load("train")
    train_idx, val_idx = D.training_split(y, n_val, split_seed, imbalance)
    val = load("test") if training.validation == "test" else (x[val_idx], y[val_idx])
    return (x[train_idx], y[train_idx]), val


def train_val_images(dataset: str, n_val: int, split_seed: int, imbalance: dict | None,
                     training: TrainOptions, load: SplitLoader, device: torch.device | str
                     ) -> tuple[DeviceImages, DeviceImages]:
    """:func:`train_val_arrays` as ``(train, val)`` ``DeviceImages`` on ``device``, normalised
    as ``training.normalisation`` says; :func:`device_splits` and the study worker call it."""
    info = D.info(dataset)
    mean, std = training.mean_std(dataset, (info.mean, info.std))
    train, val = train_val_arrays(n_val, split_seed, imbalance, training, load)
    return DeviceImages(*train, mean, std, device), DeviceImages(*val, mean, std, device)


def device_splits(
    dataset: str,
    n_val: int,
    split_seed: int,
    device: torch.device | str = "cpu",
    data_dir: str | Path | None = None,
    imbalance: dict | None = None,
    training: TrainOptions = TrainOptions(),
) -> tuple[D.DatasetInfo, DeviceImages, DeviceImages, DeviceImages]:
    """``(info, train, val, test)`` of ``dataset`` on ``device``: the official training split
    (or its long-tailed subset given by a checkpoint's ``imbalance`` meta) less a seeded
    stratified hold-out of ``n_val`` validation images (SPEC 4, :func:`D.training_split`), and
    the test split. ``training``: ``validation = "test"`` makes ``val`` the test split (the
    authors' code, SPEC 8; give ``n_val = 0``), ``normalisation = "fork"`` their constants.
    Fetches the dataset into the cache (``data_dir``) when it is missing."""
    def load(part: str) -> tuple[np.ndarray, np.ndarray]:
        split = D.load(dataset, part, data_dir)
        return split.x, split.y

    train, val = train_val_images(dataset, n_val, split_seed, imbalance, training, load, device)
    test = val if training.validation == "test" else DeviceImages(*load("test"), train.mean,
                                                                  train.std, device)
    return D.info(dataset), train, val, test


def dataset_model(dataset: str, arch: str, seed: int = 0) -> nn.Module:
    """``build_model`` of ``arch`` for ``dataset``'s classes, channels and image size, its
    initialisation seeded by ``seed`` (on the CPU)."""
    info = D.info(dataset)
    height, _, channels = info.shape_hwc
    return build_model(arch, info.num_classes, channels, seed=seed, image_size=height)


def dense_meta(dataset: str, arch: str, seed: int, recipe: Recipe, n_val: int, split_seed: int,
               imbalance: dict | None = None, training: TrainOptions = TrainOptions()
               ) -> dict[str, Any]:
    """The sidecar keys of a dense model trained on ``dataset`` (JSON-ready): what rebuilds it
    (``arch``, ``num_classes``, ``in_channels``, ``image_size``), its training split
    (``dataset``, ``n_val``, ``split_seed``, ``imbalance`` when long-tailed), ``seed``, the
    ``recipe`` with its ``weight_decay`` (UP's eps) and ``epochs``, and the ``training``
    options that are not the defaults (``validation``; ``normalisation`` with the ``mean`` and
    ``std`` it uses, which every later job of the model reads). ``prunescope train`` and the
    study's train jobs both describe their models with it."""
    info = D.info(dataset)
    height, _, channels = info.shape_hwc
    meta: dict[str, Any] = {
        "arch": arch, "dataset": dataset, "num_classes": info.num_classes,
        "in_channels": channels, "image_size": height, "seed": seed, "split_seed": split_seed,
        "n_val": n_val, "recipe": recipe.to_dict(), "weight_decay": recipe.weight_decay,
        "epochs": recipe.epochs}
    if imbalance is not None:
        meta["imbalance"] = imbalance
    meta |= training.non_default()
    if training.normalisation != "dataset":
        meta["mean"], meta["std"] = map(list, training.mean_std(dataset, (info.mean, info.std)))
    return meta


def train_on_dataset(
    dataset: str,
    arch: str,
    seed: int,
    recipe: Recipe | None = None,
    *,
    device: torch.device | str = "cpu",
    data_dir: str | Path | None = None,
    n_val: int = 5000,
    split_seed: int = 0,
    training: TrainOptions = TrainOptions(),
    progress: ProgressFn | None = None,
) -> TrainRun:
    """Train ``arch`` on ``dataset`` with ``recipe`` (default: the SPEC 4 recipe of ``arch``).

    Args:
        dataset: a registered dataset (``mnist``, ``fashion-mnist``, ``cifar10``, ``cifar100``).
        arch: ``lenet5`` or ``resnet20/32/44/56/110``.
        seed: the model's seed: initialisation (``build_model(seed=seed)``) and data order and
            augmentation (``fit(seed=seed)``).
        recipe: training recipe; ``None`` = ``Recipe.paper(arch)``.
        device: where data and model live.
        data_dir: dataset cache root (``None``: ``$PRUNESCOPE_DATA`` or ``~/.cache/prunescope``).
        n_val: validation images held out from the training split.
        split_seed: seed of the validation draw (the same for every model of a study).
        training: which images choose the epoch and how inputs are normalised
            (:class:`~prunescope.catalog.protocol.TrainOptions`; ``validation = "test"``, the
            authors' code, trains on the whole split: ``n_val`` is then 0).
        progress: forwarded to :func:`fit`.
    """
    recipe = recipe if recipe is not None else Recipe.paper(arch)
    n_val = n_val if training.validation == "held-out" else 0
    info, train, val, test = device_splits(dataset, n_val, split_seed, device, data_dir,
                                           training=training)
    model = dataset_model(dataset, arch, seed).to(device)
    t0 = time.perf_counter()
    result = fit(model, train, val, recipe, seed=seed, progress=progress)
    wall = time.perf_counter() - t0
    confusion = evaluate(model, test, info.num_classes, recipe.val_batch_size)
    best = result.history[result.best_epoch - 1]
    acc = float(np.trace(confusion) / confusion.sum())
    meta = dense_meta(dataset, arch, seed, recipe, n_val, split_seed, training=training) | {
        "best_epoch": result.best_epoch,
        "history": result.history,
        "metrics": {
            "val_loss": best["val_loss"],
            "val_acc": best["val_acc"],
            "test_acc": acc,
            "test_confusion": confusion.tolist(),
        },
        "train_seconds": wall,
        "device": str(device),
        "torch_version": torch.__version__,
    }
    return TrainRun(model, result, confusion, info.classes, meta)
