"""The ``prunescope`` command line. Every command is a thin wrapper over the Python API.

Each module below registers its commands on :data:`prunescope.cli._app.app`.
"""
import gc
import os
import signal
import sys


def _interrupted_while_starting(signum: int, frame: object) -> None:
    """Ctrl-C while the command line still imports its modules (seconds: torch): one line,
    exit 130; nothing has been opened or run yet."""
    sys.stderr.write("interrupted while starting: nothing was run\n")
    os._exit(130)


_default = signal.getsignal(signal.SIGINT)
if _default is signal.default_int_handler:  # not when SIGINT is ignored (a background job)
    signal.signal(signal.SIGINT, _interrupted_while_starting)
try:
    from prunescope.cli._app import app
    from prunescope.cli import data, train, prune, study, report, audit, compare  # noqa: F401,E402
finally:
    if _default is signal.default_int_handler:
        signal.signal(signal.SIGINT, _default)


def main() -> None:
    """Console-script entry point.

    The process ends when ``app`` returns or raises ``SystemExit``; ``gc.freeze`` first spares
    the interpreter's final garbage collection of torch's object graph, which takes seconds on
    a busy machine (after Ctrl-C or SIGTERM too)."""
    try:
        app()
    finally:
        gc.freeze()
