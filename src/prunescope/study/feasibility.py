"""What a typed study spec can run, checked before any work: the bounds of docs/studies.md
("Bounds"), recipes within them, splits large enough for the hold-out and the test subset,
ratios every model of a cell can reach (parameter counts from the catalog's layouts), LTH
levels, the job cap, folder paths the file system can hold and artifact URLs.
"""
from __future__ import annotations

import functools
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prunescope import choices
from prunescope.catalog import architectures, methods as registry
from prunescope.catalog.protocol import FORK_NORMALISATION
from prunescope.catalog.ratios import level_ratios, shrinkbench_fraction
from prunescope.data import expected, info
from prunescope.data.splits import val_quota
from prunescope.study.keys import Messages, SpecError

if TYPE_CHECKING:
    from prunescope.study.grid import Cell
    from prunescope.study.spec import StudySpec

__all__ = ["check_across_tables", "jobs_per_model", "lth_schedule"]

# ---- bounds (docs/studies.md, "Bounds") ------------------------------------------------------
#: jobs one study may plan (``plan`` takes about 3 s per 100,000 on the 2-core CPU)
MAX_JOBS = 100_000
#: epochs of one recipe (``[train]``, ``[finetune]`` and their per-architecture tables)
MAX_EPOCHS = 10_000
#: LTH levels to the largest ``lth`` ratio (``[lth] prune_fraction`` sets how many)
MAX_LTH_LEVELS = 100
#: characters of a study name (the default output folder is ``runs/<name>``)
MAX_NAME = 100
#: bytes (UTF-8) of a local output or artifacts folder, leaving room for the files below it
#: within Linux's PATH_MAX of 4,096; each folder name at most :data:`MAX_PART_BYTES`
MAX_PATH_BYTES = 3500
MAX_PART_BYTES = 255
#: ``[executor]`` bounds: local worker processes, torch threads, models per pack, Ray resources
MAX_WORKERS = 256
MAX_THREADS = 1024
MAX_PACK_SIZE = 1024
MAX_CPUS_PER_PACK = 1024
MAX_GPUS_PER_PACK = 64
#: TOML integers are 64-bit (tomllib reads larger ones anyway); seeds span 0..INT64_MAX
INT64_MAX = 2**63 - 1
#: a study spec is a short text file: larger ones (or a device such as /dev/zero) are refused
MAX_SPEC_BYTES = 1 << 20
#: deepest nesting of tables and lists in a spec (the deepest key, `[train.<arch>] schedule`,
#: is 4 levels down); deeper documents are refused before any recursive validation
MAX_NESTING = 16


def check_across_tables(v: Messages, spec: StudySpec, raw: dict[str, Any]) -> None:
    """What no table can check alone: every recipe builds and fits :data:`MAX_EPOCHS`, the
    hold-out, test subset and CHIP images fit each cell's splits, ratios are reachable and the
    plan fits :data:`MAX_JOBS`."""
    for arch in sorted({c.arch for c in spec.cells}):  # every recipe now: errors before work
        for phase in ("train", "finetune"):
            try:
                recipe = spec.recipe(arch, phase)
            except ValueError as e:
                raise SpecError(f"{v.where}: the [{phase}] recipe of {arch} is invalid: "
                                f"{e}") from e
            if recipe.epochs > MAX_EPOCHS:
                key = next(f"{t}.{k}" for t in (f"{phase}.{arch}", phase)
                           for k in ("epochs", "epochs_scale", "schedule")
                           if k in _table(raw, t))
                v.fail(key, _table(raw, key.rsplit(".", 1)[0])[key.rsplit(".", 1)[1]],
                       f"a recipe of at most {MAX_EPOCHS} epochs ({arch}'s [{phase}] recipe has "
                       f"{recipe.epochs})")
    n_val = spec.n_val
    for cell in spec.cells:
        counts = (cell.imbalance.counts(cell.dataset) if cell.imbalance is not None
                  else expected(cell.dataset).counts["train"])
        n_train = sum(counts)
        split = f"the {'imbalanced ' if cell.imbalance else ''}training split of {cell.label}"
        if n_val >= n_train:
            v.fail("n_val", n_val, f"fewer than the {n_train} images of {split}")
        if (val_quota(counts, n_val) >= counts).any():
            v.fail("n_val", n_val, f"a hold-out that leaves every class of {split} at least one "
                   f"training image (its class counts: {list(counts)})")
    chip_cells = [c for c in spec.cells
                  if any(registry.method(m).needs_feature_maps for m, _ in c.methods)]
    for dataset in sorted({c.dataset for c in spec.cells}):
        n_train, n_test = (sum(n) for n in (expected(dataset).counts["train"],
                                            expected(dataset).counts["test"]))
        if spec.normalisation == "fork" and dataset not in FORK_NORMALISATION:
            v.fail("normalisation", "fork", f"'dataset' for {dataset} (the authors' loaders "
                   f"normalise only {', '.join(FORK_NORMALISATION)})")
        if spec.test_subset is not None and spec.test_subset >= n_test:
            v.fail("test_subset", spec.test_subset, f"fewer than the {n_test} test images of "
                   f"{dataset} (leave it out for the whole test split)")
        chip_images = spec.structured.chip_images
        if any(c.dataset == dataset for c in chip_cells) and chip_images > n_train - n_val:
            v.fail("structured.chip_images", chip_images, f"at most the {n_train - n_val} "
                   f"training images of {dataset} (after n_val)")
    _check_ratios(v, spec)
    _check_job_count(v, spec)


def _table(raw: dict[str, Any], dotted: str) -> dict[str, Any]:
    """The (possibly absent, then empty) table at a dotted path of the raw TOML document."""
    for k in dotted.split("."):
        raw = raw.get(k, {}) if isinstance(raw, dict) else {}
    return raw if isinstance(raw, dict) else {}


def jobs_per_model(spec: StudySpec) -> int:
    """The jobs :func:`prunescope.study.plan.make_plan` plans per model (seed) of ``spec``,
    counted without building them: per cell a ``train`` job, a ``gradients`` job for the
    methods that need one, a ``rewind`` job for an iterative method, one job per pruned model
    (ratio and, for one-shot methods, fine-tuning objective; or level), and an ``evaluate`` job
    per model (dense included) and distribution."""
    total = 0
    for cell in spec.cells:
        records = [registry.method(m) for m, _ in cell.methods]
        n_models = 1 + sum(len(r) * (len(cell.objectives_of(m)) if rec.kind == "one-shot" else 1)
                           for (m, r), rec in zip(cell.methods, records) if not rec.iterative)
        n_models += len(lth_schedule(spec, cell))
        total += n_models * (1 + len(spec.distributions))
        total += any(r.needs_gradients for r in records) + any(r.iterative for r in records)
    return total


def _check_job_count(v: Messages, spec: StudySpec) -> None:
    """Fail when the plan would exceed :data:`MAX_JOBS` jobs, naming ``models`` when fewer
    models would fit, else the grid's ratio and distribution lists."""
    per_model = jobs_per_model(spec)
    if spec.models * per_model <= MAX_JOBS:
        return
    if per_model <= MAX_JOBS:
        v.fail("models", spec.models, f"at most {MAX_JOBS // per_model} models for this grid "
               f"({per_model} jobs per model; a study plans at most {MAX_JOBS} jobs)")
    key = "distributions" if len(spec.distributions) > 1 else "ratios"
    v.fail(key, list(spec.distributions) if key == "distributions" else "(the grid's ratios)",
           f"a grid of at most {MAX_JOBS} jobs per model ({per_model} here: the ratios times "
           "the distributions, plus LTH levels)")


def lth_schedule(spec: StudySpec, cell: Cell) -> list[float]:
    """Achieved ratios of the iterative levels 1, 2, ... of ``cell`` up to the first level that
    reaches the cell's largest iterative ratio (from parameter counts alone,
    :func:`prunescope.catalog.ratios.level_ratios`); ``[]`` when the cell has no iterative
    method.

    Raises:
        UnreachableRatioError: that ratio is above ``n_total / n_fixed``.
        ValueError: a level would prune nothing (too few weights for another level).
    """
    ratios = [r for m, rs in cell.methods if registry.method(m).iterative for r in rs]
    if not ratios:
        return []
    n_total, n_prunable = _parameter_counts(cell.dataset, cell.arch,
                                            cell.pruning.prune_classifier,
                                            cell.pruning.prune_biases)
    return level_ratios(n_total, n_prunable, target_ratio=float(max(ratios)),
                        prune_fraction=spec.lth.prune_fraction)


def _check_ratios(v: Messages, spec: StudySpec) -> None:
    """Fail on a ratio that no model of its cell can reach (SPEC 3: all params / nonzero), per
    method family: one-shot and LTH masks can keep every non-prunable parameter only; structured
    pruning keeps at least one channel per group (:func:`prunescope.prune.structured.structured_max_ratio`). Also checks
    that ``[lth] rewind_steps`` fits in the dense run."""
    for cell in spec.cells:
        methods = dict(cell.methods)
        if not methods:
            continue
        structured = [m for m in methods if registry.method(m).kind == "structured"]
        iterative = [r for m, rs in methods.items() if registry.method(m).iterative for r in rs]
        unstructured = [r for m, rs in methods.items() if m not in structured for r in rs]
        opts = cell.pruning
        if unstructured:  # (masks need prunable weights; structured pruning is checked below)
            n_total, n_prunable = _parameter_counts(cell.dataset, cell.arch,
                                                    opts.prune_classifier, opts.prune_biases)
            top = max(unstructured)
            reach = choices.reach_error(n_total, n_prunable, top, f"{cell.arch} on {cell.dataset}")
            if reach is not None and opts.keep_rule == "exact":
                v.fail("ratios", top, reach)
            if opts.keep_rule == "shrinkbench":  # its stated ratio may exceed what it reaches
                _, n_layers = _parameter_counts(cell.dataset, cell.arch, opts.prune_classifier,
                                                True)
                try:
                    shrinkbench_fraction(n_total, n_layers, top)
                except ValueError as e:
                    v.fail("ratios", top, f"{e} ({cell.arch} on {cell.dataset})")
                if iterative or spec.scope != "global":
                    v.fail("keep_rule", "shrinkbench", "'exact' with lth or scope = 'layer' "
                           "(ShrinkBench's rule is the fork's global one-shot threshold)")
        if iterative:
            # levels to the top ratio: keep (1 - f)^L of the prunable weights, with
            # n_total / (n_total - n_prunable + kept) >= top (reachable: checked above)
            top = max(iterative)
            keep = (n_total / top - (n_total - n_prunable)) / n_prunable
            f = spec.lth.prune_fraction
            if keep > 0 and math.log(keep) / math.log1p(-f) > MAX_LTH_LEVELS:
                least = 1 - keep ** (1 / MAX_LTH_LEVELS)
                v.fail("lth.prune_fraction", f, f"a fraction that reaches ratio {top:g} on "
                       f"{cell.arch} within {MAX_LTH_LEVELS} levels (at least {least:.4g})")
            try:
                lth_schedule(spec, cell)
            except ValueError as e:
                v.fail("lth.prune_fraction", spec.lth.prune_fraction,
                       f"a fraction that reaches ratio {top:g} on {cell.arch}: {e}")
            recipe = spec.recipe(cell.arch, "train")
            n_train = sum(expected(cell.dataset).counts["train"]) - spec.n_val
            per_epoch = math.ceil(n_train / recipe.batch_size)
            if recipe.max_steps_per_epoch is not None:
                per_epoch = min(per_epoch, recipe.max_steps_per_epoch)
            total = per_epoch * recipe.epochs
            resumed = spec.lth.retrain == "rewind"  # retraining starts after that step
            if spec.lth.rewind_steps > total - resumed:
                v.fail("lth.rewind_steps", spec.lth.rewind_steps,
                       f"at most the {total} optimiser steps of the dense [train] run of "
                       f"{cell.arch} on {cell.dataset}" + (" minus one, so that retrain = "
                                                            "'rewind' has a step to train"
                                                            if resumed else ""))
        for meth in structured:
            top, config = max(methods[meth]), spec.structured.config_of(meth)
            try:
                max_ratio = _structured_max_ratio(cell.dataset, cell.arch, config)
            except (TypeError, ValueError, KeyError) as e:
                v.fail("methods", meth, f"structured methods only on architectures "
                       f"prunescope.prune.structured supports (lenet5, resnet*; a published "
                       f"config only on its own); {cell.arch} with config {config!r} failed: {e}")
            if top > max_ratio * (1 + 1e-12):
                v.fail("ratios", top, f"structured ratios ({meth}, config {config!r}) "
                       f"{cell.arch} on {cell.dataset} can reach: at most {max_ratio:.6g} "
                       "(every channel group it narrows down to one channel); lower the ratio "
                       "or drop it for this method with a [[grid]] entry")


@functools.lru_cache(maxsize=64)
def _parameter_counts(dataset: str, arch: str, prune_classifier: bool, prune_biases: bool
                      ) -> tuple[int, int]:
    """``(all parameters, prunable ones)`` of ``arch`` for ``dataset``'s classes and image shape,
    counted from its catalog record's layout (no model built)."""
    inf, record = info(dataset), architectures.architecture(arch)
    h, _, c = inf.shape_hwc
    return (record.param_count(inf.num_classes, c, h),
            record.prunable_count(inf.num_classes, c, h, prune_classifier=prune_classifier,
                                  prune_biases=prune_biases))


@functools.lru_cache(maxsize=64)
def _structured_max_ratio(dataset: str, arch: str, config: str = "uniform") -> float:
    """:func:`prunescope.prune.structured.structured_max_ratio` of a skeleton of ``arch`` for ``dataset`` with ``config``
    (cached: validations in one process share one count per cell). Channel groups need the
    module tree, so this one check imports torch, and only for studies with a structured
    method."""
    from prunescope.models import skeleton
    from prunescope.prune.structured import structured_max_ratio

    inf = info(dataset)
    h, _, c = inf.shape_hwc
    return structured_max_ratio(skeleton(arch, inf.num_classes, c, image_size=h), config)


def is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def is_num(x: Any) -> bool:
    return (isinstance(x, (int, float)) and not isinstance(x, bool)) and math.isfinite(x)


def is_url(s: str) -> bool:
    return "://" in s


def check_ints(v: Messages, doc: dict[str, Any]) -> None:
    """Fail on tables or lists nested deeper than :data:`MAX_NESTING` and on any integer
    outside TOML's 64-bit range (tomllib reads larger ones; torch, NumPy and SQLite cannot hold
    them), anywhere in the document; iterative, so no document is too deep to check."""
    stack: list[tuple[Any, str, int]] = [(doc, "", 0)]
    while stack:
        node, path, depth = stack.pop()
        if isinstance(node, (dict, list)):
            if depth > MAX_NESTING:
                v.fail(path, "(nested value)", f"tables or lists nested at most {MAX_NESTING} "
                       "levels deep")
            items = (node.items() if isinstance(node, dict) else
                     ((f"[{i}]", x) for i, x in enumerate(node)))
            for k, x in items:
                sub = f"{path}{k}" if isinstance(node, list) else (f"{path}.{k}" if path else k)
                stack.append((x, sub, depth + 1))
        elif is_int(node) and not -INT64_MAX - 1 <= node <= INT64_MAX:
            v.fail(path, node, "an integer of at most 64 bits (TOML's range)")


def local_folder(v: Messages, key: str, text: str, base: Path) -> str:
    """``text`` (relative to ``base``) as an absolute folder path that can be created: no NUL
    byte, at most :data:`MAX_PATH_BYTES` bytes with folder names of at most
    :data:`MAX_PART_BYTES`, and not a file or under one."""
    if not text:
        v.fail(key, text, "a non-empty folder path")
    if "\x00" in text:
        v.fail(key, text, "a folder path without NUL bytes")
    if len(text) > MAX_PATH_BYTES:  # before resolving: a huge path takes minutes to resolve
        v.fail(key, f"{text[:40]}...", f"a folder path of at most {MAX_PATH_BYTES} bytes")
    try:
        path = (base / text).resolve()
    except (OSError, RuntimeError, ValueError) as e:
        v.fail(key, text, f"a folder path that resolves ({e})")
    if len(str(path).encode("utf-8", "surrogateescape")) > MAX_PATH_BYTES:
        v.fail(key, text, f"a folder path of at most {MAX_PATH_BYTES} bytes once absolute")
    for part in path.parts:
        if len(part.encode("utf-8", "surrogateescape")) > MAX_PART_BYTES:
            v.fail(key, text, f"folder names of at most {MAX_PART_BYTES} bytes (the file "
                   f"system's limit; {part[:20]!r}... is longer)")
    for folder in (path, *path.parents):
        try:
            if folder.exists():
                if not folder.is_dir():
                    v.fail(key, text, f"a folder, not a file or a path under one ({folder} is a "
                           "file)")
                break
        except OSError:
            break
    return str(path)


def artifact_url(v: Messages, text: str) -> str:
    """``text``, an fsspec URL (``s3://bucket/x``, ``simplecache::s3://...``) whose every
    protocol fsspec knows and whose backend package is installed."""
    import fsspec

    if "\x00" in text:
        v.fail("artifacts", text, "a URL without NUL bytes")
    for part in text.split("::"):
        protocol = part.split("://", 1)[0]
        try:
            fsspec.get_filesystem_class(protocol)
        except ImportError as e:
            v.fail("artifacts", text, f"a URL whose backend is installed: {e}")
        except ValueError:
            v.fail("artifacts", text, "a local folder or a URL of a protocol fsspec knows "
                   "(e.g. s3://, gs://, memory://, file://)")
    return text
