"""The names SPEC 5's test families and the report's tables and figures order by, read from the
catalog and the dataset registry on every call (so a record added later counts) and handed to
:mod:`prunescope.stats`, which knows no dataset, architecture or method."""
from __future__ import annotations

import pandas as pd

from prunescope import stats
from prunescope.catalog import architectures, methods
from prunescope.data.registry import info as dataset_info, names as dataset_names

#: Dataset pairs (simpler, harder) of SPEC 5 family 3.
DATASET_PAIRS: tuple[tuple[str, str], ...] = (
    ("mnist", "cifar10"), ("fashion-mnist", "cifar10"), ("cifar10", "cifar100"),
)


def level_order() -> dict[str, tuple[str, ...]]:
    """Per factor, its known levels in table and figure order (rows, columns, panels, legends;
    any other level after them, sorted): datasets from simplest to hardest (the dataset
    registry's order), architectures and methods by their records' ``order``."""
    return {"dataset": dataset_names(), "arch": architectures.display_order(),
            "method": methods.display_order()}


def dataset_arch_choices() -> dict[str, tuple[str, ...]]:
    """Per dataset, the architectures it is taken on when datasets are compared, in order of
    preference: those made for its image shape that have a
    :attr:`~prunescope.catalog.architectures.Architecture.dataset_rank`, by that rank (SPEC 4:
    the MNIST-like sets have LeNets only, the paper's ShrinkBench LeNet first and the classic
    LeNet-5 for a study without it; ResNet-56 when the dataset varies)."""
    out = {}
    for d in dataset_names():
        fits = [architectures.architecture(a)
                for a in architectures.for_shape(dataset_info(d).shape_hwc)]
        ranked = sorted((a for a in fits if a.dataset_rank is not None),
                        key=lambda a: a.dataset_rank)
        out[d] = tuple(a.name for a in ranked)
    return out


def family_orders() -> stats.FamilyOrders:
    """The names and orders of :func:`prunescope.stats.all_families`, from the catalog: table
    levels (:func:`level_order`), one-shot methods in declaration order for method pairs,
    architecture sizes (``size_order``), :data:`DATASET_PAIRS`, :func:`dataset_arch_choices`
    the MP-vs-UP pair (``methods.MP_VS_UP``) and the methods that keep another's count
    (``keep_as``)."""
    return stats.FamilyOrders(levels=level_order(), methods=methods.names("one-shot"),
                              arch_sizes=architectures.size_order(), dataset_pairs=DATASET_PAIRS,
                              dataset_archs=dataset_arch_choices(), mp_vs_up=methods.MP_VS_UP,
                              matched=tuple(m.name for m in methods.REGISTRY
                                            if m.keep_as is not None))


def dataset_archs(frame: pd.DataFrame) -> dict[str, str]:
    """``{dataset: the architecture it is taken on}`` when the datasets of ``frame`` (rows with
    ``dataset`` and ``arch``) are compared: ``stats.dataset_archs`` with
    :func:`dataset_arch_choices` (the first choice with rows in ``frame``)."""
    return stats.dataset_archs(frame, dataset_arch_choices())


__all__ = ["DATASET_PAIRS", "dataset_arch_choices", "dataset_archs", "family_orders",
           "level_order"]
