"""The root ``prunescope`` Typer application; each command group registers itself on it, and
the options several commands share."""
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console

app = typer.Typer(
    name="prunescope",
    help="What pruning does to a neural network beyond its test accuracy.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)

#: ``--data-dir``: the dataset cache of the data, train, prune and audit commands
DataDirOpt = Annotated[Optional[Path], typer.Option(
    "--data-dir", help="Dataset cache (default: $PRUNESCOPE_DATA or ~/.cache/prunescope).")]
#: ``--device``: where train, prune and audit run
DeviceOpt = Annotated[str, typer.Option("--device", help="cpu or cuda.")]

#: columns of a console that is not a terminal (a log file, a pipe): wide enough that no line of
#: a table, path or message is wrapped (rich would wrap at 80)
LOG_WIDTH = 1000


def console(stderr: bool = False) -> Console:
    """A rich console on stdout (or stderr): the terminal's width on a terminal, else
    :data:`LOG_WIDTH` columns, so redirected output keeps every line whole."""
    c = Console(stderr=stderr)
    return c if c.is_terminal else Console(stderr=stderr, width=LOG_WIDTH)
