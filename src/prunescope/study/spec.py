"""Study specification: one TOML file -> a validated, frozen :class:`StudySpec`.

Every key, its default and its allowed values are documented in ``docs/studies.md``. Validation
happens entirely in :func:`load_spec` / :func:`parse_spec`, before any work: an unknown key, a
wrong type, an impossible value or one beyond the bounds below (past which a run could only fail
or never finish) raises :class:`SpecError`, one line naming the file, the key, the value found and
what is allowed.
"""
from __future__ import annotations

import dataclasses
import functools
import math
import os
import tomllib
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from prunescope import choices, methods as registry
from prunescope.choices import DATASETS, DEVICES, GRADIENT_MODES, MAX_CUDA_INDEX, SCOPES
from prunescope.data import expected, info
from prunescope.data.imbalance import PROFILES, class_counts
from prunescope.data.splits import val_quota
from prunescope.models import ARCHS, build_model
from prunescope.prune import count_parameters, prunable
from prunescope.train import Recipe
from prunescope.train.pack import PackOptions

#: one-shot unstructured criteria (SPEC 3): prune_finetune jobs (:mod:`prunescope.methods`)
ONE_SHOT_METHODS = registry.names("one-shot")
#: iterative magnitude pruning with weight rewinding (SPEC 3, last bullet): rewind + lth_level jobs
ITERATIVE_METHODS = registry.names("iterative")
#: structured channel pruning (SPEC 3, last bullet): structured jobs, channels removed for real
STRUCTURED_METHODS = registry.names("structured")
#: pruning methods the study layer runs (SPEC 3), in the order cells list them
METHODS = registry.names()
#: methods of SPEC 3 the spec recognises but the study layer cannot run yet (none left)
PLANNED_METHODS: tuple[str, ...] = ()
#: methods that need the data-loss gradient of the dense model
GRADIENT_METHODS = registry.names(needs_gradients=True)

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

_TOP_KEYS = {
    "name", "seed", "models", "datasets", "architectures", "methods", "ratios", "scope",
    "distributions", "output", "artifacts", "device", "n_val", "test_subset", "split_seed",
    "corruption_seed", "gradients", "train", "finetune", "executor", "grid",
    "prune_classifier", "prune_biases", "lth", "structured", "imbalance",
}
_LTH_KEYS = {"rewind_steps", "prune_fraction", "retrain"}
_STRUCTURED_KEYS = {"chip_images", "scope", "config"}
#: recipes an LTH level may retrain with (``[lth] retrain``)
LTH_RETRAIN = ("finetune", "train")
_GRID_KEYS = {"datasets", "architectures", "methods", "ratios", "imbalance"}
#: keys a ``[[grid]]`` entry may set to override the study-wide value for its cells
_CELL_FLAG_KEYS = ("prune_classifier", "prune_biases")
_IMBALANCE_KEYS = {"ratio", "profile", "seed"}
_GRADIENT_KEYS = {"mode", "n_batches"}
_EXECUTOR_KEYS = {"pack_size", "workers", "gpus_per_pack", "cpus_per_pack", "threads",
                  "deterministic", "pack_options"}
#: keys of ``[executor.pack_options]``: the pack trainer's device switches
_PACK_OPTION_KEYS = set(PackOptions.__dataclass_fields__)
_RECIPE_EXTRA_KEYS = {"epochs_scale", "epochs"}


class SpecError(ValueError):
    """A study spec is invalid; the message names the file, key, value and what is allowed."""


@dataclass(frozen=True)
class ImbalanceSpec:
    """A long-tailed training split (``[imbalance]``, or ``imbalance = {...}`` in a grid entry):
    :func:`prunescope.data.imbalance.class_counts` with ``ratio`` (largest / smallest class
    count, > 1) and ``profile`` (``exponential`` or ``step``); ``seed`` draws which images each
    class keeps. The validation hold-out is drawn from the imbalanced split; test sets stay
    balanced. A ratio of 1 in the file means the balanced split (no ImbalanceSpec)."""

    ratio: float
    profile: str = "exponential"
    seed: int = 0

    @property
    def label(self) -> str:
        """Suffix of the dataset label in results: ``lt<ratio>`` (exponential) or
        ``step<ratio>``, e.g. ``fashion-mnist-lt10``."""
        return f"{'lt' if self.profile == 'exponential' else 'step'}{self.ratio:g}"

    def counts(self, dataset: str) -> tuple[int, ...]:
        """Images per class of the imbalanced training split of ``dataset`` (before the
        validation hold-out), from the registry's class counts."""
        avail = expected(dataset).counts["train"]
        return tuple(int(c) for c in class_counts(avail, self.ratio, self.profile))


@dataclass(frozen=True)
class Cell:
    """One (dataset, architecture, training split) cell of the grid and the pruning it receives.

    Attributes:
        dataset, arch: names from :data:`DATASETS`, :data:`ARCHS`.
        methods: ``((method, (ratio, ...)), ...)``, methods in :data:`METHODS` order, ratios
            ascending compression ratios > 1 (SPEC 3).
        prune_classifier, prune_biases: the prunable set of this cell's unstructured pruning
            (SPEC 3): the ``[[grid]]`` entry's value, else the study-wide one.
        imbalance: the long-tailed training split, ``None`` for the full (balanced) one.
    """

    dataset: str
    arch: str
    methods: tuple[tuple[str, tuple[float, ...]], ...]
    prune_classifier: bool = False
    prune_biases: bool = False
    imbalance: ImbalanceSpec | None = None

    @property
    def label(self) -> str:
        """The dataset label of this cell's results: ``dataset``, or ``dataset-<imbalance
        label>`` for a long-tailed training split (e.g. ``mnist-lt100``)."""
        return self.dataset if self.imbalance is None else f"{self.dataset}-{self.imbalance.label}"


@dataclass(frozen=True)
class GradientSpec:
    """How GP and UP obtain the data-loss gradient (SPEC 3): ``mode`` in :data:`GRADIENT_MODES`;
    ``n_batches`` (batches of the training recipe's batch size) only for ``mode = "batches"``."""

    mode: str = "full"
    n_batches: int | None = None


@dataclass(frozen=True)
class LthSpec:
    """Iterative magnitude pruning with rewinding (``[lth]``, method ``lth``).

    Attributes:
        rewind_steps: optimiser steps of the dense run after which the weights (and BN buffers)
            are saved; survivors are rewound to them at every level (0 = the initialisation,
            the original lottery ticket; default 500, Frankle et al. 2020).
        prune_fraction: fraction of the remaining prunable weights removed per level, in (0, 1)
            (default 0.2).
        retrain: recipe each level retrains with after rewinding: ``"finetune"`` (default, the
            ``[finetune]`` recipe, as long as MP's fine-tuning) or ``"train"`` (the full
            ``[train]`` recipe, as Frankle et al.).
    """

    rewind_steps: int = 500
    prune_fraction: float = 0.2
    retrain: str = "finetune"


@dataclass(frozen=True)
class StructuredSpec:
    """Structured channel pruning (``[structured]``, methods ``l1-filter`` and ``chip``).

    Attributes:
        chip_images: training images (no augmentation) CHIP averages its nuclear-norm channel
            scores over (default 256, "a few hundred").
        scope: ``"layer"`` (default: every channel group loses the same fraction, so the
            achieved ratio depends only on the architecture and ratio) or ``"global"``.
        config: ``(method, config name)`` per structured method: ``"uniform"`` (default, every
            block's inner channels narrowed by one fraction) or a published per-layer config
            of ``prunescope.prune.structured_configs`` (``"chip-resnet56"``, ``"li-resnet56"``).
    """

    chip_images: int = 256
    scope: str = "layer"
    config: tuple[tuple[str, str], ...] = tuple((m, "uniform") for m in STRUCTURED_METHODS)

    def config_of(self, method: str) -> str:
        """The config structured ``method`` prunes with."""
        return dict(self.config)[method]


@dataclass(frozen=True)
class ExecutorSpec:
    """Scheduling settings (never part of a job id).

    Attributes:
        pack_size: jobs of one (kind, dataset, arch) fused into one pack, >= 1 (1 = one model
            at a time, the default), or ``"auto"``: ``prunescope.train.pack.auto_pack_size``
            (from the GPU's free memory; 1 on a CPU, where packs do not pay).
        workers: packs the local executor runs at once, each in its own process (1 = in the
            driver's process).
        gpus_per_pack: GPUs a Ray pack task asks for when the cluster has GPUs, in (0, 1] or a
            whole number.
        cpus_per_pack: CPUs a Ray pack task asks for when there are no GPUs.
        threads: torch intra-op threads in each worker; 0 = torch's default (1 in the worker
            processes of ``workers > 1``). Pin it (e.g. 1) when results must be bit-identical
            between executors with different CPU counts.
        deterministic: (TOML ``true``, ``false`` or ``"auto"``, held as ``True``, ``False`` or
            ``None``) ``True``: every job runs with ``torch.use_deterministic_algorithms``
            (on CUDA warn-only); ``False``: not, and on CUDA cuDNN autotunes its kernels
            (``cudnn.benchmark``); ``"auto"`` (default): ``True`` on the CPU (bit-identical
            reruns and resumes), ``False`` on CUDA, whose fast path (bf16, compiled CUDA graphs)
            is not bitwise reproducible anyway and where deterministic kernels cost speed.
        pack_options: ``(switch, bool)`` pairs from ``[executor.pack_options]`` overriding the
            device defaults of :class:`~prunescope.train.pack.PackOptions` (everything on for
            CUDA, fp32 eager on the CPU) for packs of G > 1, e.g. ``compile = false``.
    """

    pack_size: int | str = 1
    workers: int = 1
    gpus_per_pack: float = 1.0
    cpus_per_pack: int = 1
    threads: int = 0
    deterministic: bool | None = None
    pack_options: tuple[tuple[str, bool], ...] = ()

    def pack_options_for(self, device: str) -> PackOptions:
        """The :class:`~prunescope.train.pack.PackOptions` of stacked packs on ``device``: its
        defaults with ``pack_options`` applied (``ValueError`` if they cannot run there)."""
        options = PackOptions.for_device(device, **dict(self.pack_options))
        options.check(torch.device(device))
        return options


@dataclass(frozen=True)
class StudySpec:
    """A validated study.

    Attributes:
        name: study name (letters, digits, ``-``, ``_``, ``.``).
        seed: study seed; model m's seed is :func:`prunescope.study.plan.model_seed` (seed, m).
        models: number of independently trained models (seeds) per cell.
        cells: the grid, one :class:`Cell` per (dataset, arch), in the file's order.
        scope: mask scope, ``global`` or ``layer`` (SPEC 3).
        prune_classifier, prune_biases: study-wide default of the prunable set (SPEC 3; both off
            by default); a ``[[grid]]`` entry may override them, so read them from the
            :class:`Cell`.
        distributions: test distributions every model is evaluated on (``nominal`` first).
        gradients: gradient mode of GP/UP.
        train_overrides, finetune_overrides: ``((key, value), ...)`` applied on top of the
            SPEC 4 recipe of each architecture; ``arch_overrides`` per-architecture ones,
            ``((phase, arch, ((key, value), ...)), ...)``.
        n_val: images held out of the training split for checkpoint choice (SPEC 4).
        test_subset: evaluate on a seeded stratified subset of this many test images
            (``None``: the whole test split, as the paper); for smoke tests only.
        split_seed: seed of the stratified train/validation draw (and of ``test_subset``).
        corruption_seed: seed of the corrupted test sets (shared by every model).
        output: absolute local path of the study's output folder (the SQLite store lives there).
        artifacts: where weights, masks and gradients go: a local path or any fsspec URL
            (default ``<output>/artifacts``); Ray workers on other machines need a shared one.
        device: ``auto``, ``cpu``, ``cuda`` or ``cuda:N``.
        executor: scheduling settings.
        lth: settings of method ``lth`` (:class:`LthSpec`).
        structured: settings of methods ``l1-filter`` and ``chip`` (:class:`StructuredSpec`).
        path: the spec file (``None`` when parsed from a string); text: its exact text.
    """

    name: str
    seed: int
    models: int
    cells: tuple[Cell, ...]
    scope: str = "global"
    prune_classifier: bool = False
    prune_biases: bool = False
    distributions: tuple[str, ...] = ("nominal",)
    gradients: GradientSpec = GradientSpec()
    train_overrides: tuple[tuple[str, Any], ...] = ()
    finetune_overrides: tuple[tuple[str, Any], ...] = ()
    arch_overrides: tuple[tuple[str, str, tuple[tuple[str, Any], ...]], ...] = ()
    n_val: int = 5000
    test_subset: int | None = None
    split_seed: int = 0
    corruption_seed: int = 0
    output: str = ""
    artifacts: str = ""
    device: str = "auto"
    executor: ExecutorSpec = ExecutorSpec()
    lth: LthSpec = LthSpec()
    structured: StructuredSpec = StructuredSpec()
    path: str | None = None
    text: str = ""

    def recipe(self, arch: str, phase: str) -> Recipe:
        """The recipe of ``phase`` (``train`` or ``finetune``) for ``arch``: SPEC 4's
        ``Recipe.paper(arch)`` with the spec's ``[train]``/``[finetune]`` overrides, then the
        ``[train.<arch>]``/``[finetune.<arch>]`` ones."""
        if phase not in ("train", "finetune"):
            raise ValueError(f"phase must be 'train' or 'finetune', got {phase!r}")
        base = Recipe.paper(arch, finetune=phase == "finetune")
        general = self.train_overrides if phase == "train" else self.finetune_overrides
        specific = next((o for p, a, o in self.arch_overrides if p == phase and a == arch), ())
        return _apply_overrides(base, dict(general) | dict(specific), f"[{phase}]")

    def device_name(self) -> str:
        """The torch device to use: ``auto`` resolves to ``cuda`` when available, else ``cpu``."""
        return choices.resolve_device(self.device)


def load_spec(path: str | os.PathLike[str], output: str | None = None) -> StudySpec:
    """Read and validate a study TOML file.

    Args:
        path: the ``.toml`` file.
        output: overrides the spec's ``output`` (a local folder; relative to the current
            directory).

    Returns:
        The frozen :class:`StudySpec`. A relative ``output`` in the file resolves against the
        file's folder; without ``output`` the study writes to ``<file's folder>/runs/<name>``.

    Raises:
        SpecError: unreadable file, TOML syntax error, or any invalid key/value.
    """
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as e:
        raise SpecError(f"cannot read study spec {str(p)!r}: {e.strerror or e}") from e
    return parse_spec(text, base_dir=p.resolve().parent, source=str(p.resolve()), output=output)


def _pack_options(v: _Validator, etab: dict[str, Any]) -> tuple[tuple[str, bool], ...]:
    """``[executor.pack_options]`` as sorted ``(switch, bool)`` pairs (names and types checked;
    :meth:`ExecutorSpec.pack_options_for` checks that they fit together and the device)."""
    tab = v.get(etab, "pack_options", dict, default={}, prefix="executor.")
    v.keys(tab, _PACK_OPTION_KEYS, "executor.pack_options.")
    for key, value in tab.items():
        if not isinstance(value, bool):
            v.fail(f"executor.pack_options.{key}", value, "true or false")
    return tuple(sorted(tab.items()))


def _deterministic(v: _Validator, etab: dict[str, Any]) -> bool | None:
    """``[executor] deterministic``: ``true``/``false``, or ``"auto"`` (the default) as ``None``."""
    value = etab.get("deterministic", "auto")
    if value != "auto" and not isinstance(value, bool):
        v.fail("executor.deterministic", value, 'true, false or "auto"')
    return None if value == "auto" else value


def parse_spec(
    text: str,
    base_dir: str | os.PathLike[str] | None = None,
    source: str | None = None,
    output: str | None = None,
) -> StudySpec:
    """Validate TOML ``text`` into a :class:`StudySpec` (see :func:`load_spec`).

    ``base_dir`` (default: the current directory) anchors a relative ``output``; ``source``
    names the file in error messages and becomes ``StudySpec.path``; ``output`` overrides the
    spec's output folder (relative to the current directory).
    """
    where = source or "<study spec>"
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise SpecError(f"{where}: not valid TOML: {e}") from e
    v = _Validator(where)
    v.keys(raw, _TOP_KEYS, "")
    _check_ints(v, raw, "")

    name = v.get(raw, "name", str, required=True)
    if not (0 < len(name) <= MAX_NAME and name[0].isalnum()
            and all(ch.isalnum() or ch in "-_." for ch in name)):
        v.fail("name", name, f"a name of 1 to {MAX_NAME} letters, digits, '-', '_' or '.', "
               "starting with a letter or digit")
    seed = _seed(v, raw, "seed")
    models = v.get(raw, "models", int, required=True)
    if not 1 <= models <= MAX_JOBS:
        v.fail("models", models, f"an integer from 1 to {MAX_JOBS} (the number of seeds per "
               "cell)")
    scope = v.choice(raw, "scope", SCOPES, default="global")
    prune_classifier = v.get(raw, "prune_classifier", bool, default=False)
    prune_biases = v.get(raw, "prune_biases", bool, default=False)
    device = v.get(raw, "device", str, default=choices.DEFAULT_DEVICE)
    if (error := choices.device_error(device)) is not None:
        v.fail("device", device, error)
    n_val = v.get(raw, "n_val", int, default=5000)
    if n_val < 1:
        v.fail("n_val", n_val, "an integer >= 1 (validation images held out of the train split)")
    test_subset = v.get(raw, "test_subset", int, default=None)
    if test_subset is not None and test_subset < 1:
        v.fail("test_subset", test_subset, "an integer >= 1 (test images to evaluate on)")
    split_seed = _seed(v, raw, "split_seed")
    corruption_seed = _seed(v, raw, "corruption_seed")

    raw_dists = v.get(raw, "distributions", list, default=["nominal"])
    if len(raw_dists) > MAX_JOBS:
        v.fail("distributions", raw_dists, f"at most {MAX_JOBS} distributions")
    distributions = tuple(_distribution(v, f"distributions[{i}]", d)
                          for i, d in enumerate(raw_dists))
    if len(set(distributions)) != len(distributions) or not distributions:
        v.fail("distributions", raw_dists, "a non-empty list without repeats")
    distributions = tuple(sorted(distributions, key=lambda d: (d != "nominal", d)))

    top_methods = v.methods(raw, "methods", default=None)
    top_ratios = v.ratios(raw, "ratios", default=None)
    top_imbalance = _imbalance(v, raw, "", None)
    cells = _cells(v, raw, top_methods, top_ratios, prune_classifier, prune_biases, top_imbalance)

    gtab = v.get(raw, "gradients", dict, default={})
    v.keys(gtab, _GRADIENT_KEYS, "gradients.")
    mode = v.choice(gtab, "mode", GRADIENT_MODES, default="full", prefix="gradients.")
    n_batches = v.get(gtab, "n_batches", int, default=None, prefix="gradients.")
    if mode == "batches" and (n_batches is None or n_batches < 1):
        v.fail("gradients.n_batches", n_batches, "an integer >= 1 when gradients.mode = 'batches'")
    if mode != "batches" and n_batches is not None:
        v.fail("gradients.n_batches", n_batches, "absent unless gradients.mode = 'batches'")

    etab = v.get(raw, "executor", dict, default={})
    v.keys(etab, _EXECUTOR_KEYS, "executor.")
    ex = ExecutorSpec(
        pack_size=etab.get("pack_size", 1),  # checked below
        workers=v.get(etab, "workers", int, default=1, prefix="executor."),
        gpus_per_pack=float(v.get(etab, "gpus_per_pack", float, default=1.0, prefix="executor.")),
        cpus_per_pack=v.get(etab, "cpus_per_pack", int, default=1, prefix="executor."),
        threads=v.get(etab, "threads", int, default=0, prefix="executor."),
        deterministic=_deterministic(v, etab),
        pack_options=_pack_options(v, etab),
    )
    if ex.pack_size != "auto" and not (_is_int(ex.pack_size)
                                       and 1 <= ex.pack_size <= MAX_PACK_SIZE):
        v.fail("executor.pack_size", ex.pack_size, f"an integer from 1 to {MAX_PACK_SIZE} (models "
               "trained at once in one pack) or \"auto\"")
    if not 1 <= ex.workers <= MAX_WORKERS:
        v.fail("executor.workers", ex.workers, f"an integer from 1 to {MAX_WORKERS} (local "
               "worker processes)")
    g = ex.gpus_per_pack
    if not (0.01 <= g <= 1 or (1 < g <= MAX_GPUS_PER_PACK and g == int(g))):
        v.fail("executor.gpus_per_pack", g, "a fraction in [0.01, 1] or a whole number of GPUs "
               f"up to {MAX_GPUS_PER_PACK}")
    if not 1 <= ex.cpus_per_pack <= MAX_CPUS_PER_PACK:
        v.fail("executor.cpus_per_pack", ex.cpus_per_pack, f"an integer from 1 to "
               f"{MAX_CPUS_PER_PACK}")
    if not 0 <= ex.threads <= MAX_THREADS:
        v.fail("executor.threads", ex.threads, f"an integer from 0 to {MAX_THREADS} (0 = "
               "torch's default)")
    try:  # as for CUDA unless the spec names the CPU; the run checks its resolved device again
        ex.pack_options_for("cpu" if device == "cpu" else "cuda")
    except ValueError as e:
        v.fail("executor.pack_options", dict(ex.pack_options), str(e))

    ltab = v.get(raw, "lth", dict, default={})
    v.keys(ltab, _LTH_KEYS, "lth.")
    lth = LthSpec(
        rewind_steps=v.get(ltab, "rewind_steps", int, default=500, prefix="lth."),
        prune_fraction=float(v.get(ltab, "prune_fraction", float, default=0.2, prefix="lth.")),
        retrain=v.choice(ltab, "retrain", LTH_RETRAIN, default="finetune", prefix="lth."),
    )
    if lth.rewind_steps < 0:
        v.fail("lth.rewind_steps", lth.rewind_steps, "an integer >= 0 (optimiser steps of the "
               "dense run; 0 = rewind to the initialisation)")
    if not 0.0 < lth.prune_fraction < 1.0:
        v.fail("lth.prune_fraction", lth.prune_fraction, "a fraction in (0, 1) of the remaining "
               "prunable weights removed per level (0.2 = 20%)")
    stab = v.get(raw, "structured", dict, default={})
    v.keys(stab, _STRUCTURED_KEYS, "structured.")
    structured = StructuredSpec(
        chip_images=v.get(stab, "chip_images", int, default=256, prefix="structured."),
        scope=v.choice(stab, "scope", SCOPES, default="layer", prefix="structured."),
    )
    if structured.chip_images < 1:
        v.fail("structured.chip_images", structured.chip_images, "an integer >= 1 (training "
               "images CHIP averages its channel scores over; a few hundred)")
    structured = dataclasses.replace(structured, config=_structured_config(v, stab,
                                                                           structured.scope))

    archs = sorted({c.arch for c in cells})
    phase_over: dict[str, tuple[tuple[str, Any], ...]] = {}
    arch_over: list[tuple[str, str, tuple[tuple[str, Any], ...]]] = []
    for phase in ("train", "finetune"):
        tab = v.get(raw, phase, dict, default={})
        general = {k: val for k, val in tab.items() if not isinstance(val, dict)}
        phase_over[phase] = _validated_overrides(v, general, f"{phase}.")
        for arch, sub in ((k, val) for k, val in tab.items() if isinstance(val, dict)):
            if arch not in ARCHS:
                v.fail(f"{phase}.{arch}", "(table)", f"a recipe key or an architecture table "
                       f"[{phase}.<arch>] with <arch> one of {', '.join(ARCHS)}")
            arch_over.append((phase, arch, _validated_overrides(v, sub, f"{phase}.{arch}.")))

    base = Path(base_dir) if base_dir is not None else Path.cwd()
    if output is None:
        out_raw = v.get(raw, "output", str, default=f"runs/{name}")
        if _is_url(out_raw):
            v.fail("output", out_raw, "a local folder (the SQLite store needs a local file); put "
                   "remote artifacts under the 'artifacts' key instead")
        output = _local_folder(v, "output", out_raw, base)
    else:
        output = _local_folder(v, "output (--output)", output, Path.cwd())
    art_raw = v.get(raw, "artifacts", str, default=None)
    if art_raw is None:
        artifacts = _local_folder(v, "output", str(Path(output) / "artifacts"), base)
    elif _is_url(art_raw):
        artifacts = _artifact_url(v, art_raw)
    else:
        artifacts = _local_folder(v, "artifacts", art_raw, base)

    spec = StudySpec(
        name=name, seed=seed, models=models, cells=cells, scope=scope,
        prune_classifier=prune_classifier, prune_biases=prune_biases,
        distributions=distributions, gradients=GradientSpec(mode, n_batches),
        train_overrides=phase_over["train"], finetune_overrides=phase_over["finetune"],
        arch_overrides=tuple(arch_over), n_val=n_val, test_subset=test_subset,
        split_seed=split_seed, corruption_seed=corruption_seed, output=output,
        artifacts=artifacts, device=device, executor=ex, lth=lth, structured=structured,
        path=source, text=text,
    )
    for arch in archs:  # build every recipe now so recipe errors surface before any work
        for phase in ("train", "finetune"):
            try:
                recipe = spec.recipe(arch, phase)
            except ValueError as e:
                raise SpecError(f"{where}: the [{phase}] recipe of {arch} is invalid: "
                                f"{e}") from e
            if recipe.epochs > MAX_EPOCHS:
                key = next(f"{t}.{k}" for t in (f"{phase}.{arch}", phase)
                           for k in ("epochs", "epochs_scale", "schedule")
                           if k in _table(raw, t))
                v.fail(key, _table(raw, key.rsplit(".", 1)[0])[key.rsplit(".", 1)[1]],
                       f"a recipe of at most {MAX_EPOCHS} epochs ({arch}'s [{phase}] recipe has "
                       f"{recipe.epochs})")
    for cell in cells:
        counts = (cell.imbalance.counts(cell.dataset) if cell.imbalance is not None
                  else expected(cell.dataset).counts["train"])
        n_train = sum(counts)
        split = f"the {'imbalanced ' if cell.imbalance else ''}training split of {cell.label}"
        if n_val >= n_train:
            v.fail("n_val", n_val, f"fewer than the {n_train} images of {split}")
        if (val_quota(counts, n_val) >= counts).any():
            v.fail("n_val", n_val, f"a hold-out that leaves every class of {split} at least one "
                   f"training image (its class counts: {list(counts)})")
    chip_cells = [c for c in cells if "chip" in dict(c.methods)]
    for dataset in sorted({c.dataset for c in cells}):
        n_train, n_test = (sum(n) for n in (expected(dataset).counts["train"],
                                            expected(dataset).counts["test"]))
        if test_subset is not None and test_subset >= n_test:
            v.fail("test_subset", test_subset, f"fewer than the {n_test} test images of "
                   f"{dataset} (leave it out for the whole test split)")
        if any(c.dataset == dataset for c in chip_cells) and (
                structured.chip_images > n_train - n_val):
            v.fail("structured.chip_images", structured.chip_images, f"at most the "
                   f"{n_train - n_val} training images of {dataset} (after n_val)")
    _check_ratios(v, spec)
    _check_job_count(v, spec)
    return spec


def _table(raw: dict[str, Any], dotted: str) -> dict[str, Any]:
    """The (possibly absent, then empty) table at a dotted path of the raw TOML document."""
    for k in dotted.split("."):
        raw = raw.get(k, {}) if isinstance(raw, dict) else {}
    return raw if isinstance(raw, dict) else {}


def _seed(v: _Validator, raw: dict[str, Any], key: str) -> int:
    """A seed key: an integer from 0 to :data:`INT64_MAX` (default 0)."""
    seed = v.get(raw, key, int, default=0)
    if not 0 <= seed <= INT64_MAX:
        v.fail(key, seed, f"an integer from 0 to {INT64_MAX}")
    return seed


def jobs_per_model(spec: StudySpec) -> int:
    """The jobs :func:`prunescope.study.plan.make_plan` plans per model (seed) of ``spec``,
    counted without building them: per cell a ``train`` job, a ``gradients`` job for GP/UP, a
    ``rewind`` job for LTH, one job per pruned model (ratio, or LTH level), and an ``evaluate``
    job per model (dense included) and distribution."""
    total = 0
    for cell in spec.cells:
        methods = dict(cell.methods)
        n_models = 1 + sum(len(r) for m, r in methods.items() if m != "lth")
        n_models += len(lth_schedule(spec, cell))
        total += n_models * (1 + len(spec.distributions))
        total += any(m in GRADIENT_METHODS for m in methods) + ("lth" in methods)
    return total


def _check_job_count(v: _Validator, spec: StudySpec) -> None:
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
    """Achieved ratios of LTH levels 1, 2, ... of ``cell`` up to the first level that reaches the
    cell's largest ``lth`` ratio (from parameter counts alone, :func:`imp_schedule`); ``[]``
    when the cell has no ``lth``.

    Raises:
        UnreachableRatioError: that ratio is above ``n_total / n_fixed``.
        ValueError: a level would prune nothing (too few weights for another level).
    """
    ratios = dict(cell.methods).get("lth")
    if not ratios:
        return []
    return list(_imp_schedule(cell.dataset, cell.arch, float(max(ratios)),
                              spec.lth.prune_fraction, cell.prune_classifier, cell.prune_biases))


@functools.lru_cache(maxsize=64)
def _imp_schedule(dataset: str, arch: str, target: float, fraction: float,
                  prune_classifier: bool, prune_biases: bool) -> tuple[float, ...]:
    """:func:`imp_schedule` of a fresh ``arch`` for ``dataset``; it depends on parameter counts
    only, so validation and planning share one computation per process."""
    from prunescope.prune.iterative import imp_schedule

    return tuple(imp_schedule(_fresh_model(dataset, arch), target_ratio=target,
                              prune_fraction=fraction,
                              prune_classifier=prune_classifier, prune_biases=prune_biases))


def _check_ratios(v: _Validator, spec: StudySpec) -> None:
    """Fail on a ratio that no model of its cell can reach (SPEC 3: all params / nonzero), per
    method family: one-shot and LTH masks can keep every non-prunable parameter only; structured
    pruning keeps at least one channel per group (:func:`structured_max_ratio`). Also checks
    that ``[lth] rewind_steps`` fits in the dense run."""
    for cell in spec.cells:
        methods = dict(cell.methods)
        if not methods:
            continue
        unstructured = [r for m, rs in methods.items() if m not in STRUCTURED_METHODS for r in rs]
        if unstructured:  # (masks need prunable weights; structured pruning is checked below)
            n_total, n_prunable = _parameter_counts(cell.dataset, cell.arch,
                                                    cell.prune_classifier, cell.prune_biases)
            top = max(unstructured)
            reach = choices.reach_error(n_total, n_prunable, top, f"{cell.arch} on {cell.dataset}")
            if reach is not None:
                v.fail("ratios", top, reach)
        if "lth" in methods:
            # levels to the top ratio: keep (1 - f)^L of the prunable weights, with
            # n_total / (n_total - n_prunable + kept) >= top (reachable: checked above)
            top = max(methods["lth"])
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
                       f"a fraction that reaches ratio {max(methods['lth']):g} on {cell.arch}: {e}")
            recipe = spec.recipe(cell.arch, "train")
            n_train = sum(expected(cell.dataset).counts["train"]) - spec.n_val
            per_epoch = math.ceil(n_train / recipe.batch_size)
            if recipe.max_steps_per_epoch is not None:
                per_epoch = min(per_epoch, recipe.max_steps_per_epoch)
            total = per_epoch * recipe.epochs
            if spec.lth.rewind_steps > total:
                v.fail("lth.rewind_steps", spec.lth.rewind_steps,
                       f"at most the {total} optimiser steps of the dense [train] run of "
                       f"{cell.arch} on {cell.dataset}")
        for meth in (m for m in methods if m in STRUCTURED_METHODS):
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
    """``(all parameters, prunable ones)`` of a fresh ``arch`` for ``dataset`` (counts only
    depend on these, so validations in one process share one model build per cell)."""
    model = _fresh_model(dataset, arch)
    return count_parameters(model), sum(p.numel() for p in prunable(
        model, prune_classifier=prune_classifier, prune_biases=prune_biases).values())


@functools.lru_cache(maxsize=64)
def _structured_max_ratio(dataset: str, arch: str, config: str = "uniform") -> float:
    """:func:`structured_max_ratio` of a fresh ``arch`` for ``dataset`` with ``config`` (cached
    likewise)."""
    return structured_max_ratio(_fresh_model(dataset, arch), config)


def _fresh_model(dataset: str, arch: str) -> Any:
    inf = info(dataset)
    h, _, c = inf.shape_hwc
    return build_model(arch, inf.num_classes, c, image_size=h)


def _structured_config(v: _Validator, stab: dict[str, Any], scope: str
                       ) -> tuple[tuple[str, str], ...]:
    """``[structured] config``: one name for every structured method, or a table by method."""
    from prunescope.prune.structured_configs import STRUCTURED_CONFIGS

    names = ("uniform", *STRUCTURED_CONFIGS)
    raw = stab.get("config", "uniform")
    if isinstance(raw, dict):
        v.keys(raw, set(STRUCTURED_METHODS), "structured.config.")
        by_method = {m: raw.get(m, "uniform") for m in STRUCTURED_METHODS}
    else:
        by_method = {m: raw for m in STRUCTURED_METHODS}
    for m, name in by_method.items():
        if name not in names:
            v.fail("structured.config", raw, f"one of {', '.join(names)}, or a table "
                   f"{{{' = ..., '.join(STRUCTURED_METHODS)} = ...}} of them")
        if name != "uniform" and scope != "layer":
            v.fail("structured.scope", scope, f"'layer' with config {name!r} (a published "
                   "config fixes every layer's width)")
    return tuple(by_method.items())


def structured_max_ratio(model: Any, config: str = "uniform") -> float:
    """The largest compression ratio structured pruning with ``config`` reaches on ``model``
    (every channel group it narrows down to one channel): ``n_total / n_after`` (all
    parameters counted, SPEC 3)."""
    from prunescope.prune.structured import structured_max_ratio as max_ratio

    return max_ratio(model, config)


# ---- grid -----------------------------------------------------------------------------------
def _imbalance(v: _Validator, tab: dict[str, Any], prefix: str,
               default: ImbalanceSpec | None) -> ImbalanceSpec | None:
    """The ``imbalance`` table of ``tab`` (``default`` when absent; ``None`` for ratio 1)."""
    if "imbalance" not in tab:
        return default
    key = f"{prefix}imbalance"
    itab = v.get(tab, "imbalance", dict, prefix=prefix)
    v.keys(itab, _IMBALANCE_KEYS, key + ".")
    ratio = v.get(itab, "ratio", float, required=True, prefix=key + ".")
    if not (math.isfinite(ratio) and ratio >= 1):
        v.fail(f"{key}.ratio", ratio, "a finite ratio >= 1 of the largest to the smallest class "
               "count (1 = the balanced split)")
    profile = v.choice(itab, "profile", PROFILES, default="exponential", prefix=key + ".")
    seed = v.get(itab, "seed", int, default=0, prefix=key + ".")
    if seed < 0:
        v.fail(f"{key}.seed", seed, "an integer >= 0")
    return None if ratio == 1 else ImbalanceSpec(float(ratio), profile, seed)


def _cells(
    v: _Validator,
    raw: dict[str, Any],
    top_methods: tuple[str, ...] | None,
    top_ratios: tuple[float, ...] | None,
    prune_classifier: bool,
    prune_biases: bool,
    top_imbalance: ImbalanceSpec | None = None,
) -> tuple[Cell, ...]:
    """Expand the top-level grid or the ``[[grid]]`` entries into merged cells; an entry's
    ``prune_classifier``/``prune_biases`` override the study-wide values for its cells (two
    entries naming one cell must agree on them)."""
    entries: list[tuple[str, dict[str, Any]]]
    if "grid" in raw:
        for key in ("datasets", "architectures"):
            if key in raw:
                v.fail(key, raw[key], "absent when [[grid]] entries are given (put it in each "
                       "[[grid]] entry instead)")
        grid = raw["grid"]
        if not isinstance(grid, list) or not grid or not all(isinstance(g, dict) for g in grid):
            v.fail("grid", grid, "a non-empty array of tables ([[grid]] entries)")
        entries = [(f"grid[{i}].", g) for i, g in enumerate(grid)]
    else:
        entries = [("", {k: raw[k] for k in _GRID_KEYS if k in raw})]

    merged: dict[tuple[str, str, ImbalanceSpec | None], dict[str, set[float]]] = {}
    flags: dict[tuple[str, str, ImbalanceSpec | None], tuple[tuple[bool, bool], str]] = {}
    for prefix, entry in entries:
        if prefix:
            v.keys(entry, _GRID_KEYS | set(_CELL_FLAG_KEYS), prefix)
        cell_flags = (v.get(entry, "prune_classifier", bool, default=prune_classifier,
                            prefix=prefix),
                      v.get(entry, "prune_biases", bool, default=prune_biases, prefix=prefix))
        imbalance = _imbalance(v, entry, prefix, top_imbalance) if prefix else top_imbalance
        datasets = v.names(entry, "datasets", DATASETS, prefix)
        archs = v.names(entry, "architectures", ARCHS, prefix)
        methods = v.methods(entry, "methods", default=top_methods, prefix=prefix)
        ratios = v.ratios(entry, "ratios", default=top_ratios, prefix=prefix)
        if methods is None:
            v.fail(f"{prefix}methods", None, f"a list of methods from {', '.join(METHODS)} "
                   "(here or at the top level); use [] for dense models only")
        if methods and ratios is None:
            v.fail(f"{prefix}ratios", None, "a list of compression ratios > 1 (here or at the "
                   "top level)")
        for d in datasets:
            for a in archs:
                if (error := choices.arch_error(d, a)) is not None:
                    v.fail(f"{prefix}architectures", a, error)
                if imbalance is not None:
                    n_max = min(expected(d).counts["train"])
                    if imbalance.ratio > n_max:
                        v.fail(f"{prefix}imbalance.ratio", imbalance.ratio, f"at most {n_max} on "
                               f"{d} (its smallest class has {n_max} training images)")
                key = (d, a, imbalance)
                before, where = flags.setdefault(key, (cell_flags, prefix))
                if before != cell_flags:
                    v.fail(f"{prefix}prune_classifier", cell_flags[0],
                           f"the prune_classifier/prune_biases of the other entry naming {a} on "
                           f"{d} ({where.rstrip('.') or 'top level'}: {before[0]}/{before[1]}); "
                           "one cell has one prunable set")
                cell = merged.setdefault(key, {})
                for m in methods or ():
                    cell.setdefault(m, set()).update(ratios or ())
    return tuple(
        Cell(d, a, tuple((m, tuple(sorted(ms[m]))) for m in METHODS if m in ms),
             *flags[(d, a, imb)][0], imbalance=imb)
        for (d, a, imb), ms in merged.items()
    )


# ---- recipe overrides -----------------------------------------------------------------------
def _validated_overrides(v: _Validator, tab: dict[str, Any], prefix: str
                         ) -> tuple[tuple[str, Any], ...]:
    """Type-check ``[train]``/``[finetune]`` keys against :class:`Recipe`'s fields."""
    hints = typing.get_type_hints(Recipe)
    fields = {f.name for f in dataclasses.fields(Recipe)}
    v.keys(tab, fields | _RECIPE_EXTRA_KEYS, prefix)
    if "epochs" in tab and "epochs_scale" in tab:
        v.fail(f"{prefix}epochs", tab["epochs"], "absent when epochs_scale is given (use one)")
    out: list[tuple[str, Any]] = []
    for key in sorted(tab):
        val = tab[key]
        if key == "epochs_scale":
            if not _is_num(val) or not 0 < val <= MAX_EPOCHS:
                v.fail(prefix + key, val, f"a number in (0, {MAX_EPOCHS}] multiplying every "
                       "schedule block's epochs")
            out.append((key, float(val)))
        elif key == "epochs":
            if not _is_int(val) or not 1 <= val <= MAX_EPOCHS:
                v.fail(prefix + key, val, f"an integer from 1 to {MAX_EPOCHS} (the schedule is "
                       "scaled to it)")
            out.append((key, val))
        elif key == "schedule":
            ok = isinstance(val, list) and val and all(
                isinstance(b, list) and len(b) == 2 and _is_int(b[0]) and _is_num(b[1])
                for b in val)
            if not ok:
                v.fail(prefix + key, val, "a non-empty list of [epochs, lr] pairs, e.g. "
                       "[[10, 0.1], [5, 0.01]]")
            out.append((key, tuple((int(e), float(lr)) for e, lr in val)))
        else:
            if not _matches(val, hints[key]):
                v.fail(prefix + key, val, f"a value of type {_type_name(hints[key])}")
            out.append((key, float(val) if hints[key] is float else val))
    return tuple(out)


def _apply_overrides(base: Recipe, over: dict[str, Any], where: str) -> Recipe:
    """``base`` with ``over`` applied; ``epochs_scale``/``epochs`` rescale the schedule last."""
    fields = {k: val for k, val in over.items() if k not in _RECIPE_EXTRA_KEYS}
    recipe = dataclasses.replace(base, **fields)
    if "epochs_scale" in over:
        epochs = max(1, round(recipe.epochs * over["epochs_scale"]))
        recipe = recipe.with_epochs(epochs)
    if "epochs" in over:
        recipe = recipe.with_epochs(over["epochs"])
    return recipe


def _matches(val: Any, hint: Any) -> bool:
    """Whether a TOML value fits a simple type hint (bool, int, float, str, X | None)."""
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        return any(_matches(val, h) for h in typing.get_args(hint))
    if hint is type(None):
        return val is None
    if hint is bool:
        return isinstance(val, bool)
    if hint is int:
        return _is_int(val)
    if hint is float:
        return _is_num(val)
    if hint is str:
        return isinstance(val, str)
    return False


def _type_name(hint: Any) -> str:
    return getattr(hint, "__name__", None) or str(hint)


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _is_num(x: Any) -> bool:
    return (isinstance(x, (int, float)) and not isinstance(x, bool)) and math.isfinite(x)


def _is_url(s: str) -> bool:
    return "://" in s


def _printable(key: str) -> str:
    """A key path as shown in a message: non-printable characters (newlines, NUL, bidi
    controls) escaped, so every message stays one readable line."""
    return key if key.isprintable() else repr(key)[1:-1]


def _check_ints(v: _Validator, node: Any, path: str) -> None:
    """Fail on any integer outside TOML's 64-bit range, anywhere in the document (tomllib reads
    larger ones; torch, NumPy and SQLite cannot hold them)."""
    if isinstance(node, dict):
        for k, x in node.items():
            _check_ints(v, x, f"{path}.{k}" if path else k)
    elif isinstance(node, list):
        for i, x in enumerate(node):
            _check_ints(v, x, f"{path}[{i}]")
    elif _is_int(node) and not -INT64_MAX - 1 <= node <= INT64_MAX:
        v.fail(path, node, "an integer of at most 64 bits (TOML's range)")


def _local_folder(v: _Validator, key: str, text: str, base: Path) -> str:
    """``text`` (relative to ``base``) as an absolute folder path that can be created: no NUL
    byte, at most :data:`MAX_PATH_BYTES` bytes with folder names of at most
    :data:`MAX_PART_BYTES`, and not a file or under one."""
    if not text:
        v.fail(key, text, "a non-empty folder path")
    if "\x00" in text:
        v.fail(key, text, "a folder path without NUL bytes")
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


def _artifact_url(v: _Validator, text: str) -> str:
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


def _distribution(v: _Validator, key: str, name: Any) -> str:
    """The canonical name of a test distribution (``prunescope.data.corruptions``)."""
    if (error := choices.distribution_error(name)) is not None:
        v.fail(key, name, error)
    return choices.canonical_distribution(name)


class _Validator:
    """Typed access to a TOML table; every failure names the file, key, value and allowed."""

    def __init__(self, where: str) -> None:
        self.where = where

    def fail(self, key: str, value: Any, allowed: str) -> typing.NoReturn:
        shown = repr(value)
        if len(shown) > 120:
            shown = f"{shown[:100]}... ({len(shown)} characters)"
        raise SpecError(f"{self.where}: key '{_printable(key)}' = {shown} is invalid; "
                        f"allowed: {allowed}")

    def keys(self, tab: dict[str, Any], allowed: set[str], prefix: str) -> None:
        unknown = sorted(set(tab) - allowed)
        if unknown:
            raise SpecError(
                f"{self.where}: unknown key '{_printable(prefix + unknown[0])}'"
                + (f" (and {', '.join(_printable(prefix + u) for u in unknown[1:])})"
                   if unknown[1:] else "")
                + f"; allowed keys here: {', '.join(sorted(allowed))}"
            )

    def get(self, tab: dict[str, Any], key: str, typ: type, *, default: Any = None,
            required: bool = False, prefix: str = "") -> Any:
        if key not in tab:
            if required:
                raise SpecError(f"{self.where}: missing required key '{prefix}{key}'")
            return default
        val = tab[key]
        ok = _is_int(val) if typ is int else _is_num(val) if typ is float else isinstance(val, typ)
        if not ok:
            self.fail(prefix + key, val, f"a value of type {typ.__name__}")
        return val

    def choice(self, tab: dict[str, Any], key: str, allowed: tuple[str, ...], *, default: str,
               prefix: str = "") -> str:
        val = self.get(tab, key, str, default=default, prefix=prefix)
        if val not in allowed:
            self.fail(prefix + key, val, f"one of {', '.join(allowed)}")
        return val

    def names(self, tab: dict[str, Any], key: str, allowed: tuple[str, ...], prefix: str
              ) -> tuple[str, ...]:
        vals = self.get(tab, key, list, required=True, prefix=prefix)
        if not vals:
            self.fail(prefix + key, vals, f"a non-empty list from {', '.join(allowed)}")
        for i, x in enumerate(vals):
            if x not in allowed:
                self.fail(f"{prefix}{key}[{i}]", x, f"one of {', '.join(allowed)}")
        return tuple(dict.fromkeys(vals))

    def methods(self, tab: dict[str, Any], key: str, *, default: tuple[str, ...] | None,
                prefix: str = "") -> tuple[str, ...] | None:
        if key not in tab:
            return default
        vals = self.get(tab, key, list, prefix=prefix)
        for i, m in enumerate(vals):
            if m in PLANNED_METHODS:  # pragma: no cover -- none left
                self.fail(f"{prefix}{key}[{i}]", m, f"one of {', '.join(METHODS)} ({m} is "
                          "specified in SPEC 3 but not implemented in the study layer yet)")
            if m not in METHODS:
                self.fail(f"{prefix}{key}[{i}]", m, f"one of {', '.join(METHODS)}")
        return tuple(dict.fromkeys(vals))

    def ratios(self, tab: dict[str, Any], key: str, *, default: tuple[float, ...] | None,
               prefix: str = "") -> tuple[float, ...] | None:
        if key not in tab:
            return default
        vals = self.get(tab, key, list, prefix=prefix)
        if not vals:
            self.fail(prefix + key, vals, "a non-empty list of compression ratios > 1")
        for i, r in enumerate(vals):
            if (error := choices.ratio_error(r)) is not None:
                self.fail(f"{prefix}{key}[{i}]", r, error)
        return tuple(sorted({float(r) for r in vals}))
