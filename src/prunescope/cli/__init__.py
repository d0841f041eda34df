"""The ``prunescope`` command line. Every command is a thin wrapper over the Python API.

Each module below registers its commands on :data:`prunescope.cli._app.app`.
"""
from prunescope.cli._app import app
from prunescope.cli import data, train, prune, study, report, audit  # noqa: F401  (registration)


def main() -> None:
    """Console-script entry point."""
    app()
