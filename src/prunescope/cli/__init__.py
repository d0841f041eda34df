"""The ``prunescope`` command line. Every command is a thin wrapper over the Python API.

Each module below registers its commands on :data:`prunescope.cli._app.app`.
"""
import gc

from prunescope.cli._app import app
from prunescope.cli import data, train, prune, study, report, audit, compare  # noqa: F401  (registration)


def main() -> None:
    """Console-script entry point.

    The process ends when ``app`` returns or raises ``SystemExit``; ``gc.freeze`` first spares
    the interpreter's final garbage collection of torch's object graph, which takes seconds on
    a busy machine (after Ctrl-C or SIGTERM too)."""
    try:
        app()
    finally:
        gc.freeze()
