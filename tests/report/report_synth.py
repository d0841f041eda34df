"""Realistic synthetic tidy results frames for the report's tests and benchmark.

Not part of the package: the report must be built on real study results; this module only makes
frames with the shape of ``docs/architecture.md`` (one row per model, ratio, method, distribution,
class) whose per-class recalls behave like the paper's (accuracy falls with the ratio, recall gaps
shrink at low ratios and widen at high ones) so that every figure has something to show.

The generative model, per (dataset, architecture) and model ``m``:

* dense accuracy ``A(m) ~ N(base_acc, 0.004)``; normalized balance of class ``c``
  ``Bn^c(m) = b_c + N(0, 0.15 * sd_c)`` with ``b_c`` fixed per dataset (sums to zero);
* pruned at ratio ``t``: ``A_t = A - drop(t)``, ``Bn_t^c = alpha(t) * Bn^c + noise`` with
  ``alpha(t)`` rising through 1 around ``t = 6`` (intensification at high ratios);
* recall ``R = A (1 + Bn)``; ``correct ~ Binomial(support, R)``; the wrong predictions are spread
  over the classes so that ``predicted`` sums to the number of test samples;
* a shifted distribution ``d`` lowers every accuracy by a severity-dependent amount that grows
  with the ratio (so its prune potential is lower than the nominal one).
"""
from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np
import pandas as pd

#: (dataset, number of classes, support per class in the test set, base recall sd in Bn units)
DATASETS: dict[str, tuple[int, int, float]] = {
    "mnist": (10, 1000, 0.008),
    "fashion-mnist": (10, 1000, 0.08),
    "cifar10": (10, 1000, 0.05),
    "cifar100": (100, 100, 0.18),
}

#: dense accuracy (fraction) per (dataset, arch)
BASE_ACC: dict[tuple[str, str], float] = {
    ("mnist", "lenet5"): 0.99,
    ("fashion-mnist", "lenet5"): 0.90,
    ("cifar10", "resnet20"): 0.915,
    ("cifar10", "resnet32"): 0.925,
    ("cifar10", "resnet44"): 0.93,
    ("cifar10", "resnet56"): 0.935,
    ("cifar10", "resnet110"): 0.94,
    ("cifar100", "resnet56"): 0.70,
}

METHOD_SHIFT = {"mp": 0.0, "up": -0.04, "gp": 0.05, "rp": 0.25, "lth": -0.02, "chip": 0.08,
                "l1-filter": 0.10}


@dataclass(frozen=True)
class Cell:
    """One (dataset, arch, method) combination of a synthetic study."""

    dataset: str
    arch: str
    method: str


def paper_grid() -> list[Cell]:
    """The (dataset, architecture, method) combinations of the paper's grid (SPEC 4)."""
    cells = [Cell(d, "lenet5", "mp") for d in ("mnist", "fashion-mnist")]
    for arch in ("resnet20", "resnet32", "resnet44", "resnet56", "resnet110"):
        cells += [Cell("cifar10", arch, m) for m in ("mp", "up")]
    cells += [Cell("cifar10", "resnet56", m) for m in ("gp", "rp")]
    cells += [Cell("cifar100", "resnet56", m) for m in ("mp", "up")]
    return cells


def multi_method() -> list[Cell]:
    """CIFAR-10 ResNet-56 with four methods: the smallest study where the method varies."""
    return [Cell("cifar10", "resnet56", m) for m in ("mp", "up", "gp", "rp")]


def _alpha_of_ratio(ratio: float, method: str) -> float:
    """Expected slope at compression ``ratio`` (dimensionless): < 1 below ~6x, > 1 above."""
    return 1.0 + 0.12 * np.log(ratio / 6.0) + METHOD_SHIFT.get(method, 0.0) * np.log(ratio) / 4


def _drop_of_ratio(ratio: float, method: str) -> float:
    """Expected accuracy loss (fraction) at compression ``ratio``."""
    return 0.0004 * ratio * (1.0 + 4 * METHOD_SHIFT.get(method, 0.0))


def _counts(rng: np.random.Generator, support: np.ndarray, recall: np.ndarray
            ) -> tuple[np.ndarray, np.ndarray]:
    """Per-class ``correct`` and ``predicted`` counts for recalls ``recall`` (shape (C,))."""
    correct = rng.binomial(support, np.clip(recall, 0.0, 1.0))
    wrong = int(support.sum() - correct.sum())
    weights = rng.dirichlet(np.full(len(support), 20.0))
    predicted = correct + rng.multinomial(wrong, weights)
    return correct, predicted


def synthetic_results(cells: list[Cell], *, n_models: int = 30,
                      ratios: tuple[float, ...] = (2.0, 4.0, 10.0, 20.0, 50.0),
                      distributions: tuple[str, ...] = ("nominal",),
                      levels: bool = False, seed: int = 0) -> pd.DataFrame:
    """A tidy per-class results frame like a finished study's.

    Args:
        cells: the (dataset, arch, method) combinations; every (dataset, arch) gets ``n_models``
            dense models shared by its methods.
        n_models: models (seeds) per (dataset, arch).
        ratios: compression ratios ``t`` (all params / nonzero params), each > 1.
        distributions: test distributions; the first is the nominal one, the others are shifted
            with severity growing along the tuple.
        levels: add a ``level`` column (1-based index of the ratio), as iterative methods report.
        seed: seed of the generator.

    Returns:
        Frame with columns ``dataset, arch, method, ratio, model, distribution, cls, support,
        predicted, correct, achieved_ratio, seed`` (+ ``level``); dense rows have method
        ``"dense"``, ratio 1.0. Counts are int64.
    """
    rng = np.random.default_rng(seed)
    blocks: list[dict[str, np.ndarray]] = []
    pairs = sorted({(c.dataset, c.arch) for c in cells})
    class_effects = {}
    for dataset, _ in pairs:
        n_cls, _, sd = DATASETS[dataset]
        if dataset not in class_effects:
            b = np.random.default_rng(zlib.crc32(dataset.encode())).normal(0.0, sd, n_cls)
            class_effects[dataset] = b - b.mean()
    for dataset, arch in pairs:
        n_cls, per_cls, sd = DATASETS[dataset]
        support = np.full(n_cls, per_cls, dtype=np.int64)
        methods = [c.method for c in cells if (c.dataset, c.arch) == (dataset, arch)]
        for m in range(n_models):
            acc = rng.normal(BASE_ACC[(dataset, arch)], 0.004)
            bn = class_effects[dataset] + rng.normal(0.0, 0.15 * sd, n_cls)
            bn -= bn.mean()
            variants = [("dense", 1.0, 1.0, 0.0, 0)]
            variants += [(meth, t, _alpha_of_ratio(t, meth), _drop_of_ratio(t, meth), i + 1)
                         for meth in methods for i, t in enumerate(ratios)]
            for method, ratio, alpha, drop, level in variants:
                bn_t = alpha * bn + (rng.normal(0.0, 0.1 * sd, n_cls) if method != "dense" else 0)
                for k, dist in enumerate(distributions):
                    shift = 0.02 * k * (1.0 + np.log(ratio) / 3) if k else 0.0
                    acc_t = max(acc - drop - shift, 1.0 / n_cls)
                    correct, predicted = _counts(rng, support, acc_t * (1.0 + bn_t))
                    block = {
                        "dataset": np.full(n_cls, dataset, dtype=object),
                        "arch": np.full(n_cls, arch, dtype=object),
                        "method": np.full(n_cls, method, dtype=object),
                        "ratio": np.full(n_cls, ratio),
                        "model": np.full(n_cls, m, dtype=np.int64),
                        "distribution": np.full(n_cls, dist, dtype=object),
                        "cls": np.arange(n_cls, dtype=np.int64),
                        "support": support,
                        "predicted": predicted.astype(np.int64),
                        "correct": correct.astype(np.int64),
                        "achieved_ratio": np.full(n_cls, ratio * (1 + 1e-4 * (ratio > 1))),
                        "seed": np.full(n_cls, 1000 + m, dtype=np.int64),
                    }
                    if levels:
                        block["level"] = np.full(n_cls, level, dtype=np.int64)
                    blocks.append(block)
    return pd.DataFrame({k: np.concatenate([b[k] for b in blocks]) for k in blocks[0]})


@dataclass(frozen=True)
class StubSpec:
    """The one spec attribute ``prunescope report`` reads from a hand-made results object."""

    name: str = "study"


def stub_results(frame: pd.DataFrame, out_dir, kinds=("evaluate",), statuses=("done",),
                 name: str = "study", **loaders):
    """A :class:`prunescope.study.StudyResults` over ``frame`` whose jobs frame has one row per
    (kind, status) with every column of ``JOB_COLUMNS`` (``info``/``params`` empty dicts), as
    :func:`prunescope.study.load_results` would give it; ``loaders`` (e.g. ``load_agreement``)
    pass through."""
    from prunescope.study import StudyResults
    from prunescope.study.results import JOB_COLUMNS

    jobs = pd.DataFrame({c: [None] * len(kinds) for c in JOB_COLUMNS})
    jobs["kind"], jobs["status"] = list(kinds), list(statuses)
    jobs["info"] = [{} for _ in kinds]
    jobs["params"] = [{} for _ in kinds]
    return StudyResults(frame=frame, jobs=jobs, spec=StubSpec(name), spec_text="",
                        out_dir=str(out_dir), **loaders)
