"""The grid of a study spec: the ``(dataset, architecture, training split)`` cells its top
level or ``[[grid]]`` entries name, merged, each with the pruning it receives (:class:`Cell`),
and the long-tailed training split a cell may have (:class:`ImbalanceSpec`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from prunescope import choices
from prunescope.catalog import methods as registry, objectives as objective_registry
from prunescope.catalog.protocol import PruneOptions
from prunescope.data import expected
from prunescope.data.imbalance import PROFILES, class_counts
from prunescope.study.keys import Messages, SpecError, Table, int_key, key

if TYPE_CHECKING:
    from prunescope.study.spec import StudyFile, _GridKeys

__all__ = ["Cell", "ImbalanceSpec", "PRUNE_KEYS", "expand_cells"]

#: the study keys (top level, overridable per ``[[grid]]`` entry) that make a cell's
#: :class:`PruneOptions`, one per field
PRUNE_KEYS: tuple[str, ...] = tuple(PruneOptions.__dataclass_fields__)


class ImbalanceSpec(Table):
    """A long-tailed training split (``[imbalance]``, or ``imbalance = {...}`` in a grid entry):
    :func:`prunescope.data.imbalance.class_counts` with ``ratio`` and ``profile``; ``seed`` draws
    which images each class keeps. The validation hold-out is drawn from the imbalanced split;
    test sets stay balanced. A ratio of 1 in the file means the balanced split (no
    ImbalanceSpec in the :class:`Cell`)."""

    ratio: float = key(doc="finite, in [1, the dataset's smallest class count]: largest / "
                       "smallest class count; `1` = the balanced split (ids as without the table)",
                       allowed="a finite ratio >= 1 of the largest to the smallest class count "
                       "(1 = the balanced split)", ge=1, allow_inf_nan=False)
    profile: Literal[PROFILES] = key(
        "exponential", "`exponential` (class c keeps `floor(n_max * ratio^(-c/(C-1)))`, "
        "CIFAR-10-LT) or `step` (the second half of the classes keeps `floor(n_max / ratio)`)")
    seed: int = int_key(0, 0, doc="int >= 0: seed of the per-class draw of the images kept")

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
        methods: ``((method, (ratio, ...)), ...)``, methods in registry order, ratios
            ascending compression ratios > 1 (SPEC 3).
        pruning: the prunable set and mask rule of this cell's one-shot (and, for the
            prunable set, iterative) pruning (SPEC 3, SPEC 8): each key the ``[[grid]]``
            entry's value, else the study-wide one.
        imbalance: the long-tailed training split, ``None`` for the full (balanced) one.
        objectives: ``((method, (objective, ...)), ...)``: the fine-tuning objectives of each
            one-shot method's pruned models (registry order; the ``[[grid]]`` entry's
            ``finetune_objectives``, else the study-wide ones, merged over the entries naming
            the method as its ratios are); a method absent here fine-tunes with ``ce``.
        objective_options: ``((objective, ((option, value), ...)), ...)``: every option of
            each objective the cell uses but ``ce``, from ``[objective_options]`` or the
            record's default (:meth:`objectives_of`).
    """

    dataset: str
    arch: str
    methods: tuple[tuple[str, tuple[float, ...]], ...]
    pruning: PruneOptions = PruneOptions()
    imbalance: ImbalanceSpec | None = None
    objectives: tuple[tuple[str, tuple[str, ...]], ...] = ()
    objective_options: tuple[tuple[str, tuple[tuple[str, float], ...]], ...] = ()

    def objectives_of(self, method: str) -> tuple[tuple[str, tuple[tuple[str, float], ...]], ...]:
        """``((objective, ((option, value), ...)), ...)`` of ``method``'s pruned models, registry
        order (``(("ce", ()),)`` unless the study names others)."""
        options = dict(self.objective_options)
        names = dict(self.objectives).get(method, (objective_registry.DEFAULT,))
        return tuple((o, options.get(o, ())) for o in names)

    @property
    def label(self) -> str:
        """The dataset label of this cell's results: ``dataset``, or ``dataset-<imbalance
        label>`` for a long-tailed training split (e.g. ``mnist-lt100``)."""
        return self.dataset if self.imbalance is None else f"{self.dataset}-{self.imbalance.label}"


def _split(imbalance: ImbalanceSpec | None) -> ImbalanceSpec | None:
    """The training split of an ``imbalance`` table: ratio 1 is the balanced one (``None``)."""
    return None if imbalance is None or imbalance.ratio == 1 else imbalance


def expand_cells(v: Messages, f: StudyFile) -> tuple[Cell, ...]:
    """Expand the top-level grid or the ``[[grid]]`` entries into merged cells; an entry's
    ``methods``, ``ratios``, ``imbalance`` and pruning options (:data:`PRUNE_KEYS`) override
    the study-wide values for its cells (two entries naming one cell must agree on the
    options)."""
    entries: list[tuple[str, _GridKeys]] = [("", f)]
    if f.grid is not None:
        for k in ("datasets", "architectures"):
            if getattr(f, k) is not None:
                v.fail(k, getattr(f, k), "absent when [[grid]] entries are given (put it in each "
                       "[[grid]] entry instead)")
        entries = [(f"grid[{i}].", g) for i, g in enumerate(f.grid)]

    merged: dict[tuple[str, str, ImbalanceSpec | None], dict[str, set[float]]] = {}
    options: dict[tuple[str, str, ImbalanceSpec | None], tuple[PruneOptions, str]] = {}
    objectives: dict[tuple[str, str, ImbalanceSpec | None], dict[str, set[str]]] = {}
    for prefix, entry in entries:
        try:
            cell_options = PruneOptions(**{
                k: getattr(f, k) if getattr(entry, k) is None else getattr(entry, k)
                for k in PRUNE_KEYS})
        except ValueError as e:
            v.fail(f"{prefix}prune_biases", True, str(e))
        imbalance = _split(f.imbalance) if entry.imbalance is None else _split(entry.imbalance)
        for k in ("datasets", "architectures"):
            if getattr(entry, k) is None:
                raise SpecError(f"{v.where}: missing required key '{prefix}{k}'")
        methods = entry.methods if entry.methods is not None else f.methods
        ratios = entry.ratios if entry.ratios is not None else f.ratios
        if methods is None:
            v.fail(f"{prefix}methods", None, f"a list of methods from {', '.join(registry.names())} "
                   "(here or at the top level); use [] for dense models only")
        if methods and ratios is None:
            v.fail(f"{prefix}ratios", None, "a list of compression ratios > 1 (here or at the "
                   "top level)")
        for d in dict.fromkeys(entry.datasets):
            for a in dict.fromkeys(entry.architectures):
                if (error := choices.arch_error(d, a)) is not None:
                    v.fail(f"{prefix}architectures", a, error)
                if imbalance is not None:
                    n_max = min(expected(d).counts["train"])
                    if imbalance.ratio > n_max:
                        v.fail(f"{prefix}imbalance.ratio", imbalance.ratio, f"at most {n_max} on "
                               f"{d} (its smallest class has {n_max} training images)")
                key = (d, a, imbalance)
                before, where = options.setdefault(key, (cell_options, prefix))
                if before != cell_options:
                    differs = next(k for k in PRUNE_KEYS
                                   if getattr(before, k) != getattr(cell_options, k))
                    v.fail(f"{prefix}{differs}", getattr(cell_options, differs),
                           f"the {differs} of the other entry naming {a} on {d} "
                           f"({where.rstrip('.') or 'top level'}: {getattr(before, differs)}); "
                           "one cell has one prunable set and mask rule")
                cell = merged.setdefault(key, {})
                for m in methods:
                    cell.setdefault(m, set()).update(ratios or ())
                for m in methods:
                    objectives.setdefault(key, {}).setdefault(m, set()).update(
                        entry.finetune_objectives or f.finetune_objectives
                        or (objective_registry.DEFAULT,))
    return tuple(
        Cell(d, a, tuple((m, tuple(sorted(ms[m]))) for m in registry.names() if m in ms),
             options[(d, a, imb)][0], imbalance=imb,
             **_objectives(objectives.get((d, a, imb), {}), f.objective_options))
        for (d, a, imb), ms in merged.items()
    )


def _objectives(chosen: dict[str, set[str]], options: dict[str, dict[str, float]]
                ) -> dict[str, tuple[tuple[str, Any], ...]]:
    """A cell's ``objectives`` and ``objective_options`` (:class:`Cell`) from the objectives
    chosen per method; a cell whose methods all fine-tune with ``ce`` alone keeps the defaults
    (the cell equals the one of before)."""
    names = objective_registry.names()
    default = {objective_registry.DEFAULT}
    per = tuple((m, tuple(o for o in names if o in os)) for m, os in chosen.items()
                if os != default)
    used = {o for _, os in per for o in os} - default
    return {"objectives": per, "objective_options": tuple(
        (o, tuple(objective_registry.objective(o).resolve(options.get(o)).items()))
        for o in names if o in used)}
