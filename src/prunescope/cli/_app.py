"""The root ``prunescope`` Typer application; each command group registers itself on it, and
the options several commands share."""
from pathlib import Path
from typing import Annotated, Optional

import typer

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
