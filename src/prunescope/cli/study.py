"""`prunescope study` commands."""
from prunescope.cli._app import app  # noqa: F401
