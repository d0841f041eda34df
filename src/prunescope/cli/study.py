"""`prunescope plan | run | status | export | invalidate STUDY`: thin wrappers over
:mod:`prunescope.study`. Expected errors (a missing or damaged store, a locked folder...) are
reported by the root command group (:mod:`prunescope.cli._app`)."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from prunescope._console import console, styled
from prunescope.cli._app import app, writable_out

StudyArg = Annotated[Path, typer.Argument(help="the study's TOML file, e.g. studies/quick.toml")]
OutputOpt = Annotated[Optional[str], typer.Option(
    "--output", help="output folder overriding the spec's `output` (relative to the cwd)")]

_console = console()
_err = console(stderr=True)


def _spec(study: Path, output: str | None):
    from prunescope.study import load_spec

    return _exit_on_spec_error(load_spec, study, output)


def study_results(study: Path, output: str | None):
    """``load_results`` of STUDY; a bad spec exits 2, a study never run exits 1
    (``StoreMissing``), both saying so."""
    from prunescope.study import load_results

    return _exit_on_spec_error(load_results, study, output)


def _exit_on_spec_error(load, study: Path, output: str | None):
    """``load(study, output=output)``; an invalid spec prints one line and exits 2."""
    from prunescope.study import SpecError

    try:
        return load(study, output=output)
    except SpecError as e:
        _err.print(styled("invalid study spec", "red", f": {e}"))
        raise typer.Exit(2) from e


@app.command("plan")
def plan_cmd(study: StudyArg, output: OutputOpt = None) -> None:
    """Print the job counts per phase and the estimated work, without running anything."""
    from prunescope.study import KINDS, Store, estimate_work, make_plan
    from prunescope.study.store import StoreMissing

    spec = _spec(study, output)
    plan = make_plan(spec)
    work = estimate_work(plan)
    done: dict[str, int] = {}
    try:
        with Store(spec.output, readonly=True, artifacts=spec.artifacts) as store:
            status = store.statuses()
    except StoreMissing:  # not run yet
        status = {}
    if status:
        for j in plan.jobs:
            if status.get(j.id) == "done":
                done[j.kind] = done.get(j.kind, 0) + 1
    table = Table(title=f"study {spec.name}: {len(plan.jobs)} jobs, output {spec.output}")
    for col in ("phase", "jobs", "done", "epochs", "images (M)"):
        table.add_column(col, justify="left" if col == "phase" else "right")
    for k in KINDS:
        w = work[k]
        table.add_row(k, f"{int(w['jobs'])}", f"{done.get(k, 0)}", f"{w['epochs']:.0f}",
                      f"{w['images'] / 1e6:.2f}")
    total = sum(w["images"] for w in work.values())
    table.add_row("total", f"{len(plan.jobs)}", f"{sum(done.values())}",
                  f"{sum(w['epochs'] for w in work.values()):.0f}", f"{total / 1e6:.2f}")
    _console.print(table)
    _console.print("images = single-image forward passes (training images x epochs plus one "
                   "validation pass per epoch, gradient passes, test images).")


@app.command("run")
def run_cmd(
    study: StudyArg,
    executor: Annotated[str, typer.Option(help="local (in-process) or ray")] = "local",
    address: Annotated[Optional[str], typer.Option(
        help="Ray cluster address (default: start a local Ray instance)")] = None,
    retry_failed: Annotated[bool, typer.Option(
        "--retry-failed", help="rerun failed jobs and the jobs they blocked")] = False,
    output: OutputOpt = None,
    quiet: Annotated[bool, typer.Option("--quiet", help="no progress display")] = False,
) -> None:
    """Run every job of the study that is not done yet (resumable: rerun after any kill)."""
    from prunescope.study import run_study
    from prunescope.study.progress import display_for

    if executor not in ("local", "ray"):
        _err.print(styled(f"--executor {executor!r} is unknown", "red", "; use local or ray"))
        raise typer.Exit(2)
    spec = _spec(study, output)
    try:
        summary = run_study(spec, executor=executor, address=address,
                            retry_failed=retry_failed,
                            display=None if quiet else display_for(_err))
    except KeyboardInterrupt:
        _err.print(styled("interrupted", "yellow", ": finished jobs are saved; run the same "
                          "command again to resume"))
        raise typer.Exit(130) from None
    _console.print(
        f"study {spec.name}: {summary.total} jobs, {summary.already_done} already done, "
        f"{summary.ran} run now, {summary.failed} failed, {summary.blocked} blocked"
        + (f", {summary.lost} run again after a lost worker" if summary.lost else "")
        + f" ({summary.wall_s:.1f} s). Store: {spec.output}/study.sqlite")
    if summary.failed:
        _console.print("see `prunescope status` for the errors; `prunescope run --retry-failed` "
                       "reruns them")
        raise typer.Exit(1)


def _duration(seconds: float) -> str:
    """``12.3 s`` under a minute, else ``h:mm:ss``."""
    if seconds < 60:
        return f"{seconds:.1f} s"
    m, s = divmod(int(round(seconds)), 60)
    return f"{m // 60}:{m % 60:02d}:{s:02d}"


@app.command("status")
def status_cmd(study: StudyArg, output: OutputOpt = None) -> None:
    """List job counts per phase and status, the time the done jobs took per phase, and every
    failed job with its error."""
    from prunescope.study import KINDS

    res = study_results(study, output)
    spec = res.spec
    jobs = res.jobs
    statuses = ("pending", "running", "done", "failed", "blocked")
    table = Table(title=f"study {spec.name} ({spec.output})")
    table.add_column("phase")
    for s in statuses:
        table.add_column(s, justify="right")
    for k in KINDS:
        sub = jobs[jobs["kind"] == k]["status"].value_counts()
        table.add_row(k, *(str(int(sub.get(s, 0))) for s in statuses))
    table.add_row("total", *(str(int((jobs["status"] == s).sum())) for s in statuses))
    _console.print(table)
    _console.print("(running = in flight, or left by an interrupted run: `prunescope run` "
                   "redoes them)")
    done = jobs[jobs["status"] == "done"]
    if not done.empty:
        times = Table(title="time of the done jobs")
        for name in ("phase", "job time", "span"):
            times.add_column(name, justify="left" if name == "phase" else "right")
        for k, sub in [(k, done[done["kind"] == k]) for k in KINDS] + [("total", done)]:
            if not sub.empty:
                times.add_row(k, _duration(sub["wall_s"].sum()),
                              _duration(sub["finished"].max() - sub["started"].min()))
        _console.print(times)
        _console.print("(job time = the jobs' worker time summed, a pack's time counted once; "
                       "span = first start to last finish, across runs if the study was "
                       "resumed)")
    failed = jobs[jobs["status"] == "failed"]
    for _, row in failed.iterrows():
        what = f"{row['kind']} {row['arch']}/{row['dataset']} model {row['model']}"
        if row["kind"] != "train":
            what += f" {row['method']}@{row['ratio']:g}"
        _console.print(styled("failed", "red", f" {what} [{row['id'][:12]}]:\n  {row['error']}"))


@app.command("export")
def export_cmd(
    study: StudyArg,
    format: Annotated[str, typer.Option("--format", help="parquet or csv")] = "parquet",
    out: Annotated[Optional[Path], typer.Option(
        "--out", help="file to write (default <output>/results.<format>)")] = None,
    output: OutputOpt = None,
) -> None:
    """Write the tidy per-class results (one row per model, ratio, method, distribution,
    class) for pandas or R."""
    from prunescope.study import export_results

    if format not in ("parquet", "csv"):
        _err.print(styled(f"--format {format!r} is unknown", "red", "; use parquet or csv"))
        raise typer.Exit(2)
    if out is not None:
        writable_out("--out", out, folder=False)
    res = study_results(study, output)
    path = export_results(res, format, out)
    _console.print(f"wrote {len(res.frame)} rows to {path}")


@app.command("invalidate")
def invalidate_cmd(
    study: StudyArg,
    job_ids: Annotated[list[str], typer.Argument(
        help="ids of the jobs to redo, or unique prefixes (the 12 characters `prunescope "
             "status` and error messages show)")],
    output: OutputOpt = None,
) -> None:
    """Forget the results of the given jobs and of every job that depends on them (e.g. after
    a damaged artifact was reported), so that the next `prunescope run` recomputes exactly
    those; every other result is kept."""
    from prunescope.study import Store
    from prunescope.study.run import study_lock

    spec = _spec(study, output)
    with study_lock(spec.output), Store(spec.output, artifacts=spec.artifacts) as store:
        ids = [store.find(p) for p in job_ids]
        kinds = store.kinds()
        reset = store.invalidate(ids)
    given = ", ".join(f"{kinds[i]} {i[:12]}" for i in ids)
    _console.print(f"reset {len(reset)} job(s) to pending: {given} and {len(reset) - len(ids)} "
                   f"that depend on them; `prunescope run {study}` recomputes them",
                   markup=False, highlight=False)
