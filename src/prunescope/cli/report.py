"""`prunescope report STUDY`: render a study's figures, tables and report.html.

A thin wrapper: ``prunescope.study.load_results`` then ``prunescope.report.render_report``.
"""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from prunescope._console import console, styled
from prunescope import choices
from prunescope.choices import CI_METHODS, CORRECTIONS, FAMILIES
from prunescope.cli._app import app, check, writable_out

_console = console()
_err = console(stderr=True)


@app.command("report")
def report_cmd(
    study: Annotated[Path, typer.Argument(help="the study's TOML file, e.g. studies/quick.toml")],
    output: Annotated[Optional[str], typer.Option(
        "--output", help="the study's output folder, overriding the spec's `output`")] = None,
    out: Annotated[Optional[Path], typer.Option(
        "--out", help="folder for the report (default: <study output>/report)")] = None,
    delta: Annotated[float, typer.Option(
        "--delta", help="prune-potential tolerance in percentage points of error (0 or 0.1 "
                        "to 100)", min=0.0)] = 0.5,
    correction: Annotated[str, typer.Option(
        "--correction", help="multiple-testing correction of the p-value tables within each "
                             f"family, one of: {', '.join(CORRECTIONS)} (Holm: step-down, never "
                             "larger)")] = "bonferroni",
    ci_method: Annotated[str, typer.Option(
        "--ci-method", help=f"99 % intervals of E(alpha) per cell, one of: {', '.join(CI_METHODS)} "
                            "(bootstrap: BCa, 9,999 resamples, seeded)")] = "t",
    families: Annotated[str, typer.Option(
        "--families", help=f"correction families of the p-values, one of: {', '.join(FAMILIES)} "
                           "(column: each column of a table, as the paper; table: a whole "
                           "table)")] = "column",
) -> None:
    """Write the study's figures (PNG, PDF), tables (Markdown, CSV, LaTeX) and one
    self-contained report.html; works on unfinished studies (it lists what is missing)."""
    from prunescope.cli.study import study_results
    from prunescope.report import render_report
    from prunescope.study.checks import checks
    from prunescope.study.results import train_recalls

    correction, ci_method, families = correction.lower(), ci_method.lower(), families.lower()
    check("--correction", correction, choices.choice_error(correction, CORRECTIONS))
    check("--ci-method", ci_method, choices.choice_error(ci_method, CI_METHODS))
    check("--families", families, choices.choice_error(families, FAMILIES))
    if out is not None:
        writable_out("--out", out, folder=True)
    res = study_results(study, output)
    target = out if out is not None else Path(res.out_dir) / "report"
    try:
        path = render_report(res.frame, target, spec_text=res.spec_text, study_name=res.spec.name,
                             jobs=res.jobs, delta=delta, agreement=res.agreement,
                             correction=correction, ci_method=ci_method, families=families,
                             training_splits=res.training_splits, exemplars=res.exemplars,
                             notices=checks(res), train_recall=train_recalls(res))
    except ValueError as e:
        _err.print(styled("cannot render the report", "red", f": {e}"))
        raise typer.Exit(1) from e
    done = int((res.jobs["status"] == "done").sum())
    _console.print(f"report of study {res.spec.name} ({done}/{len(res.jobs)} jobs done): {path}")
