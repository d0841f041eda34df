"""Packs: the unit an executor schedules (DESIGN.md).

A pack is a list of ready jobs of the same kind, dataset and architecture. The stacked pack
trainer (issue 7) trains the G models of a ``train``, ``prune_finetune`` or ``lth_level`` pack as
one network (``structured`` packs always hold one job: narrowed networks do not stack, see
:func:`stacks`); until then, and on the CPU by default (``pack_size = 1``), a worker runs a pack's jobs one after
another.
"""
from __future__ import annotations

from dataclasses import dataclass

from prunescope.study.plan import Job

#: kinds whose jobs never share a pack: structurally pruned (narrowed) networks of different
#: widths cannot be stacked into one network
SOLO_KINDS = frozenset({"structured"})


def stacks(kind: str) -> bool:
    """Whether jobs of ``kind`` may share a pack (and, for the fitting kinds, be trained as one
    stacked network). False for ``structured``: narrowed networks of different widths cannot
    stack, so the driver makes packs of one of them and the worker never stacks them."""
    return kind not in SOLO_KINDS


@dataclass(frozen=True, eq=False)
class Pack:
    """Jobs of one ``kind`` on one (``dataset``, ``arch``); ``jobs`` in plan order."""

    kind: str
    dataset: str
    arch: str
    jobs: tuple[Job, ...]

    @property
    def label(self) -> str:
        """Short human-readable name, e.g. ``train lenet5/mnist x2 [3f9a1c2b]``."""
        parts = [self.kind, f"{self.arch}/{self.dataset}"]
        if len(self.jobs) > 1:
            parts.append(f"x{len(self.jobs)}")
        elif self.kind in ("prune_finetune", "structured", "lth_level", "evaluate"):
            j = self.jobs[0]
            parts.append(f"{j.method}@{j.ratio:g}" if j.level is None
                         else f"{j.method}@{j.ratio:g} L{j.level}")
            if j.distribution is not None:
                parts.append(j.distribution)
        parts.append(f"[{self.jobs[0].id[:8]}]")
        return " ".join(parts)
