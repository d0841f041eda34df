"""Progress displays for :func:`prunescope.study.run.run_study`.

:class:`RunDisplay` is the interface (every method optional to override); :class:`RichDisplay`
shows an overall bar weighted by estimated work (images processed, so a 2-epoch training counts
more than an evaluation) with an ETA, and one bar per running pack with its own ETA;
:class:`LogDisplay` writes plain lines for a log file (output not on a terminal): one when the
run starts, one per finished pack at most every :data:`LOG_STEP` of the work or
:data:`LOG_INTERVAL_S` seconds, one per failure, and the last one. :func:`display_for` picks.
"""
from __future__ import annotations

import sys
import time
from collections.abc import Callable, Sequence
from typing import TextIO

from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    Progress,
    TaskID,
    TaskProgressColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from prunescope._console import console as make_console, styled, text_column
from prunescope.study.packs import Pack
from prunescope.study.plan import Job, Plan
from prunescope.study.store import JobResult


class RunDisplay:
    """Receives the driver's events; the base class ignores them all."""

    def start(self, plan: Plan, todo: Sequence[Job], work: Callable[[Job], float]) -> None:
        """The run starts with ``todo`` jobs; ``work(job)`` estimates a job's cost."""

    def pack_started(self, pack: Pack) -> None:
        """``pack`` was submitted."""

    def pack_progress(self, pack: Pack, job: Job, done: int, total: int) -> None:
        """``job`` of a running ``pack`` reached step ``done`` of ``total``."""

    def pack_finished(self, pack: Pack, results: list[JobResult]) -> None:
        """``pack`` finished with ``results``."""

    def pack_lost(self, pack: Pack, reason: str, again: Sequence[Job]) -> None:
        """``pack``'s worker was lost before it reported (``reason``, one line); ``again``
        will run again: its jobs, less those lost too often (reported failed next)."""

    def jobs_blocked(self, jobs: Sequence[Job]) -> None:
        """``jobs`` will not run (a job they depend on failed)."""

    def stop(self) -> None:
        """The run ended (normally or not)."""


class RichDisplay(RunDisplay):
    """Live rich progress bars (overall + per pack), printing each failure as it happens."""

    def __init__(self, console: Console | None = None) -> None:
        self.console = console or make_console(stderr=True)
        self.progress = Progress(
            text_column("{task.description}"), BarColumn(), TaskProgressColumn(),
            text_column("{task.fields[note]}"), TimeElapsedColumn(), text_column("ETA"),
            TimeRemainingColumn(), console=self.console, transient=False,
        )
        self._overall: TaskID | None = None
        self._packs: dict[int, TaskID] = {}
        self._work: Callable[[Job], float] = lambda j: 1.0
        self._done_jobs = 0
        self._todo = 0

    def start(self, plan: Plan, todo: Sequence[Job], work: Callable[[Job], float]) -> None:
        self._work = work
        self._todo = len(todo)
        total = sum(work(j) for j in todo) or 1.0
        self.progress.start()
        self._overall = self.progress.add_task(
            f"study {plan.spec.name}", total=total, note=f"0/{self._todo} jobs")

    def pack_started(self, pack: Pack) -> None:
        self._packs[id(pack)] = self.progress.add_task(f"  {pack.label}", total=None, note="")

    def pack_progress(self, pack: Pack, job: Job, done: int, total: int) -> None:
        task = self._packs.get(id(pack))
        if task is not None:
            self.progress.update(task, completed=done, total=total)

    def pack_finished(self, pack: Pack, results: list[JobResult]) -> None:
        task = self._packs.pop(id(pack), None)
        if task is not None:
            self.progress.remove_task(task)
        self._done_jobs += len(results)
        if self._overall is not None:
            self.progress.update(self._overall, advance=sum(self._work(j) for j in pack.jobs),
                                 note=f"{self._done_jobs}/{self._todo} jobs")
        for r in results:
            if r.status == "failed":
                first = (r.error or "").splitlines()[0] if r.error else ""
                self.progress.console.print(styled("failed", "red", f" {pack.label}: {first}"))

    def pack_lost(self, pack: Pack, reason: str, again: Sequence[Job]) -> None:
        task = self._packs.pop(id(pack), None)
        if task is not None:
            self.progress.remove_task(task)
        self.progress.console.print(
            f"[yellow]worker lost[/yellow] {escape(pack.label)}: {escape(reason)}; "
            f"{len(again)} of its jobs run again", highlight=False)

    def jobs_blocked(self, jobs: Sequence[Job]) -> None:
        self._todo -= len(jobs)
        if self._overall is not None:
            task = self.progress.tasks[self._overall]
            total = (task.total or 0.0) - sum(self._work(j) for j in jobs)
            self.progress.update(self._overall, total=max(total, 1.0),
                                 note=f"{self._done_jobs}/{self._todo} jobs")

    def stop(self) -> None:
        self.progress.stop()


#: a :class:`LogDisplay` line at least every this share of the estimated work ...
LOG_STEP = 0.02
#: ... or every this many seconds, whichever comes first (and every failure, and the last job)
LOG_INTERVAL_S = 30.0


def _clock(s: float) -> str:
    s = int(round(max(0.0, s)))
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}"


class LogDisplay(RunDisplay):
    """Plain progress lines for logs: ``[  12/135 jobs  31%] 0:01:10 elapsed, ETA 0:02:35 |
    prune_finetune mnist/lenet5 x4 (mp x10, ...) done``; the share and the ETA are of the
    estimated work (the driver's ``work`` weights), the ETA from the rate so far."""

    def __init__(self, stream: TextIO | None = None, step: float = LOG_STEP,
                 interval_s: float = LOG_INTERVAL_S) -> None:
        self.stream = stream
        self.step, self.interval_s = step, interval_s
        self._work: Callable[[Job], float] = lambda j: 1.0
        self._total = 1.0
        self._done = 0.0
        self._jobs = 0
        self._todo = 0
        self._t0 = time.monotonic()
        self._last = (0.0, -1.0)  # (time, share) of the last line

    def _print(self, text: str) -> None:
        print(text, file=self.stream or sys.stderr, flush=True)

    def start(self, plan: Plan, todo: Sequence[Job], work: Callable[[Job], float]) -> None:
        self._work, self._todo = work, len(todo)
        self._total = sum(work(j) for j in todo) or 1.0
        self._t0 = time.monotonic()
        self._last = (self._t0, 0.0)
        self._print(f"study {plan.spec.name}: {len(todo)} jobs to run")

    def pack_finished(self, pack: Pack, results: list[JobResult]) -> None:
        self._jobs += len(results)
        self._done += sum(self._work(j) for j in pack.jobs)
        now = time.monotonic()
        share = min(1.0, self._done / self._total)
        failed = [r for r in results if r.status == "failed"]
        last = self._jobs >= self._todo
        if not (failed or last or share - self._last[1] >= self.step
                or now - self._last[0] >= self.interval_s):
            return
        self._last = (now, share)
        elapsed = now - self._t0
        eta = elapsed * (1 - share) / share if share > 0 else float("nan")
        width = len(str(self._todo))
        what = "failed: " + (failed[0].error or "").splitlines()[0] if failed else "done"
        self._print(f"[{self._jobs:>{width}}/{self._todo} jobs {100 * share:3.0f}%] "
                    f"{_clock(elapsed)} elapsed, ETA {_clock(eta) if eta == eta else '?'} | "
                    f"{pack.label} {what}")

    def jobs_blocked(self, jobs: Sequence[Job]) -> None:
        self._todo -= len(jobs)
        self._total = max(1.0, self._total - sum(self._work(j) for j in jobs))
        self._print(f"{len(jobs)} job(s) blocked: a job they depend on failed")


def display_for(console: Console) -> RunDisplay:
    """:class:`RichDisplay` on a terminal, else :class:`LogDisplay` lines on the console's file
    (a log file gets lines as the run goes, not one bar at the end)."""
    if console.is_terminal:
        return RichDisplay(console)
    return LogDisplay(console.file)
