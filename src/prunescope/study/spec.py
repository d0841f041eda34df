"""Study specification: one TOML file -> a validated, frozen :class:`StudySpec`.

Every key, its default and its allowed values are documented in ``docs/studies.md``. Validation
happens entirely in :func:`load_spec` / :func:`parse_spec`, before any work: an unknown key, a
wrong type or an impossible value raises :class:`SpecError` naming the key, the value found and
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

from prunescope.data import expected, info
from prunescope.data.corruptions import CORRUPTIONS, Distribution
from prunescope.models import ARCHS, LENET_ARCHS, build_model
from prunescope.prune import UnreachableRatioError, count_parameters, keep_count, prunable
from prunescope.train import Recipe
from prunescope.train.pack import PackOptions

#: datasets a study may name (SPEC 4)
DATASETS = ("mnist", "fashion-mnist", "cifar10", "cifar100")
#: one-shot unstructured criteria (SPEC 3): prune_finetune jobs
ONE_SHOT_METHODS = ("mp", "gp", "up", "rp")
#: iterative magnitude pruning with weight rewinding (SPEC 3, last bullet): rewind + lth_level jobs
ITERATIVE_METHODS = ("lth",)
#: structured channel pruning (SPEC 3, last bullet): structured jobs, channels removed for real
STRUCTURED_METHODS = ("l1-filter", "chip")
#: pruning methods the study layer runs (SPEC 3), in the order cells list them
METHODS = ONE_SHOT_METHODS + ITERATIVE_METHODS + STRUCTURED_METHODS
#: methods of SPEC 3 the spec recognises but the study layer cannot run yet (none left)
PLANNED_METHODS: tuple[str, ...] = ()
#: methods that need the data-loss gradient of the dense model
GRADIENT_METHODS = ("gp", "up")
SCOPES = ("global", "layer")
GRADIENT_MODES = ("full", "batches", "shrinkbench")
DEVICES = ("auto", "cpu", "cuda")

_TOP_KEYS = {
    "name", "seed", "models", "datasets", "architectures", "methods", "ratios", "scope",
    "distributions", "output", "artifacts", "device", "n_val", "test_subset", "split_seed",
    "corruption_seed", "gradients", "train", "finetune", "executor", "grid",
    "prune_classifier", "prune_biases", "lth", "structured",
}
_LTH_KEYS = {"rewind_steps", "prune_fraction", "retrain"}
_STRUCTURED_KEYS = {"chip_images", "scope", "config"}
#: recipes an LTH level may retrain with (``[lth] retrain``)
LTH_RETRAIN = ("finetune", "train")
_GRID_KEYS = {"datasets", "architectures", "methods", "ratios"}
#: keys a ``[[grid]]`` entry may set to override the study-wide value for its cells
_CELL_FLAG_KEYS = ("prune_classifier", "prune_biases")
_GRADIENT_KEYS = {"mode", "n_batches"}
_EXECUTOR_KEYS = {"pack_size", "workers", "gpus_per_pack", "cpus_per_pack", "threads",
                  "deterministic", "pack_options"}
#: keys of ``[executor.pack_options]``: the pack trainer's device switches
_PACK_OPTION_KEYS = set(PackOptions.__dataclass_fields__)
_RECIPE_EXTRA_KEYS = {"epochs_scale", "epochs"}


class SpecError(ValueError):
    """A study spec is invalid; the message names the file, key, value and what is allowed."""


@dataclass(frozen=True)
class Cell:
    """One (dataset, architecture) cell of the grid and the pruning it receives.

    Attributes:
        dataset, arch: names from :data:`DATASETS`, :data:`ARCHS`.
        methods: ``((method, (ratio, ...)), ...)``, methods in :data:`METHODS` order, ratios
            ascending compression ratios > 1 (SPEC 3).
        prune_classifier, prune_biases: the prunable set of this cell's unstructured pruning
            (SPEC 3): the ``[[grid]]`` entry's value, else the study-wide one.
    """

    dataset: str
    arch: str
    methods: tuple[tuple[str, tuple[float, ...]], ...]
    prune_classifier: bool = False
    prune_biases: bool = False


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
        if self.device != "auto":
            return self.device
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"


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
    out = None if output is None else str(Path(output).resolve())
    return parse_spec(text, base_dir=p.resolve().parent, source=str(p.resolve()), output=out)


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
    spec's output folder as given.
    """
    where = source or "<study spec>"
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise SpecError(f"{where}: not valid TOML: {e}") from e
    v = _Validator(where)
    v.keys(raw, _TOP_KEYS, "")

    name = v.get(raw, "name", str, required=True)
    if not name or not all(ch.isalnum() or ch in "-_." for ch in name):
        v.fail("name", name, "a non-empty name of letters, digits, '-', '_' or '.'")
    seed = v.get(raw, "seed", int, default=0)
    if seed < 0:
        v.fail("seed", seed, "an integer >= 0")
    models = v.get(raw, "models", int, required=True)
    if models < 1:
        v.fail("models", models, "an integer >= 1 (the number of seeds per cell)")
    scope = v.choice(raw, "scope", SCOPES, default="global")
    prune_classifier = v.get(raw, "prune_classifier", bool, default=False)
    prune_biases = v.get(raw, "prune_biases", bool, default=False)
    device = v.get(raw, "device", str, default="auto")
    if device not in DEVICES and not (device.startswith("cuda:") and device[5:].isdigit()):
        v.fail("device", device, "'auto', 'cpu', 'cuda' or 'cuda:N'")
    n_val = v.get(raw, "n_val", int, default=5000)
    if n_val < 1:
        v.fail("n_val", n_val, "an integer >= 1 (validation images held out of the train split)")
    test_subset = v.get(raw, "test_subset", int, default=None)
    if test_subset is not None and test_subset < 1:
        v.fail("test_subset", test_subset, "an integer >= 1 (test images to evaluate on)")
    split_seed = v.get(raw, "split_seed", int, default=0)
    corruption_seed = v.get(raw, "corruption_seed", int, default=0)

    raw_dists = v.get(raw, "distributions", list, default=["nominal"])
    distributions = tuple(_distribution(v, f"distributions[{i}]", d)
                          for i, d in enumerate(raw_dists))
    if len(set(distributions)) != len(distributions) or not distributions:
        v.fail("distributions", raw_dists, "a non-empty list without repeats")
    distributions = tuple(sorted(distributions, key=lambda d: (d != "nominal", d)))

    top_methods = v.methods(raw, "methods", default=None)
    top_ratios = v.ratios(raw, "ratios", default=None)
    cells = _cells(v, raw, top_methods, top_ratios, prune_classifier, prune_biases)

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
        pack_size=etab.get("pack_size", 1),
        workers=v.get(etab, "workers", int, default=1, prefix="executor."),
        gpus_per_pack=float(v.get(etab, "gpus_per_pack", float, default=1.0, prefix="executor.")),
        cpus_per_pack=v.get(etab, "cpus_per_pack", int, default=1, prefix="executor."),
        threads=v.get(etab, "threads", int, default=0, prefix="executor."),
        deterministic=_deterministic(v, etab),
        pack_options=_pack_options(v, etab),
    )
    if ex.pack_size != "auto" and not (_is_int(ex.pack_size) and ex.pack_size >= 1):
        v.fail("executor.pack_size", ex.pack_size, "an integer >= 1 or \"auto\"")
    if ex.workers < 1:
        v.fail("executor.workers", ex.workers, "an integer >= 1 (local worker processes)")
    g = ex.gpus_per_pack
    if not (0 < g <= 1 or (g > 1 and g == int(g))):
        v.fail("executor.gpus_per_pack", g, "a fraction in (0, 1] or a whole number of GPUs")
    if ex.cpus_per_pack < 1:
        v.fail("executor.cpus_per_pack", ex.cpus_per_pack, "an integer >= 1")
    if ex.threads < 0:
        v.fail("executor.threads", ex.threads, "an integer >= 0 (0 = torch's default)")
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
        output = str((base / out_raw).resolve())
    art_raw = v.get(raw, "artifacts", str, default=None)
    if art_raw is None:
        artifacts = str(Path(output) / "artifacts")
    else:
        artifacts = art_raw if _is_url(art_raw) else str((base / art_raw).resolve())

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
                spec.recipe(arch, phase)
            except ValueError as e:
                raise SpecError(f"{where}: the [{phase}] recipe of {arch} is invalid: {e}") from e
    for dataset in sorted({c.dataset for c in cells}):
        n_train = sum(expected(dataset).counts["train"])
        if n_val >= n_train:
            v.fail("n_val", n_val, f"fewer than the {n_train} training images of {dataset}")
    _check_ratios(v, spec)
    return spec


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

    inf = info(dataset)
    h, _, c = inf.shape_hwc
    model = build_model(arch, inf.num_classes, c, image_size=h)
    return tuple(imp_schedule(model, target_ratio=target, prune_fraction=fraction,
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
        inf = info(cell.dataset)
        h, _, c = inf.shape_hwc
        model = build_model(cell.arch, inf.num_classes, c, image_size=h)
        unstructured = [r for m, rs in methods.items() if m not in STRUCTURED_METHODS for r in rs]
        if unstructured:
            top = max(unstructured)
            n_prunable = sum(p.numel() for p in prunable(
                model, prune_classifier=cell.prune_classifier, prune_biases=cell.prune_biases
            ).values())
            try:
                keep_count(count_parameters(model), n_prunable, top)
            except UnreachableRatioError as e:
                v.fail("ratios", top, f"ratios {cell.arch} on {cell.dataset} can reach: {e}")
        if "lth" in methods:
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
                max_ratio = structured_max_ratio(model, config)
            except (TypeError, ValueError, KeyError) as e:
                v.fail("methods", meth, f"structured methods only on architectures "
                       f"prunescope.prune.structured supports (lenet5, resnet*; a published "
                       f"config only on its own); {cell.arch} with config {config!r} failed: {e}")
            if top > max_ratio * (1 + 1e-12):
                v.fail("ratios", top, f"structured ratios ({meth}, config {config!r}) "
                       f"{cell.arch} on {cell.dataset} can reach: at most {max_ratio:.6g} "
                       "(every channel group it narrows down to one channel); lower the ratio "
                       "or drop it for this method with a [[grid]] entry")


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
def _cells(
    v: _Validator,
    raw: dict[str, Any],
    top_methods: tuple[str, ...] | None,
    top_ratios: tuple[float, ...] | None,
    prune_classifier: bool,
    prune_biases: bool,
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

    merged: dict[tuple[str, str], dict[str, set[float]]] = {}
    flags: dict[tuple[str, str], tuple[tuple[bool, bool], str]] = {}
    for prefix, entry in entries:
        if prefix:
            v.keys(entry, _GRID_KEYS | set(_CELL_FLAG_KEYS), prefix)
        cell_flags = (v.get(entry, "prune_classifier", bool, default=prune_classifier,
                            prefix=prefix),
                      v.get(entry, "prune_biases", bool, default=prune_biases, prefix=prefix))
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
                lenet = a in LENET_ARCHS
                if lenet and d.startswith("cifar") or not lenet and "mnist" in d:
                    v.fail(f"{prefix}architectures", a, f"an architecture that fits {d}: "
                           + ("resnet*" if d.startswith("cifar") else ", ".join(LENET_ARCHS)))
                before, where = flags.setdefault((d, a), (cell_flags, prefix))
                if before != cell_flags:
                    v.fail(f"{prefix}prune_classifier", cell_flags[0],
                           f"the prune_classifier/prune_biases of the other entry naming {a} on "
                           f"{d} ({where.rstrip('.') or 'top level'}: {before[0]}/{before[1]}); "
                           "one cell has one prunable set")
                cell = merged.setdefault((d, a), {})
                for m in methods or ():
                    cell.setdefault(m, set()).update(ratios or ())
    return tuple(
        Cell(d, a, tuple((m, tuple(sorted(ms[m]))) for m in METHODS if m in ms),
             *flags[(d, a)][0])
        for (d, a), ms in merged.items()
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
            if isinstance(val, bool) or not isinstance(val, (int, float)) or not val > 0:
                v.fail(prefix + key, val, "a number > 0 multiplying every schedule block's epochs")
            out.append((key, float(val)))
        elif key == "epochs":
            if isinstance(val, bool) or not isinstance(val, int) or val < 1:
                v.fail(prefix + key, val, "an integer >= 1 (the schedule is scaled to it)")
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


def _distribution(v: _Validator, key: str, name: Any) -> str:
    """The canonical name of a test distribution (``prunescope.data.corruptions``)."""
    try:
        return Distribution.parse(name).name
    except (TypeError, ValueError):
        v.fail(key, name, "'nominal', '<corruption>-<severity 1..5>' with corruption one of "
               f"{', '.join(CORRUPTIONS)}, or 'noise-<std>' (std on the 0..1 scale)")


class _Validator:
    """Typed access to a TOML table; every failure names the file, key, value and allowed."""

    def __init__(self, where: str) -> None:
        self.where = where

    def fail(self, key: str, value: Any, allowed: str) -> typing.NoReturn:
        raise SpecError(f"{self.where}: key '{key}' = {value!r} is invalid; allowed: {allowed}")

    def keys(self, tab: dict[str, Any], allowed: set[str], prefix: str) -> None:
        unknown = sorted(set(tab) - allowed)
        if unknown:
            raise SpecError(
                f"{self.where}: unknown key '{prefix}{unknown[0]}'"
                + (f" (and {', '.join(prefix + u for u in unknown[1:])})" if unknown[1:] else "")
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
            if not _is_num(r) or r <= 1:
                self.fail(f"{prefix}{key}[{i}]", r, "a finite compression ratio > 1 "
                          "(all params / nonzero params, SPEC 3)")
        return tuple(sorted({float(r) for r in vals}))
