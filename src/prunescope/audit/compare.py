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

The models are read by :mod:`prunescope.audit.given`.
"""
from __future__ import annotations

import copy
import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from prunescope import choices, metrics
from prunescope.audit.given import (GIVEN, Builder, LoadedModel, ModelLike, load_model,
                                    read_test_data)
from prunescope.audit.inputs import (AuditError, as_arrays, check_data, normalisation,
                                     registry_name)
from prunescope.audit.run import summarise

#: resamples of the single-pair bootstrap
N_RESAMPLES = 2000


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
            raise AuditError(f"with {len(dense)} dense models (seeds) give as many lists of pruned "
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
    from prunescope.data.device import DeviceImages

    dense_list, pruned_lists = _seed_lists(dense, pruned_models)
    n_pruned = len(pruned_lists[0])
    if n_pruned == 0 or any(len(p) != n_pruned for p in pruned_lists):
        raise AuditError("give at least one pruned model (and as many for every seed)")
    labels, builds, dists = _checked_options(n_pruned, methods, names, build, distributions)

    x, y, class_names = read_test_data(test_data, class_names)
    mean, std = normalisation(x, mean, std, test_data)
    example = next(DeviceImages(x[:1], y[:1], mean, std, "cpu").batches(1))[0]

    models, n_cls = _read_models(dense_list, pruned_lists, labels, names, builds, trust_pickle,
                                 example, x, y, mean, std, class_names)
    table = _models_table(models, n_pruned)
    n_seeds = len(dense_list)
    preds, counts = _evaluate(models, table, x, y, mean, std, dists, seed, n_cls, dataset, name)
    table["accuracy"] = (preds["nominal"] == y).mean(1)

    agreement, changed = _agreement(models, table, preds, y, dists)
    # the audit's views of each seed's models (the audit's tables have no seed key)
    parts = [summarise(counts[counts.model == s], table[table.seed == s],
                        agreement[agreement.model == s].drop(columns="model"), class_names,
                        delta, top_k, (), None, None) for s in range(n_seeds)]
    views = {v: pd.concat([getattr(p, v).assign(seed=s) if n_seeds > 1 else getattr(p, v)
                           for s, p in enumerate(parts)], ignore_index=True)
             for v in ("classwise", "alphas", "worst_classes", "prune_potential")}
    agreement, changed_images = (f.drop(columns="model") if n_seeds == 1
                                 else f.rename(columns={"model": "seed"})
                                 for f in (agreement, changed))

    mc, iv, civ = _pair_statistics(models, table, preds, y, n_cls, dists, seed, n_resamples,
                                   views["alphas"], n_seeds)
    result = CompareResult(table, counts, views["classwise"], views["alphas"],
                           views["worst_classes"], views["prune_potential"], agreement,
                           changed_images, mc, iv, civ, _uncertainty(n_seeds))
    if out_dir is not None:
        result = _write(result, Path(out_dir), report, name, delta)
    return result


def _evaluate(models: list[tuple[int, str, LoadedModel]], table: pd.DataFrame, x: np.ndarray,
              y: np.ndarray, mean: list[float], std: list[float], dists: list[str], seed: int,
              n_cls: int, dataset: str, name: str) -> tuple[dict[str, np.ndarray], pd.DataFrame]:
    """Every model on every distribution: ``({distribution: predictions (models, N)}, the
    tidy count frame)``."""
    from prunescope.data.corruptions import apply_distribution
    from prunescope.data.device import DeviceImages
    from prunescope.train import predict

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
    return preds, counts


def _uncertainty(n_seeds: int) -> str:
    """What the intervals and tests of a comparison of ``n_seeds`` seeds measure."""
    if n_seeds == 1:
        from prunescope.stats.pairs import PAIR_UNCERTAINTY

        return PAIR_UNCERTAINTY
    return (f"seed-to-seed variation: t-based 99 % intervals of alpha across the {n_seeds} "
            "seeds (the study's statistics)")


def _checked_options(n_pruned: int, methods: Sequence[str] | None,
                     names: Sequence[str] | None, build: Any, distributions: Sequence[str]
                     ) -> tuple[list[str], list[Any], list[str]]:
    """``(method label per pruned model, builder per model, canonical distributions)``, each
    checked (one :class:`AuditError` line)."""
    labels = list(methods) if methods is not None else [GIVEN] * n_pruned
    if "dense" in labels:
        raise AuditError("'dense' names the dense model; give the pruned models other method labels")
    if len(labels) != n_pruned or (names is not None and len(names) != n_pruned):
        raise AuditError(f"give one method label and name per pruned model ({n_pruned}), got "
                     f"{len(labels)} and {n_pruned if names is None else len(names)}")
    builds = list(build) if isinstance(build, (list, tuple)) else [build] * (1 + n_pruned)
    if len(builds) != 1 + n_pruned:
        raise AuditError(f"give one builder for every model or {1 + n_pruned} (dense, then each "
                     f"pruned model), got {len(builds)}")
    dists: list[str] = []
    for d in ["nominal", *distributions]:
        if (error := choices.distribution_error(d)) is not None:
            raise AuditError(f"distribution {d!r} is invalid; use {error}")
        dname = choices.canonical_distribution(d)
        dists += [dname] if dname not in dists else []
    return labels, builds, dists


def _read_models(dense_list: list[ModelLike], pruned_lists: list[list[ModelLike]],
                 labels: list[str], names: Sequence[str] | None, builds: list[Any],
                 trust_pickle: bool, example: torch.Tensor, x: np.ndarray, y: np.ndarray,
                 mean: list[float], std: list[float], class_names: Sequence[str] | None
                 ) -> tuple[list[tuple[int, str, LoadedModel]], int]:
    """Every model read and checked before any evaluation: ``([(seed, label, model)], number
    of classes)``."""
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
            k = check_data(lm.model, {"train": (x, y)}, mean, std, torch.device("cpu"), None,
                            class_names, {"train": "test data"})
        except AuditError as e:
            raise AuditError(f"{lm.name}: {e}") from e
        if outputs is None:
            outputs = k
        elif k != outputs:
            raise AuditError(f"{lm.name} has {k} outputs but the dense model has {outputs}: a pruned "
                         "model must classify the same classes")
    assert outputs is not None

    return models, outputs


def _models_table(models: list[tuple[int, str, LoadedModel]], n_pruned: int) -> pd.DataFrame:
    """One row per model: seed, role, method, name, source, parameter counts, achieved ratio
    and the cell ratio of its position (mean over seeds, 4 significant digits)."""
    dense_params = {s: lm.params_total for s, label, lm in models if label == "dense"}
    rows = []
    for s, label, lm in models:
        ratio = 1.0 if label == "dense" else dense_params[s] / max(1, lm.params_nonzero)
        rows.append({"seed": s, "role": "dense" if label == "dense" else "pruned",
                     "method": label, "name": lm.name, "source": lm.source,
                     "params_total": lm.params_total, "params_nonzero": lm.params_nonzero,
                     "achieved_ratio": ratio})
    table = pd.DataFrame(rows)
    # the cell ratio of a position: its achieved ratio (mean over seeds), 4 significant digits
    table["ratio"] = table.groupby(["method", table.index % (1 + n_pruned)])[
        "achieved_ratio"].transform("mean").map(lambda r: float(f"{r:.4g}"))
    dup = table[table.role == "pruned"].drop_duplicates(["seed", "method", "ratio"], keep=False)
    if len(dup) != int((table.role == "pruned").sum()):
        raise AuditError("two pruned models have the same label and the same achieved ratio; give "
                     "them different method labels (CLI --methods)")

    return table


def _agreement(models: list[tuple[int, str, LoadedModel]], table: pd.DataFrame,
               preds: dict[str, np.ndarray], y: np.ndarray, dists: list[str]
               ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(functional agreement per pruned model and distribution, the test images whose
    prediction pruning changed)``, both with a ``model`` (seed) column."""
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
    return pd.DataFrame(agree), pd.concat(changed, ignore_index=True)


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
    from prunescope.data.device import DeviceImages
    from prunescope.prune.channels import IMPORTANCES, prune_channels
    from prunescope.catalog.ratios import UnreachableRatioError

    bad = [i for i in importances if i not in IMPORTANCES]
    if bad or not importances:
        raise AuditError(f"importance {bad[0] if bad else 'none'!r}: choose from "
                     f"{', '.join(IMPORTANCES)}")
    if not ratios or any(not (math.isfinite(float(r)) and float(r) > 1) for r in ratios):
        raise AuditError(f"ratios {list(ratios)}: give parameter ratios (before / after) > 1")
    x, y, classes = read_test_data(test_data, kwargs.pop("class_names", None))
    mean, std = normalisation(x, mean, std, test_data)
    example = next(DeviceImages(x[:1], y[:1], mean, std, "cpu").batches(1))[0]
    dense = load_model(model, build=build, trust_pickle=trust_pickle, example=example).model
    batches = None
    if "taylor" in importances:
        if train_data is None:
            raise AuditError("taylor importance needs training images (train_data=; CLI: a "
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
                raise AuditError(f"{e}; lower the ratios") from e
            except ValueError as e:
                raise AuditError(str(e)) from e
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


__all__ = ["GIVEN", "TABLES", "CompareResult", "LoadedModel", "audit_channels", "compare", "load_model",
           "normalisation", "read_test_data"]
