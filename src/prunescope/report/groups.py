"""Which cells of a study share a figure: the panel matrices of the report (SPEC 6), each with
one factor (method, architecture or dataset) varying and the others fixed."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from prunescope import analysis
from prunescope.report import figures
from prunescope.report.style import ordered, slug

__all__ = ["FACTORS", "Group", "factor_groups"]

FACTORS = ("method", "arch", "dataset")


@dataclass(frozen=True)
class Group:
    """One matrix of panels: ``factor`` varies over ``levels`` with the other factors ``fixed``."""

    factor: str
    fixed: tuple[tuple[str, str], ...]
    levels: tuple[str, ...]
    #: the datasets vary each on its own architecture (``analysis.dataset_archs`` of the study):
    #: only those rows are selected; ``archs`` holds that ``(dataset, arch)`` map
    own_arch: bool = False
    archs: tuple[tuple[str, str], ...] = ()

    def select(self, frame: pd.DataFrame) -> pd.DataFrame:
        """Rows of ``frame`` in this group."""
        mask = np.ones(len(frame), dtype=bool)
        for k, v in self.fixed:
            mask &= (frame[k] == v).to_numpy()
        if self.own_arch:
            mask &= (frame["arch"] == frame["dataset"].map(dict(self.archs))).to_numpy()
        return frame.loc[mask & frame[self.factor].isin(self.levels).to_numpy()]

    @property
    def title(self) -> str:
        """Human-readable ``dataset · arch · method`` of the fixed factors."""
        fixed = " · ".join(figures.level_label(k, v) for k, v in self.fixed)
        if self.own_arch:
            on: dict[str, list[str]] = {}
            for dataset in self.levels:
                on.setdefault(dict(self.archs)[dataset], []).append(dataset)
            archs = "; ".join(f"{', '.join(ds)} on {arch}" for arch, ds in on.items())
            return f"{fixed}: dataset varies ({archs})"
        if len(self.levels) > 1:
            return f"{fixed}: {figures.FACTOR_NAMES[self.factor]} varies"
        return f"{fixed} · {figures.level_label(self.factor, self.levels[0])}"

    @property
    def slug(self) -> str:
        """File-name stem part identifying the group."""
        return slug(self.factor, *(v for _, v in self.fixed))


def _dataset_groups(cells: pd.DataFrame, taken: set[frozenset]) -> list[Group]:
    """Per method, the datasets side by side each on its ``analysis.dataset_archs`` architecture
    (MNIST, Fashion-MNIST on the paper's LeNet, else LeNet-5; CIFAR-10, CIFAR-100 on
    ResNet-56), as the
    ``ratios_by_dataset`` and ``datasets`` test families take them; groups with < 2 datasets or
    whose cells equal a group in ``taken`` are left out."""
    archs = analysis.dataset_archs(cells)
    own = cells[cells["arch"].to_numpy() == cells["dataset"].map(archs).to_numpy()]
    groups = []
    for method, sub in own.groupby("method", sort=False):
        if frozenset(map(tuple, sub[["dataset", "arch", "method"]].to_numpy())) in taken:
            continue
        levels = tuple(ordered("dataset", sub["dataset"].unique()))
        if len(levels) >= 2:
            groups.append(Group("dataset", (("method", method),), levels, own_arch=True,
                                archs=tuple((d, archs[d]) for d in levels)))
    return groups


def factor_groups(cells: pd.DataFrame) -> list[Group]:
    """The panel matrices of a study: for each factor (method, arch, dataset) every combination of
    the other two in which it takes >= 2 levels; for the dataset also, per method, the datasets
    each on its own architecture (``analysis.dataset_archs``), so MNIST, Fashion-MNIST, CIFAR-10 and
    CIFAR-100 appear side by side; cells in no such group get a one-column group.

    Args:
        cells: distinct ``dataset, arch, method`` rows of the pruned results.
    """
    groups: list[Group] = []
    covered: set[tuple[str, str, str]] = set()
    for factor in FACTORS:
        others = [f for f in ("dataset", "arch", "method") if f != factor]
        for fixed, sub in cells.groupby(others, sort=False):
            levels = ordered(factor, sub[factor].unique())
            if len(levels) >= 2:
                groups.append(Group(factor, tuple(zip(others, fixed)), tuple(levels)))
                covered |= set(map(tuple, sub[["dataset", "arch", "method"]].to_numpy()))
    taken = {frozenset(map(tuple, g.select(cells)[["dataset", "arch", "method"]].to_numpy()))
             for g in groups if g.factor == "dataset"}
    groups += _dataset_groups(cells, taken)
    for dataset, arch, method in cells[["dataset", "arch", "method"]].itertuples(index=False):
        if (dataset, arch, method) not in covered:
            groups.append(Group("method", (("dataset", dataset), ("arch", arch)), (method,)))
    order = {f: i for i, f in enumerate(FACTORS)}
    rank = {f: {v: i for i, v in enumerate(ordered(f, cells[f].unique()))} for f in FACTORS}
    return sorted(groups, key=lambda g: (order[g.factor], not g.own_arch,
                                         [rank[k][v] for k, v in g.fixed]))
