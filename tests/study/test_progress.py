"""Progress off a terminal (issue 18 item 9): lines as the run goes, full-width lines."""
from __future__ import annotations

import io

from rich.console import Console

from prunescope._console import LOG_WIDTH, console
from prunescope.study.packs import Pack
from prunescope.study.plan import Job
from prunescope.study.progress import LogDisplay, RichDisplay, display_for
from prunescope.study.store import JobResult


def _job(i: int, kind: str = "prune_finetune") -> Job:
    return Job(f"{i:064x}", kind, {}, (), "mnist", "lenet5", 0, 0, method="mp", ratio=2.0 + i)


class _Plan:
    spec = type("S", (), {"name": "s"})()


def test_log_display_prints_a_line_per_few_percent_as_it_goes():
    out = io.StringIO()
    d = LogDisplay(out, step=0.1, interval_s=1e9)
    jobs = [_job(i) for i in range(40)]
    d.start(_Plan(), jobs, lambda j: 1.0)
    assert out.getvalue() == "study s: 40 jobs to run\n"
    for i, j in enumerate(jobs[:8]):
        d.pack_finished(Pack(j.kind, j.dataset, j.arch, (j,)), [JobResult(j.id, "done")])
    lines = out.getvalue().splitlines()
    assert len(lines) == 3  # start, then at 10 % and 20 %: one line per 10 % of the work
    assert lines[1].startswith("[ 4/40 jobs  10%]") and "ETA" in lines[1]
    assert "prune_finetune lenet5/mnist mp@5" in lines[1]
    j = jobs[8]
    d.pack_finished(Pack(j.kind, j.dataset, j.arch, (j,)),
                    [JobResult(j.id, "failed", error="ValueError: boom\ntraceback")])
    assert out.getvalue().splitlines()[-1].endswith("failed: ValueError: boom")  # failures always
    for j in jobs[9:]:
        d.pack_finished(Pack(j.kind, j.dataset, j.arch, (j,)), [JobResult(j.id, "done")])
    assert out.getvalue().splitlines()[-1].startswith("[40/40 jobs 100%]")


def test_display_for_logs_off_a_terminal():
    assert isinstance(display_for(Console(file=io.StringIO())), LogDisplay)
    assert isinstance(display_for(Console(file=io.StringIO(), force_terminal=True)), RichDisplay)


def test_console_off_a_terminal_does_not_wrap_long_paths(capsys):
    c = console()
    assert not c.is_terminal and c.width == LOG_WIDTH
    path = "/very/long/" + "folder-name/" * 12 + "report.html"
    c.print(f"report: {path}")
    assert path in capsys.readouterr().out
