"""prunescope: what pruning does to a neural network beyond its test accuracy.

See ``../shared/SPEC.md`` (the science) and ``docs/architecture.md`` (the package contract).
"""
from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("prunescope")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
