"""Study specification: one TOML file -> a validated, frozen :class:`StudySpec`.

Each table of the file is declared once, as a pydantic model below (``_Table``: unknown keys
forbidden, strict types, frozen): a key's type, default, bounds, the *allowed* text of its error
and its documentation row are one field (:func:`key`). :func:`load_spec` / :func:`parse_spec`
validate the file against :class:`StudyFile` (pydantic's first error becomes one
:class:`SpecError` line naming the file, the dotted key, the value found and what is allowed),
then check what no single table can (architectures per dataset, ratios reachable, split sizes,
the job cap, recipes, folders) and build the :class:`StudySpec`. The key tables of
``docs/studies.md`` are generated from the models (:func:`key_tables`).
"""
from __future__ import annotations

import dataclasses
import os
import tomllib
import typing
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (PlainValidator, ValidationError, create_model, field_validator,
                      model_validator)
from pydantic_core import PydanticUndefined

from prunescope import choices
from prunescope.catalog import architectures, methods as registry
from prunescope.catalog import objectives as objective_registry
from prunescope.catalog.distributions import CORRUPTIONS
from prunescope.catalog.protocol import (KEEP_RULES, NORMALISATIONS, RP_COUNTS, UP_SCORES,
                                         VALIDATIONS, TrainOptions)
from prunescope.choices import DATASETS, DEVICES, GRADIENT_MODES, MAX_CUDA_INDEX, SCOPES
from prunescope.study.keys import (Messages as _Validator, SpecError, Table as _Table, int_key,
                                   key, refuse as _refuse, sub_table,
                                   key_table, replace_blocks, spec_error)
from prunescope.study.feasibility import (INT64_MAX, MAX_CPUS_PER_PACK, MAX_EPOCHS,
                                          MAX_GPUS_PER_PACK, MAX_JOBS, MAX_NAME, MAX_NESTING,
                                          MAX_PACK_SIZE, MAX_SPEC_BYTES, MAX_THREADS,
                                          MAX_WORKERS, artifact_url,
                                          check_across_tables, check_ints, is_int, is_num,
                                          is_url, local_folder)
from prunescope.study.grid import Cell, ImbalanceSpec, expand_cells
from prunescope.train import Recipe
from prunescope.train.options import DeviceProfile, PackOptions, device_profile

__all__ = ["DEVICES", "MAX_CUDA_INDEX", "Cell", "ExecutorSpec", "GradientSpec", "ImbalanceSpec",
           "LthSpec", "SpecError", "StructuredSpec", "StudyFile", "StudySpec", "key_tables",
           "load_spec", "parse_spec"]

#: how an LTH level retrains (``[lth] retrain``; :class:`LthSpec`)
LTH_RETRAIN = ("finetune", "train", "rewind")


def _ratio(value: Any) -> float:
    if (error := choices.ratio_error(value)) is not None:
        _refuse(error)
    return float(value)


def _method(name: Any) -> str:
    if (error := choices.method_error(name)) is not None:
        _refuse(error)
    return name


def _choice(error_of: Any, name: Any) -> str:
    if (error := error_of(name)) is not None:
        _refuse(error)
    return name


def _architecture(name: Any) -> str:
    if (error := choices.choice_error(name, architectures.names())) is not None:
        _refuse(error)
    return name


def _distribution(name: Any) -> str:
    if (error := choices.distribution_error(name)) is not None:
        _refuse(error)
    return choices.canonical_distribution(name)


Ratio = Annotated[float, PlainValidator(_ratio)]
DistributionName = Annotated[str, PlainValidator(_distribution)]
MethodName = Annotated[str, PlainValidator(_method)]
ObjectiveName = Annotated[str, PlainValidator(lambda name: _choice(choices.objective_error, name))]
ArchitectureName = Annotated[str, PlainValidator(_architecture)]


# ---- the tables -----------------------------------------------------------------------------
class GradientSpec(_Table):
    """How GP and UP obtain the data-loss gradient (``[gradients]``, SPEC 3)."""

    mode: Literal[GRADIENT_MODES] = key(
        "full", "`full` (one pass over the training split, eval mode), `batches` (the first "
        "`n_batches` batches of a seeded shuffle), `shrinkbench` (one batch of the training "
        "batch size in train mode)")
    n_batches: int | None = int_key(
        None, 1, note="with gradients.mode = 'batches'", doc_default="absent",
        doc='int >= 1, required with and only with `mode = "batches"`')
    augment: bool = key(
        False, "with `mode = \"shrinkbench\"`: the batch is cropped and flipped wherever the "
        "`[train]` recipe augments (the authors' fork draws it from its training loader); no "
        "effect on an architecture trained without augmentation (its gradient ids unchanged)")

    @model_validator(mode="after")
    def _batches_go_with_their_mode(self) -> GradientSpec:
        if self.mode == "batches" and self.n_batches is None:
            _refuse("an integer >= 1 when gradients.mode = 'batches'", "n_batches", None)
        if self.mode != "batches" and self.n_batches is not None:
            _refuse("absent unless gradients.mode = 'batches'", "n_batches", self.n_batches)
        if self.augment and self.mode != "shrinkbench":
            _refuse("false unless gradients.mode = 'shrinkbench'", "augment", self.augment)
        return self


class LthSpec(_Table):
    """Iterative magnitude pruning with rewinding (``[lth]``, method ``lth``; Frankle et al.
    2020). The mask scope is the top-level ``scope``; the prunable set is each cell's."""

    rewind_steps: int = int_key(
        500, 0, note="optimiser steps of the dense run; 0 = rewind to the initialisation",
        doc="int >= 0: optimiser steps of the dense `[train]` run after which weights and BN "
        "buffers are saved; every level rewinds its survivors to them (0 = the initialisation, the original "
        "lottery ticket). Must not exceed the dense run's steps (checked)")
    prune_fraction: float = key(
        0.2, "in (0, 1): fraction of the *remaining* prunable weights removed per level (level L "
        "keeps `round(n_prunable * (1 - f)^L)`)", gt=0, lt=1,
        allowed="a fraction in (0, 1) of the remaining prunable weights removed per level "
        "(0.2 = 20%)")
    retrain: Literal[LTH_RETRAIN] = key(
        "finetune", "how every level retrains after rewinding: `finetune` (the `[finetune]` "
        "recipe, as long as MP's fine-tuning: comparable cost and protocol), `train` (the whole "
        "`[train]` recipe again from its first epoch) or `rewind` (the `[train]` recipe from "
        "step `rewind_steps` to its end, fresh momentum: Frankle et al. 2020's retraining, "
        "`fit(start_step=rewind_steps)`)")


def _structured_configs() -> tuple[str, ...]:
    from prunescope.catalog.structured_configs import STRUCTURED_CONFIGS

    return ("uniform", *STRUCTURED_CONFIGS)


class StructuredSpec(_Table):
    """Structured channel pruning (``[structured]``, methods ``l1-filter`` and ``chip``)."""

    chip_images: int = int_key(
        256, 1, note="training images CHIP averages its channel scores over; a few hundred",
        doc="int >= 1: training images (no augmentation, drawn with `derive_seed(seed, "
        "\"chip\")`) CHIP averages its nuclear-norm channel scores over; in CHIP jobs' ids only")
    scope: Literal[SCOPES] = key(
        "layer", "`layer` (every channel group loses the same fraction: the achieved ratio "
        "depends only on architecture and ratio) or `global` (scores compared across groups; "
        "only with config `uniform`)")
    config: tuple[tuple[str, str], ...] = key(
        tuple((m, "uniform") for m in registry.names("structured")),
        "which channels and how many per layer: `uniform` (every block's inner channels narrowed "
        "by one fraction), `chip-resnet56` (CHIP's published ResNet-56 settings, residual "
        "streams of stages 1-2 narrowed too) or `li-resnet56` (Li et al.'s ResNet-56-pruned-A/-B: "
        "per-stage rates, sensitive layers skipped); the named ones scale their published keep "
        "proportions to other ratios and run on `resnet56` only (docs/iterative_structured.md, "
        "\"Configs\"). One name for both methods, or a table by method, e.g. `config = { chip = "
        "\"chip-resnet56\", l1-filter = \"li-resnet56\" }`; in a structured job's id only when "
        "not `uniform`. Ratios are checked against the config's largest (`li-resnet56`: 5.14)",
        doc_default='"uniform"', doc_type="string or table")

    @field_validator("config", mode="before")
    @classmethod
    def _config_by_method(cls, raw: Any) -> Any:
        """One config name for every structured method, or a table by method."""
        structured = registry.names("structured")
        tab = sub_table(raw, structured)
        by_method = {m: raw if tab is None else tab.get(m, "uniform") for m in structured}
        names = _structured_configs()
        if any(name not in names for name in by_method.values()):
            _refuse(f"one of {', '.join(names)}, or a table "
                    f"{{{' = ..., '.join(structured)} = ...}} of them")
        return tuple(by_method.items())

    @model_validator(mode="after")
    def _published_configs_are_per_layer(self) -> StructuredSpec:
        named = next((n for _, n in self.config if n != "uniform"), None)
        if named is not None and self.scope != "layer":
            _refuse(f"'layer' with config {named!r} (a published config fixes every layer's "
                    "width)", "scope", self.scope)
        return self

    def config_of(self, method: str) -> str:
        """The config structured ``method`` prunes with."""
        return dict(self.config)[method]


class ExecutorSpec(_Table):
    """Scheduling settings (``[executor]``; never part of a job id)."""

    pack_size: int | str = key(
        1, "jobs of one (kind, dataset, arch) scheduled together as one pack, the unit an "
        "executor runs. `train` and `prune_finetune` packs of G > 1 are fitted as one stacked "
        "network (`prunescope.train.pack.fit_pack`: per-model data order, masks and checkpoints; "
        "results equal solo training up to float rounding). `\"auto\"`: `auto_pack_size` (from "
        "the GPU's free memory; 1 on a CPU, where a pack trains slower than its models one after "
        "another)", doc_type='int or "auto"',
        allowed=f"an integer from 1 to {MAX_PACK_SIZE} (models trained at once in one pack) or "
        "\"auto\"")
    workers: int = int_key(
        1, 1, MAX_WORKERS, "local worker processes",
        "packs the local executor runs at once, each in its own (spawned) process that reports "
        "its steps to the driver's progress bars; 1 = in the driver's process. On a small or "
        "shared CPU, `workers = 2, threads = 1` beats one 2-thread process by far")
    gpus_per_pack: float = key(
        1.0, "GPUs per Ray pack task when the cluster has GPUs: a fraction in (0, 1] or a whole "
        "number", allowed="a fraction in [0.01, 1] or a whole number of GPUs up to "
        f"{MAX_GPUS_PER_PACK}")
    cpus_per_pack: int = int_key(1, 1, MAX_CPUS_PER_PACK,
                                 doc="CPUs per Ray pack task when the cluster has no GPUs")
    threads: int = int_key(
        0, 0, MAX_THREADS, "0 = torch's default",
        "torch intra-op threads in each worker; 0 = torch's default (1 in the processes of "
        "`workers > 1`). Pin it (e.g. 1) to get bit-identical results between executors with "
        "different CPU counts")
    deterministic: bool | None = key(
        None, "`true`: every job runs with `torch.use_deterministic_algorithms` (warn-only on "
        "CUDA); `false`: not, and on CUDA cuDNN autotunes (`cudnn.benchmark`); `\"auto\"` (held "
        "as `None`): `true` on the CPU, `false` on CUDA. `bench/throughput.py --deterministic "
        "on` measures what it costs", allowed='true, false or "auto"', doc_default='"auto"',
        doc_type='bool or "auto"')
    pack_options: tuple[tuple[str, bool], ...] = key(
        (), "`[executor.pack_options]`: the pack trainer's switches "
        f"{', '.join(f'`{n}`' for n in PackOptions.__dataclass_fields__)} (true/false each; see "
        "docs/speed.md) for packs of G > 1, held as sorted `(switch, bool)` pairs; unset "
        "switches keep the device default (all on for CUDA, fp32 eager with the fused SGD step "
        "on the CPU), `compile = false` also drops `cuda_graphs`. CUDA-only switches on a CPU "
        "are refused before any job runs. Example: `compile = false` where torch.compile does not work",
        doc_default="device defaults", doc_type="table")

    @field_validator("gpus_per_pack")
    @classmethod
    def _gpus(cls, g: float) -> float:
        if not (0.01 <= g <= 1 or (1 < g <= MAX_GPUS_PER_PACK and g == int(g))):
            _refuse()
        return g

    @field_validator("pack_size", mode="before")
    @classmethod
    def _pack_size(cls, value: Any) -> Any:
        if value != "auto" and not (is_int(value) and 1 <= value <= MAX_PACK_SIZE):
            _refuse()
        return value

    @field_validator("deterministic", mode="before")
    @classmethod
    def _auto_is_none(cls, value: Any) -> Any:
        if value != "auto" and not isinstance(value, bool) and value is not None:
            _refuse()
        return None if value == "auto" else value

    @field_validator("pack_options", mode="before")
    @classmethod
    def _switches(cls, raw: Any) -> Any:
        tab = sub_table(raw, PackOptions.__dataclass_fields__)
        if tab is None:
            _refuse("a table of switches, each true or false")
        for name, on in tab.items():
            if not isinstance(on, bool):
                _refuse("true or false", name, on)
        return tuple(sorted(tab.items()))

    def profile(self, device: str, default_threads: int = 0) -> DeviceProfile:
        """The :class:`~prunescope.train.options.DeviceProfile` of a run on ``device`` (resolved:
        not ``"auto"``): its pack switches with ``pack_options`` applied, ``deterministic`` and
        ``threads`` (``default_threads`` when 0); ``ValueError`` if the switches cannot run
        there."""
        return device_profile(device, pack_options=dict(self.pack_options),
                              deterministic=self.deterministic,
                              threads=self.threads or default_threads)


class _Settings(_Table):
    """The top-level keys a :class:`StudySpec` keeps as the file gives them."""

    name: str = key(doc="letters, digits, `-`, `_`, `.`", allowed=f"a name of 1 to {MAX_NAME} "
                    "letters, digits, '-', '_' or '.', starting with a letter or digit")
    seed: int = int_key(
        0, 0, INT64_MAX, doc="study seed, >= 0. Model m's seed is `model_seed(seed, m)` = first 4 "
        "bytes (little endian, 31 bits) of `sha256(\"prunescope-model/<seed>/<m>\")` (SPEC 4: "
        "from (study seed, model index) only, so model m of ResNet-20 and model m of ResNet-56 "
        "share a seed and a data order; architectures differ in initialisation anyway, and the "
        "independent t-tests of SPEC 5 across architectures or datasets treat them as "
        "independent samples, a weak dependence worth knowing)")
    models: int = int_key(PydanticUndefined, 1, MAX_JOBS, "the number of seeds per cell",
                          "models (seeds) per (dataset, architecture), >= 1")
    scope: Literal[SCOPES] = key("global", "mask scope (SPEC 3)")
    prune_classifier: bool = key(
        False, "widen the prunable set to the final classifier (SPEC 3); the study-wide "
        "default, which a `[[grid]]` entry may override for its cells; in the pruned jobs' ids "
        "only when true")
    prune_biases: bool = key(False, "widen the prunable set to the Conv and Linear biases, as "
                             "`prune_classifier`")
    keep_rule: Literal[KEEP_RULES] = key(
        "exact", "how many weights a one-shot mask keeps: `exact` (SPEC 3: the largest count "
        "whose achieved ratio meets the stated one) or `shrinkbench` (the authors' code, SPEC 8: "
        "ShrinkBench's keep fraction counting the prunable layers' biases, which are never "
        "masked, and a symmetric quantile threshold; the achieved ratio falls short of the "
        "stated one, e.g. 42.1 at 50 on the LeNet; not with `prune_biases`, `scope = \"layer\"` "
        "or `lth`); per cell as `prune_classifier`, in the pruned jobs' ids only when not `exact`")
    up_score: Literal[UP_SCORES] = key(
        "absolute", "UP's score: `absolute` (SPEC 3: `|-theta*g + eps*theta^2|`, eps the "
        "training decay) or `signed-5e-4` (the authors' code: `-theta*g + 5e-4*theta^2`, no "
        "absolute value, 5e-4 whatever the decay); per cell as `prune_classifier`")
    rp_count: Literal[RP_COUNTS] = key(
        "exact", "RP's count: `exact` (the keep rule's count of the highest draws) or "
        "`binomial` (the authors' code: each weight kept with the keep fraction as its "
        "probability); per cell as `prune_classifier`")
    validation: Literal[VALIDATIONS] = key(
        "held-out", "which images choose the epoch kept in training and fine-tuning: "
        "`held-out` (SPEC 4: `n_val` images held out of the training split) or `test` (the "
        "authors' code: train on the whole training split, keep the epoch of lowest test loss; "
        "`n_val` is then not used). Study-wide; in the train jobs' ids only when `test`")
    normalisation: Literal[NORMALISATIONS] = key(
        "dataset", "input normalisation: `dataset` (the registry's training-set mean and std) or "
        "`fork` (the authors' loaders' constants: Fashion-MNIST (0.5, 0.5), MNIST (0.1307, "
        "0.3081), CIFAR-10 (0.491, 0.482, 0.447) / (0.247, 0.243, 0.262), CIFAR-100 (0.507, 0.487, 0.441) / (0.267, 0.256, 0.276)). Study-wide; in the "
        "train jobs' ids only when `fork`")
    n_val: int = int_key(
        5000, 1, note="validation images held out of the train split",
        doc="validation images held out of the training split (stratified, seeded) for "
        "checkpoint choice (SPEC 4)")
    split_seed: int = int_key(0, 0, INT64_MAX, doc="seed of that hold-out draw (and of "
                              "`test_subset`)")
    test_subset: int | None = int_key(
        None, 1, note="test images to evaluate on", doc_default="absent",
        doc="evaluate on a seeded stratified subset of this many test images (smoke tests only; "
        "the paper uses the whole test set)")
    corruption_seed: int = int_key(0, 0, INT64_MAX, doc="seed of the corrupted test sets (the "
                                   "same for every model)")
    device: str = key(choices.DEFAULT_DEVICE, "`auto` (CUDA if available), `cpu`, `cuda`, "
                      "`cuda:N`; the CLI's `--device` takes the same (`prunescope.choices`)")
    gradients: GradientSpec = GradientSpec()
    executor: ExecutorSpec = ExecutorSpec()
    lth: LthSpec = LthSpec()
    structured: StructuredSpec = StructuredSpec()

    @field_validator("device")
    @classmethod
    def _device(cls, device: str) -> str:
        if (error := choices.device_error(device)) is not None:
            _refuse(error)
        return device


class _GridKeys(_Table):
    """The keys a ``[[grid]]`` entry shares with the top level."""

    datasets: list[Literal[DATASETS]] | None = key(
        None, ", ".join(f"`{d}`" for d in DATASETS), doc_default="required without `[[grid]]`",
        allowed=f"a non-empty list from {', '.join(DATASETS)}", min_length=1)
    architectures: list[ArchitectureName] | None = key(
        None, "`lenet5-shrinkbench` (ShrinkBench's LeNet, the paper's: 3x3 convolutions, 60,074 "
        "parameters) or `lenet5` (the classic 5x5 LeNet-5, 61,706 parameters) for MNIST-like "
        "data; `resnet20/32/44/56/110` (CIFAR)", doc_default="required without `[[grid]]`",
        allowed=f"a non-empty list from {', '.join(architectures.names())}", min_length=1)
    methods: list[MethodName] | None = key(
        None, "; ".join(f"{kind} " + ", ".join(f"`{m}`" for m in registry.names(kind))
                        for kind in typing.get_args(registry.Kind)) + " (see \"Iterative and structured "
        "methods\"); `[]` = dense models only", doc_default="required (here or per grid entry)")
    ratios: list[Ratio] | None = key(
        None, "compression ratios > 1 (all params / nonzero params, SPEC 3). Checked per method "
        "family before any work: one-shot and `lth` up to `n_total / n_fixed` (LeNet-5 57.35, "
        "ResNet-56 at 10 classes 181.0; with `prune_classifier` and `prune_biases` on a LeNet, "
        "its parameter count; with `keep_rule = \"shrinkbench\"` up to ShrinkBench's own limit "
        "`n_total / (n_total - n_layers)`, `lenet5-shrinkbench` 70.68, since that rule achieves "
        "less than it states); `l1-filter`/`chip` up to the ratio with every channel group down "
        "to one channel (LeNet-5 4.35, `lenet5-shrinkbench` 4.24, ResNet-20 36.35, ResNet-56 "
        "40.82). The error names the largest reachable ratio; give structured methods their own "
        "`[[grid]]` entry with smaller ratios", doc_default="required when methods are given",
        allowed="a non-empty list of compression ratios > 1", min_length=1)
    imbalance: ImbalanceSpec | None = key(None, "see `[imbalance]`", doc_default="absent",
                                          doc_type="table")
    finetune_objectives: list[ObjectiveName] | None = key(
        None, "what one-shot pruned models minimise while fine-tuned: " + ", ".join(
            f"`{o}`" for o in objective_registry.names()) + " (docs/mitigation.md); each "
        "objective but `ce` enters the pruned jobs' ids with its options, so `[\"ce\"]` keeps "
        "them as before", doc_default='["ce"]', allowed="a non-empty list of objectives from "
        + ", ".join(objective_registry.names()), min_length=1)


class GridEntry(_GridKeys):
    """One ``[[grid]]`` entry: its cells' keys; absent ones fall back to the top level."""

    prune_classifier: bool | None = None
    prune_biases: bool | None = None
    keep_rule: Literal[KEEP_RULES] | None = None
    up_score: Literal[UP_SCORES] | None = None
    rp_count: Literal[RP_COUNTS] | None = None


class StudyFile(_GridKeys, _Settings):
    """The top level of a study file, as validated before the checks across tables."""

    distributions: list[DistributionName] = key(
        ["nominal"], "`nominal`, `<corruption>-<1..5>` (" + ", ".join(CORRUPTIONS)
        + "), `noise-<std>` (std on the 0..1 scale). Canonicalised, nominal first. Corrupted "
        "pixels are truncated to uint8 as the published CIFAR-10-C (docs/corruptions.md); their "
        "evaluation jobs carry `quantize = \"truncate\"` in their ids",
        allowed=f"a non-empty list of at most {MAX_JOBS} distributions without repeats",
        min_length=1, max_length=MAX_JOBS)
    output: str | None = key(
        None, "local folder of the study; **relative paths resolve against the spec file's "
        "folder** (so results do not depend on the current directory). The shipped studies use "
        "`../runs/<name>`, i.e. `<repo>/runs/<name>`", doc_default='"runs/<name>"',
        doc_type="string")
    artifacts: str | None = key(
        None, "weights, masks, gradients: local folder (relative to the spec file) or any fsspec "
        "URL (`s3://...`, `gs://...`)", doc_default='"<output>/artifacts"', doc_type="string")
    grid: list[GridEntry] | None = key(None, allowed="a non-empty array of tables ([[grid]] "
                                       "entries)", min_length=1)
    train: dict[str, Any] = {}
    finetune: dict[str, Any] = {}
    objective_options: dict[str, Any] = key(
        {}, "`[objective_options.<objective>]` tables of numbers overriding an objective's "
        "options for the whole study (`kd`: `temperature` 4, `weight` 0.9; `equalized-loss`: "
        "`dual_lr` 0.01; `ceag`: `tolerance` 0.01, `dual_lr` 0.01)", doc_default="absent",
        doc_type="table")

    @field_validator("name")
    @classmethod
    def _name(cls, name: str) -> str:
        if not (0 < len(name) <= MAX_NAME and name[0].isalnum()
                and all(ch.isalnum() or ch in "-_." for ch in name)):
            _refuse()
        return name

    @field_validator("objective_options")
    @classmethod
    def _objective_options(cls, tabs: dict[str, Any]) -> dict[str, Any]:
        for name, tab in tabs.items():
            if (error := choices.objective_error(name)) is not None:
                _refuse(error, name, name)
            if not isinstance(tab, dict):
                _refuse("a table of option = number", name, tab)
            try:
                objective_registry.objective(name).resolve(tab)
            except ValueError as e:
                _refuse(str(e), name, tab)
        return tabs

    @field_validator("distributions")
    @classmethod
    def _no_repeats(cls, names: list[str]) -> list[str]:
        if len(set(names)) != len(names):
            _refuse()
        return sorted(names, key=lambda d: (d != "nominal", d))


class StudySpec(_Settings):
    """A validated study: the top-level keys as :class:`StudyFile` declares them (``gradients``,
    ``executor``, ``lth``, ``structured``: their tables), and what the checks across tables made
    of the rest.

    Attributes:
        cells: the grid, one :class:`Cell` per (dataset, arch, training split), in the file's
            order (``prune_classifier``, ``prune_biases``, ``keep_rule``, ``up_score``,
            ``rp_count`` here are the study-wide defaults; read them from the cell's
            ``pruning``).
        distributions: test distributions every model is evaluated on (``nominal`` first).
        train_overrides, finetune_overrides: ``((key, value), ...)`` applied on top of the
            SPEC 4 recipe of each architecture; ``arch_overrides`` those of the
            ``[<phase>.<name>]`` tables, ``((phase, name, ((key, value), ...)), ...)``, ``name``
            an architecture or a recipe family (``resnet``: every ResNet).
        output: absolute local path of the study's output folder (the SQLite store lives there).
        artifacts: where weights, masks and gradients go: a local path or any fsspec URL.
        path: the spec file (``None`` when parsed from a string); text: its exact text.
    """

    cells: tuple[Cell, ...]
    distributions: tuple[str, ...] = ("nominal",)
    train_overrides: tuple[tuple[str, Any], ...] = ()
    finetune_overrides: tuple[tuple[str, Any], ...] = ()
    arch_overrides: tuple[tuple[str, str, tuple[tuple[str, Any], ...]], ...] = ()
    output: str = ""
    artifacts: str = ""
    path: str | None = None
    text: str = ""

    def recipe(self, arch: str, phase: str) -> Recipe:
        """The recipe of ``phase`` (``train`` or ``finetune``) for ``arch``: SPEC 4's
        ``Recipe.paper(arch)`` with the spec's ``[train]``/``[finetune]`` overrides, then those
        of the architecture's recipe family (``[train.resnet]``), then the architecture's own
        (``[train.<arch>]``)."""
        if phase not in ("train", "finetune"):
            raise ValueError(f"phase must be 'train' or 'finetune', got {phase!r}")
        base = Recipe.paper(arch, finetune=phase == "finetune")
        over = dict(self.train_overrides if phase == "train" else self.finetune_overrides)
        for name in (architectures.architecture(arch).recipe, arch):
            over |= dict(next((o for p, a, o in self.arch_overrides
                               if p == phase and a == name), ()))
        return _apply_overrides(base, over)

    @property
    def training(self) -> TrainOptions:
        """How the dense models are trained and chosen (``validation``, ``normalisation``)."""
        return TrainOptions(self.validation, self.normalisation)

    def device_name(self) -> str:
        """The torch device to use: ``auto`` resolves to ``cuda`` when available, else ``cpu``."""
        return choices.resolve_device(self.device)


class _Rescale(_Table):
    """The keys of ``[train]``/``[finetune]`` beyond :class:`Recipe`'s fields: they rescale the
    schedule after the other overrides (:meth:`Recipe.with_epochs`)."""

    epochs_scale: float | None = key(
        None, allowed=f"a number in (0, {MAX_EPOCHS}] multiplying every schedule block's epochs",
        gt=0, le=MAX_EPOCHS, allow_inf_nan=False)
    epochs: int | None = int_key(None, 1, MAX_EPOCHS, "the schedule is scaled to it")

    @model_validator(mode="after")
    def _one_of_the_two(self) -> _Rescale:
        if self.epochs is not None and self.epochs_scale is not None:
            _refuse("absent when epochs_scale is given (use one)", "epochs", self.epochs)
        return self


def _schedule(blocks: Any) -> tuple[tuple[int, float], ...]:
    if not (isinstance(blocks, list) and blocks and all(
            isinstance(b, list) and len(b) == 2 and is_int(b[0]) and is_num(b[1])
            for b in blocks)):
        _refuse("a non-empty list of [epochs, lr] pairs, e.g. [[10, 0.1], [5, 0.01]]")
    return tuple((int(e), float(lr)) for e, lr in blocks)


def _recipe_key(name: str, hint: Any) -> tuple[Any, Any]:
    """The override key of :class:`Recipe` field ``name``: its type (finite if a float)."""
    if name == "schedule":
        return Annotated[tuple[tuple[int, float], ...], PlainValidator(_schedule)], None
    finite = float in (hint, *typing.get_args(hint))
    return hint | None, key(None, allow_inf_nan=False) if finite else None


#: the keys of ``[train]``, ``[finetune]`` and their ``[<phase>.<arch>]`` tables: every field of
#: :class:`Recipe` (its type checked) and the two of :class:`_Rescale`
RecipeKeys = create_model("RecipeKeys", __base__=_Rescale, **{
    f.name: _recipe_key(f.name, typing.get_type_hints(Recipe)[f.name])
    for f in dataclasses.fields(Recipe)})


def _recipe_overrides(where: str, tab: dict[str, Any], prefix: tuple[str, ...]
                      ) -> tuple[tuple[str, Any], ...]:
    """The keys of one recipe table as sorted ``(key, value)`` pairs, checked against
    :data:`RecipeKeys`."""
    try:
        keys = RecipeKeys.model_validate(tab)
    except ValidationError as e:
        raise spec_error(where, e, RecipeKeys, prefix) from None
    return tuple(sorted(keys.model_dump(exclude_unset=True).items()))


# ---- the key tables of docs/studies.md ------------------------------------------------------
#: the tables of docs/studies.md generated from the models, by the name of their block
DOC_TABLES: dict[str, type[_Table]] = dict(
    top=StudyFile, imbalance=ImbalanceSpec, gradients=GradientSpec, lth=LthSpec,
    structured=StructuredSpec, executor=ExecutorSpec)


def key_tables() -> dict[str, str]:
    """The markdown key table of each table in :data:`DOC_TABLES` (key, type, default, allowed /
    meaning: the models' fields), as docs/studies.md shows them; ``PYTHONPATH=src python
    tests/test_docs.py`` writes them there (``<!-- keys:NAME -->`` blocks) and
    tests/test_docs.py fails when they differ."""
    return {name: key_table(model) for name, model in DOC_TABLES.items()}


def write_key_tables(text: str) -> str:
    """docs/studies.md's ``text`` with its key tables replaced by :func:`key_tables`."""
    return replace_blocks(text, key_tables())


# ---- reading a file -------------------------------------------------------------------------
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
        with open(p, "rb") as fh:
            data = fh.read(MAX_SPEC_BYTES + 1)
    except OSError as e:
        raise SpecError(f"cannot read study spec {str(p)!r}: {e.strerror or e}") from e
    source = str(p.resolve())
    if len(data) > MAX_SPEC_BYTES:
        raise SpecError(f"{source}: larger than {MAX_SPEC_BYTES >> 20} MiB, so not a study spec "
                        "(a TOML file of a few dozen lines)")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise SpecError(f"{source}: not UTF-8 text (byte {data[e.start]:#04x} at offset "
                        f"{e.start}); save it as UTF-8") from None
    return parse_spec(text, base_dir=Path(source).parent, source=source, output=output)


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
    except RecursionError:
        raise SpecError(f"{where}: tables or lists nested more than {MAX_NESTING} levels deep; "
                        "a study spec nests at most 4") from None
    v = _Validator(where)
    check_ints(v, raw)
    try:
        f = StudyFile.model_validate(raw)
    except ValidationError as e:
        raise spec_error(where, e, StudyFile) from None
    cells = expand_cells(v, f)
    try:  # as for CUDA unless the spec names the CPU; the run checks its resolved device again
        f.executor.profile("cpu" if f.device == "cpu" else "cuda")
    except ValueError as e:
        v.fail("executor.pack_options", dict(f.executor.pack_options), str(e))

    phase_over: dict[str, tuple[tuple[str, Any], ...]] = {}
    arch_over: list[tuple[str, str, tuple[tuple[str, Any], ...]]] = []
    for phase in ("train", "finetune"):
        tab = getattr(f, phase)
        general = {k: val for k, val in tab.items() if not isinstance(val, dict)}
        phase_over[phase] = _recipe_overrides(where, general, (phase,))
        for arch, sub in ((k, val) for k, val in tab.items() if isinstance(val, dict)):
            if arch not in architectures.names() + architectures.recipe_families():
                v.fail(f"{phase}.{arch}", "(table)", f"a recipe key, a recipe family's table "
                       f"[{phase}.<family>] with <family> one of "
                       f"{', '.join(architectures.recipe_families())} or an architecture table "
                       f"[{phase}.<arch>] with <arch> one of {', '.join(architectures.names())}")
            arch_over.append((phase, arch, _recipe_overrides(where, sub, (phase, arch))))

    base = Path(base_dir) if base_dir is not None else Path.cwd()
    if output is None:
        out_raw = f.output if f.output is not None else f"runs/{f.name}"
        if is_url(out_raw):
            v.fail("output", out_raw, "a local folder (the SQLite store needs a local file); put "
                   "remote artifacts under the 'artifacts' key instead")
        output = local_folder(v, "output", out_raw, base)
    else:
        output = local_folder(v, "output (--output)", output, Path.cwd())
    if f.artifacts is None:
        artifacts = local_folder(v, "output", str(Path(output) / "artifacts"), base)
    elif is_url(f.artifacts):
        artifacts = artifact_url(v, f.artifacts)
    else:
        artifacts = local_folder(v, "artifacts", f.artifacts, base)

    spec = StudySpec(
        **{k: getattr(f, k) for k in _Settings.model_fields}, cells=cells,
        distributions=tuple(f.distributions), train_overrides=phase_over["train"],
        finetune_overrides=phase_over["finetune"], arch_overrides=tuple(arch_over),
        output=output, artifacts=artifacts, path=source, text=text,
    )
    check_across_tables(v, spec, raw)
    return spec


# ---- recipe overrides -----------------------------------------------------------------------
def _apply_overrides(base: Recipe, over: dict[str, Any]) -> Recipe:
    """``base`` with ``over`` applied; ``epochs_scale``/``epochs`` rescale the schedule last."""
    fields = {k: val for k, val in over.items() if k not in _Rescale.model_fields}
    recipe = dataclasses.replace(base, **fields)
    if "epochs_scale" in over:
        epochs = max(1, round(recipe.epochs * over["epochs_scale"]))
        recipe = recipe.with_epochs(epochs)
    if "epochs" in over:
        recipe = recipe.with_epochs(over["epochs"])
    return recipe


