"""The base class of expected operational errors (a bad file, a full disk, a missing backend):
the ``prunescope`` command line prints such an error as its one-line message, without a
traceback (``prunescope --debug`` shows it), and exits with :attr:`UserError.exit_code`.

Every error of this kind says what was wrong, in which file, and how to fix it. A subclass also
derives from the built-in error it refines (``RuntimeError``, ``FileNotFoundError``...), so
callers of the Python API can keep catching those.
"""
from __future__ import annotations


class UserError(Exception):
    """An expected error whose message is complete: what, which file, the remedy."""

    #: exit status of the command line
    exit_code = 1


class DeviceUnavailable(UserError, RuntimeError):
    """The requested device (e.g. CUDA) does not exist on this machine."""
