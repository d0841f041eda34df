"""The errors of the study store, each one line naming the file and the way on, and the
mapping from a SQLite error to them (:func:`_store_error`, used by the store's connection)."""
from __future__ import annotations

import sqlite3
from pathlib import Path

from prunescope.errors import UserError

__all__ = ["DiskFull", "StoreDamaged", "StoreError", "StoreMissing", "StoreNotWritable",
           "StoreVersionError"]


class StoreError(UserError, RuntimeError):
    """The study store cannot be used as it is; the message names the file and the remedy."""


class StoreVersionError(StoreError):
    """The store was written by a prunescope with a newer schema than this one reads."""


class StoreDamaged(StoreError):
    """The store file is not a readable SQLite database, is damaged, or is empty beside the
    artifacts of an earlier run."""


class StoreMissing(UserError, FileNotFoundError):
    """No store exists yet (the study has not been run)."""


class DiskFull(UserError, OSError):
    """The disk holding the store is full."""


class StoreNotWritable(UserError, PermissionError):
    """The store (or its folder) cannot be written by this user."""


def _store_error(path: Path, e: sqlite3.Error) -> Exception:
    """The :class:`StoreError` (or ``DiskFull``/``PermissionError``) that SQLite error ``e`` on
    ``path`` means, or ``e`` itself for errors that are bugs (misuse, constraints)."""
    text = str(e)
    if "disk is full" in text:
        return DiskFull(f"the disk holding {path} is full ({text}); free space on it (`df -h "
                        f"{path.parent}`), then run the same command again: every finished job "
                        "is kept in the store")
    if "readonly" in text or "unable to open" in text:
        return StoreNotWritable(
            f"cannot write {path} ({text}): the folder or the file is not writable by you; fix "
            "the permissions, or run the study with another --output folder (status, plan, "
            "export --out and report --out read a read-only folder)")
    if "locked" in text or "busy" in text:
        return StoreError(f"{path} stayed locked by another process for 30 s ({text}); wait "
                          "for the other `prunescope` command to finish and run this one again")
    if any(w in text for w in ("not a database", "malformed", "corrupt", "no such table",
                               "no such column", "decode")):
        return StoreDamaged(
            f"{path} is damaged or not a prunescope store (sqlite: {text}); restore it from a "
            "backup (its artifacts/ are kept), or, to recompute the study, move it away and "
            "run the study again")
    return e
