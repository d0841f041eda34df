"""The study store: one SQLite file (``<output>/study.sqlite``, WAL mode), written by the driver.

Tables (schema :data:`SCHEMA_VERSION`, documented in ``docs/studies.md``):

* ``meta(key, value)``: ``schema_version``, ``created_by`` (prunescope version).
* ``jobs``: one row per job id: kind, params (canonical JSON), deps (JSON list), status
  (``pending``/``running``/``done``/``failed``/``blocked``), error text, seed, attempts,
  started/finished (Unix seconds), wall_s, achieved_ratio, artifacts (JSON name -> path/URL),
  info (JSON: best epoch, history, worker), updated (Unix seconds).
* ``evaluations(job_id, distribution, cls, support, predicted, correct)``: the tidy per-class
  counts of every ``evaluate`` job (SPEC 2 quantities derive from them).
* ``confusions(job_id, distribution, num_classes, matrix)``: the full ``(C, C)`` int64
  confusion matrix (rows true, columns predicted) as little-endian C-order bytes.

Every write is one transaction, so a crash (even ``kill -9``) leaves either the whole result of a
job or none of it.
"""
from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

import prunescope
from prunescope.study.plan import Job, canonical_json

#: version of the tables below; a store with a larger one was written by a newer prunescope
SCHEMA_VERSION = 1
STORE_FILE = "study.sqlite"
STATUSES = ("pending", "running", "done", "failed", "blocked")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    params TEXT NOT NULL,
    deps TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('pending','running','done','failed','blocked')),
    error TEXT,
    seed INTEGER,
    attempts INTEGER NOT NULL DEFAULT 0,
    started REAL,
    finished REAL,
    wall_s REAL,
    achieved_ratio REAL,
    artifacts TEXT,
    info TEXT,
    updated REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS jobs_status ON jobs(status);
CREATE TABLE IF NOT EXISTS evaluations (
    job_id TEXT NOT NULL REFERENCES jobs(id),
    distribution TEXT NOT NULL,
    cls INTEGER NOT NULL,
    support INTEGER NOT NULL,
    predicted INTEGER NOT NULL,
    correct INTEGER NOT NULL,
    PRIMARY KEY (job_id, cls)
);
CREATE TABLE IF NOT EXISTS confusions (
    job_id TEXT PRIMARY KEY REFERENCES jobs(id),
    distribution TEXT NOT NULL,
    num_classes INTEGER NOT NULL,
    matrix BLOB NOT NULL
);
"""


class StoreVersionError(RuntimeError):
    """The store was written by a prunescope with a newer schema than this one reads."""


@dataclass
class JobResult:
    """What a worker returns for one job (the driver writes it to the store).

    Attributes:
        job_id: the job's id.
        status: ``done`` or ``failed``.
        error: ``"<ExceptionType>: message"`` plus the traceback's last lines when failed.
        started, finished: Unix seconds; wall_s: seconds the job took in the worker.
        achieved_ratio: all params / nonzero params of a pruned model (1.0 for a dense one).
        artifacts: ``{name: path or URL}`` of files the job wrote (weights, masks, gradients).
        info: JSON-able details (best epoch, per-epoch history, ``cpu_s`` CPU seconds of the
            worker process, worker host/pid).
        confusion: ``(C, C)`` int64 confusion matrix of an ``evaluate`` job, else ``None``.
        distribution: the evaluated test distribution (``evaluate`` jobs).
    """

    job_id: str
    status: str
    error: str | None = None
    started: float = 0.0
    finished: float = 0.0
    wall_s: float = 0.0
    achieved_ratio: float | None = None
    artifacts: dict[str, str] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)
    confusion: np.ndarray | None = None
    distribution: str | None = None


class Store:
    """The SQLite store of one study folder. Use as a context manager or call :meth:`close`.

    Args:
        folder: the study's output folder (created if missing unless ``readonly``).
        readonly: open without creating or migrating anything (``status``, ``export``).

    Raises:
        StoreVersionError: the file's schema version is newer than :data:`SCHEMA_VERSION`.
        FileNotFoundError: ``readonly`` and no store exists yet.
    """

    def __init__(self, folder: str | Path, readonly: bool = False) -> None:
        self.folder = Path(folder)
        self.path = self.folder / STORE_FILE
        if readonly:
            if not self.path.is_file():
                raise FileNotFoundError(
                    f"no study store at {self.path}: the study has not been run yet "
                    "(start it with `prunescope run STUDY`)")
            self.conn = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True,
                                        isolation_level=None)
        else:
            self.folder.mkdir(parents=True, exist_ok=True)
            self.conn = sqlite3.connect(self.path, isolation_level=None, timeout=30.0)
            self.conn.execute("PRAGMA journal_mode=WAL")
            self.conn.execute("PRAGMA synchronous=NORMAL")
        self._check_version(readonly)

    # ---- lifecycle ----------------------------------------------------------------------------
    def _check_version(self, readonly: bool) -> None:
        has_meta = self.conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type='table' AND name='meta'").fetchone()
        found = None
        if has_meta:
            row = self.conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
            found = int(row[0]) if row else None
        if found is not None and found > SCHEMA_VERSION:
            self.conn.close()
            raise StoreVersionError(
                f"{self.path} was written by a newer prunescope (store schema {found}); this "
                f"prunescope {prunescope.__version__} reads schema <= {SCHEMA_VERSION}. Upgrade "
                "prunescope, or point the study at another output folder (--output)")
        if found is None and not readonly:
            with self.transaction():
                for statement in filter(str.strip, _SCHEMA.split(";")):
                    self.conn.execute(statement)
                self.conn.executemany("INSERT OR REPLACE INTO meta VALUES (?, ?)", [
                    ("schema_version", str(SCHEMA_VERSION)),
                    ("created_by", prunescope.__version__)])

    def close(self) -> None:
        """Close the connection (idempotent)."""
        self.conn.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def transaction(self) -> _Transaction:
        """``with store.transaction():`` runs the block in one ``BEGIN IMMEDIATE`` transaction."""
        return _Transaction(self.conn)

    # ---- writes -------------------------------------------------------------------------------
    def add_jobs(self, jobs: Iterable[Job]) -> int:
        """Insert jobs not yet in the store as ``pending`` (existing rows are untouched).
        Returns the number of rows inserted."""
        now = time.time()
        rows = [(j.id, j.kind, canonical_json(j.params), json.dumps(list(j.deps)), j.seed, now)
                for j in jobs]
        with self.transaction():
            before = self.conn.total_changes
            self.conn.executemany(
                "INSERT OR IGNORE INTO jobs (id, kind, params, deps, status, seed, updated) "
                "VALUES (?, ?, ?, ?, 'pending', ?, ?)", rows)
            return self.conn.total_changes - before

    def set_status(self, ids: Iterable[str], status: str, error: str | None = None) -> None:
        """Set ``status`` (and ``error``; cleared when ``None``) of the given jobs."""
        if status not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}, got {status!r}")
        now = time.time()
        extra = ", attempts = attempts + 1" if status == "running" else ""
        with self.transaction():
            self.conn.executemany(
                f"UPDATE jobs SET status = ?, error = ?, updated = ?{extra} WHERE id = ?",
                [(status, error, now, i) for i in ids])

    def record(self, results: Iterable[JobResult]) -> None:
        """Write finished jobs (status, timings, artifacts, confusion counts) in one transaction."""
        now = time.time()
        with self.transaction():
            for r in results:
                if r.status not in ("done", "failed"):
                    raise ValueError(f"a job result has status done or failed, got {r.status!r}")
                self.conn.execute(
                    "UPDATE jobs SET status=?, error=?, started=?, finished=?, wall_s=?, "
                    "achieved_ratio=?, artifacts=?, info=?, updated=? WHERE id=?",
                    (r.status, r.error, r.started, r.finished, r.wall_s, r.achieved_ratio,
                     json.dumps(r.artifacts, sort_keys=True), json.dumps(r.info, sort_keys=True),
                     now, r.job_id))
                if r.status == "done" and r.confusion is not None:
                    self._write_confusion(r.job_id, r.distribution or "nominal", r.confusion)

    def _write_confusion(self, job_id: str, distribution: str, cm: np.ndarray) -> None:
        cm = np.ascontiguousarray(cm, dtype="<i8")
        if cm.ndim != 2 or cm.shape[0] != cm.shape[1]:
            raise ValueError(f"confusion of job {job_id} must be (C, C), got {cm.shape}")
        self.conn.execute("DELETE FROM evaluations WHERE job_id = ?", (job_id,))
        self.conn.execute("INSERT OR REPLACE INTO confusions VALUES (?, ?, ?, ?)",
                          (job_id, distribution, cm.shape[0], cm.tobytes()))
        support, predicted, correct = cm.sum(1), cm.sum(0), np.diagonal(cm)
        self.conn.executemany(
            "INSERT INTO evaluations VALUES (?, ?, ?, ?, ?, ?)",
            [(job_id, distribution, c, int(support[c]), int(predicted[c]), int(correct[c]))
             for c in range(cm.shape[0])])

    # ---- reads --------------------------------------------------------------------------------
    def statuses(self) -> dict[str, str]:
        """``{job id: status}`` of every job in the store."""
        return dict(self.conn.execute("SELECT id, status FROM jobs"))

    def artifacts(self, ids: Iterable[str]) -> dict[str, dict[str, str]]:
        """``{job id: {artifact name: path or URL}}`` of the given (done) jobs."""
        out = {}
        for jid in ids:
            row = self.conn.execute("SELECT artifacts FROM jobs WHERE id = ?", (jid,)).fetchone()
            if row and row[0]:
                out[jid] = json.loads(row[0])
        return out

    def jobs_frame(self) -> pd.DataFrame:
        """The ``jobs`` table as a frame (JSON columns left as text)."""
        return pd.read_sql_query("SELECT * FROM jobs", self.conn)

    def evaluations_frame(self) -> pd.DataFrame:
        """The ``evaluations`` table: ``job_id, distribution, cls, support, predicted,
        correct`` (counts int64)."""
        return pd.read_sql_query("SELECT * FROM evaluations", self.conn)

    def confusion(self, job_id: str) -> np.ndarray:
        """The ``(C, C)`` int64 confusion matrix of a done ``evaluate`` job."""
        row = self.conn.execute("SELECT num_classes, matrix FROM confusions WHERE job_id = ?",
                                (job_id,)).fetchone()
        if row is None:
            raise KeyError(f"no confusion matrix stored for job {job_id}")
        c, blob = row
        return np.frombuffer(blob, dtype="<i8").reshape(c, c).astype(np.int64)


class _Transaction:
    """``BEGIN IMMEDIATE`` ... ``COMMIT`` (``ROLLBACK`` on an exception)."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def __enter__(self) -> None:
        self.conn.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: object, *rest: object) -> None:
        self.conn.execute("ROLLBACK" if exc_type else "COMMIT")
