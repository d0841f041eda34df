"""`prunescope report STUDY`: render a study's figures, tables and report.html.

A thin wrapper: ``prunescope.study.load_results`` then ``prunescope.report.render_report``.
"""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console

from prunescope.cli._app import app

_console = Console()
_err = Console(stderr=True)


@app.command("report")
def report_cmd(
    study: Annotated[Path, typer.Argument(help="the study's TOML file, e.g. studies/quick.toml")],
    output: Annotated[Optional[str], typer.Option(
        "--output", help="the study's output folder, overriding the spec's `output`")] = None,
    out: Annotated[Optional[Path], typer.Option(
        "--out", help="folder for the report (default: <study output>/report)")] = None,
    delta: Annotated[float, typer.Option(
        "--delta", help="prune-potential tolerance in percentage points of error", min=0.0)] = 0.5,
) -> None:
    """Write the study's figures (PNG, PDF), tables (Markdown, CSV, LaTeX) and one
    self-contained report.html; works on unfinished studies (it lists what is missing)."""
    from prunescope.cli.study import study_results
    from prunescope.report import render_report

    res = study_results(study, output)
    target = out if out is not None else Path(res.out_dir) / "report"
    try:
        path = render_report(res.frame, target, spec_text=res.spec_text, study_name=res.spec.name,
                             jobs=res.jobs, delta=delta / 100.0, agreement=res.agreement)
    except ValueError as e:
        _err.print(f"[red]cannot render the report[/red]: {e}")
        raise typer.Exit(1) from e
    done = int((res.jobs["status"] == "done").sum())
    _console.print(f"report of study {res.spec.name} ({done}/{len(res.jobs)} jobs done): {path}")
