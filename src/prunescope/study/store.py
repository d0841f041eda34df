"""The study store: one SQLite file (``<output>/study.sqlite``, WAL mode), written by the driver.

Tables (schema :data:`SCHEMA_VERSION`, documented in ``docs/studies.md``):

* ``meta(key, value)``: ``schema_version``, ``created_by`` (prunescope version).
* ``jobs``: one row per job id: kind, params (canonical JSON), deps (JSON list), status
  (``pending``/``running``/``done``/``failed``/``blocked``), error text, seed, attempts,
  started/finished (Unix seconds), wall_s, achieved_ratio, artifacts (JSON name -> path relative
  to the artifact root), info (JSON: best epoch, history, worker), updated (Unix seconds),
  checksums (JSON relative path -> sha256 hex of every file the job wrote), digest (sha256 hex
  of the done job's result rows, :meth:`Store.verify`).
* ``evaluations(job_id, distribution, cls, support, predicted, correct)``: the tidy per-class
  counts of every ``evaluate`` job (SPEC 2 quantities derive from them).
* ``confusions(job_id, distribution, num_classes, matrix)``: the full ``(C, C)`` int64
  confusion matrix (rows true, columns predicted) as little-endian C-order bytes.

Every write is one transaction, so a crash (even ``kill -9``) leaves either the whole result of a
job or none of it. Artifact paths are stored relative to the artifact root and resolved under
the root the :class:`Store` is opened with, so a study folder can be moved or copied; a schema-1
store (absolute paths, no checksums) is migrated when opened for writing and read as it is
otherwise. Every SQLite error names the file (:class:`StoreError` and its subclasses).

Integrity: :meth:`Store.record` writes, in the transaction of a done job's rows, the sha256 of
those rows (its id and :data:`_DIGESTED` columns of ``jobs``, its ``confusions`` and
``evaluations`` rows) into ``jobs.digest``; the readers the numbers come from
(:meth:`Store.jobs_frame`, :meth:`Store.evaluations_frame`) first check every row carrying a
digest, reading the tables in full (:meth:`Store.verify`), so a damaged store names the jobs
to invalidate instead of giving other counts. Rows recorded by a schema-2 store (prunescope < 0.3) have no digest and are not
checked.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3
import tempfile
import time
import urllib.parse
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
import pandas as pd

import prunescope
from prunescope.study.store_errors import (  # noqa: F401  (the store's errors, named here too)
    DiskFull, StoreDamaged, StoreError, StoreMissing, StoreNotWritable, StoreVersionError,
    _store_error)
from prunescope.study.artifacts import Artifacts
from prunescope.study.plan import Job, canonical_json

#: version of the tables below; a store with a larger one was written by a newer prunescope.
#: 2: artifact paths relative to the artifact root, ``jobs.checksums``. 3: ``jobs.digest``.
SCHEMA_VERSION = 3
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
    updated REAL NOT NULL,
    checksums TEXT,
    digest TEXT
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


#: the ``jobs`` columns a done job's digest covers (with its id, confusion and per-class
#: counts): all but ``updated`` (when the row was last written) and ``digest``
_DIGESTED = ("kind, params, deps, status, error, seed, attempts, started, finished, wall_s, "
             "achieved_ratio, artifacts, info, checksums")


def _rows_digest(job: tuple, confusions: list[tuple], counts: list[tuple]) -> str:
    """sha256 hex of one job's rows as SQLite returns them: ``job`` = its id and
    :data:`_DIGESTED` columns, its ``confusions`` and ``evaluations`` rows without the job id
    (in any order)."""
    # the text of repr((tuple(job), sorted(confusions, key=repr), sorted(counts, key=repr))),
    # each row's repr made once (a confusion row's matrix blob is most of the work)
    conf, cnt = (", ".join(sorted(map(repr, rows))) for rows in (confusions, counts))
    text = f"({tuple(job)!r}, [{conf}], [{cnt}])"
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


class _Cursor(sqlite3.Cursor):
    """A cursor whose SQLite errors name the store file (:func:`_store_error`)."""

    path: Path

    def execute(self, *args: Any) -> _Cursor:  # type: ignore[override]
        try:
            return super().execute(*args)
        except sqlite3.Error as e:
            raise _store_error(self.connection.path, e) from e  # type: ignore[attr-defined]

    def executemany(self, *args: Any) -> _Cursor:  # type: ignore[override]
        try:
            return super().executemany(*args)
        except sqlite3.Error as e:
            raise _store_error(self.connection.path, e) from e  # type: ignore[attr-defined]

    def __next__(self) -> Any:
        try:
            return super().__next__()
        except sqlite3.Error as e:
            raise _store_error(self.connection.path, e) from e  # type: ignore[attr-defined]

    def fetchone(self) -> Any:
        try:
            return super().fetchone()
        except sqlite3.Error as e:
            raise _store_error(self.connection.path, e) from e  # type: ignore[attr-defined]

    def fetchall(self) -> list[Any]:
        try:
            return super().fetchall()
        except sqlite3.Error as e:
            raise _store_error(self.connection.path, e) from e  # type: ignore[attr-defined]

    def fetchmany(self, *args: Any) -> list[Any]:
        try:
            return super().fetchmany(*args)
        except sqlite3.Error as e:
            raise _store_error(self.connection.path, e) from e  # type: ignore[attr-defined]


class _Connection(sqlite3.Connection):
    """A connection whose statements (also through pandas) run on :class:`_Cursor`."""

    path: Path

    def cursor(self, factory: Any = None) -> _Cursor:  # type: ignore[override]
        return super().cursor(factory or _Cursor)

    def execute(self, *args: Any) -> _Cursor:  # type: ignore[override]
        return self.cursor().execute(*args)

    def executemany(self, *args: Any) -> _Cursor:  # type: ignore[override]
        return self.cursor().executemany(*args)


def _connect(path: Path, target: str, uri: bool = False, **kw: Any) -> _Connection:
    try:
        conn = sqlite3.connect(target, uri=uri, isolation_level=None, factory=_Connection, **kw)
    except sqlite3.Error as e:
        raise _store_error(path, e) from e
    conn.path = path
    return conn


def _portable(kind: str, ref: str) -> str:
    """A schema-1 artifact reference (absolute path or URL ``.../<kind>/<file>``) as its name
    relative to the artifact root (``<kind>/<file>``: how prunescope names every artifact);
    anything else unchanged."""
    p = PurePosixPath(ref.replace(os.sep, "/"))
    if len(p.parts) >= 3 and p.parent.name == kind and (p.is_absolute() or "://" in ref):
        return f"{kind}/{p.name}"
    return ref


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
        checksums: ``{path or URL: sha256 hex}`` of every file the job wrote (sidecars too).
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
    checksums: dict[str, str] = field(default_factory=dict)


class Store:
    """The SQLite store of one study folder. Use as a context manager or call :meth:`close`.

    Args:
        folder: the study's output folder (created if missing unless ``readonly``).
        artifacts: the study's artifact root (``StudySpec.artifacts``; default
            ``<folder>/artifacts``): artifact names in the store are relative to it, and the
            paths or URLs this store returns lie under it.
        readonly: open without creating or migrating anything (``status``, ``export``); works
            on a folder this user cannot write (read through SQLite's ``immutable`` mode, or a
            private copy when a write-ahead log is left there).

    Raises:
        StoreVersionError: the file's schema version is newer than :data:`SCHEMA_VERSION`.
        StoreMissing: ``readonly`` and no store exists yet (a ``FileNotFoundError``).
        StoreDamaged: the file is not a SQLite store, or it is empty (0 bytes) while the
            artifact root holds files of an earlier run (never silently restarted).
    """

    def __init__(self, folder: str | Path, readonly: bool = False,
                 artifacts: str | None = None) -> None:
        self.folder = Path(folder)
        self.path = self.folder / STORE_FILE
        self.arts = Artifacts(artifacts if artifacts is not None
                              else str(self.folder / "artifacts"))
        self._copy: str | None = None
        #: ``conn.total_changes`` when :meth:`verify` last passed (``None``: never)
        self._verified: int | None = None
        if self.path.exists() and not self.path.is_file():
            raise StoreDamaged(
                f"{self.path} is damaged or not a prunescope store (a "
                f"{'folder' if self.path.is_dir() else 'device or special file'}, not a file); "
                "move it away, restore study.sqlite from a backup, or give the study another "
                "--output folder")
        wal = Path(f"{self.path}-wal")
        if (self.path.is_file() and self.path.stat().st_size == 0
                and not (wal.is_file() and wal.stat().st_size > 0)):  # nothing stored at all
            n = self.arts.count_files()
            if n:
                raise StoreDamaged(
                    f"{self.path} is empty (0 bytes) although {self.arts.root} holds {n} "
                    "artifact files of an earlier run: the store was lost or truncated, and "
                    "starting over would recompute every job. Restore study.sqlite from a "
                    "backup; or, to recompute the study from scratch, move both away")
        if readonly:
            self.conn = self._open_readonly()
        else:
            self.folder.mkdir(parents=True, exist_ok=True)
            self.conn = _connect(self.path, str(self.path), timeout=30.0)
        try:
            if not readonly:
                self.conn.execute("PRAGMA journal_mode=WAL")
                self.conn.execute("PRAGMA synchronous=NORMAL")
            self.version = self._check_version(readonly)
        except BaseException:
            self.close()
            raise

    def _open_readonly(self) -> _Connection:
        """A read-only connection. SQLite readers of a WAL store need its ``-shm`` file, which
        a folder this user cannot write does not let them create: there the file is opened
        ``immutable`` (nothing can write it either), or, when a write-ahead log was left
        beside it, a private copy of both is read (so that its last commits are seen)."""
        if not self.path.is_file():
            raise StoreMissing(
                f"no study store at {self.path}: the study has not been run yet "
                "(start it with `prunescope run STUDY`)")
        target, query = self.path, "mode=ro"
        if not os.access(self.folder, os.W_OK):
            wal = Path(f"{self.path}-wal")
            if wal.is_file() and wal.stat().st_size > 0:
                self._copy = tempfile.mkdtemp(prefix="prunescope-store-")
                target = Path(self._copy) / STORE_FILE
                shutil.copyfile(self.path, target)
                shutil.copyfile(wal, f"{target}-wal")
            else:
                query += "&immutable=1"
        uri = f"file:{urllib.parse.quote(str(target))}?{query}"
        return _connect(self.path, uri, uri=True)

    # ---- lifecycle ----------------------------------------------------------------------------
    def _check_version(self, readonly: bool) -> int:
        """The schema version (created or migrated to :data:`SCHEMA_VERSION` unless
        ``readonly``)."""
        has_meta = self.conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type='table' AND name='meta'").fetchone()
        found = None
        if has_meta:
            row = self.conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
            try:
                found = int(row[0]) if row else None
            except (TypeError, ValueError):
                raise self._damaged(f"schema_version {row[0]!r} is not an integer") from None
        if found is not None and found > SCHEMA_VERSION:
            raise StoreVersionError(
                f"{self.path} was written by a newer prunescope (store schema {found}); this "
                f"prunescope {prunescope.__version__} reads schema <= {SCHEMA_VERSION}. Upgrade "
                "prunescope, or point the study at another output folder (--output)")
        if readonly:
            if found is None:
                raise StoreMissing(f"{self.path} holds no study yet (an empty store); run the "
                                   "study first: `prunescope run STUDY`")
            return found
        if found is None:
            with self.transaction():
                for statement in filter(str.strip, _SCHEMA.split(";")):
                    self.conn.execute(statement)
                self.conn.executemany("INSERT OR REPLACE INTO meta VALUES (?, ?)", [
                    ("schema_version", str(SCHEMA_VERSION)),
                    ("created_by", prunescope.__version__)])
        if found == 1:
            self._migrate_from_1()
        if found in (1, 2):
            with self.transaction():  # 2 -> 3: rows recorded before have no digest (unchecked)
                if "digest" not in {r[1] for r in self.conn.execute("PRAGMA table_info(jobs)")}:
                    self.conn.execute("ALTER TABLE jobs ADD COLUMN digest TEXT")
                self.conn.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'",
                                  (str(SCHEMA_VERSION),))
        return SCHEMA_VERSION

    def _migrate_from_1(self) -> None:
        """Schema 1 -> 2: artifact paths relative to the artifact root (:func:`_portable`),
        an empty ``checksums`` column (files written before were not hashed); 2 -> 3 follows."""
        with self.transaction():
            self.conn.execute("ALTER TABLE jobs ADD COLUMN checksums TEXT")
            rows = self.conn.execute(
                "SELECT id, kind, artifacts FROM jobs WHERE artifacts IS NOT NULL").fetchall()
            self.conn.executemany("UPDATE jobs SET artifacts = ? WHERE id = ?", [
                (json.dumps({n: _portable(kind, u) for n, u in json.loads(a).items()},
                            sort_keys=True), jid) for jid, kind, a in rows])


    def close(self) -> None:
        """Close the connection (idempotent)."""
        self.conn.close()
        if self._copy is not None:
            shutil.rmtree(self._copy, ignore_errors=True)
            self._copy = None

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def transaction(self) -> _Transaction:
        """``with store.transaction():`` runs the block in one ``BEGIN IMMEDIATE`` transaction."""
        return _Transaction(self.conn)

    # ---- artifact references ------------------------------------------------------------------
    def _url(self, kind: str, ref: str) -> str:
        """The path or URL of a stored artifact reference under this store's artifact root
        (a schema-1 store opened read-only keeps absolute paths: re-rooted by name)."""
        return self.arts.url(_portable(kind, ref) if self.version < 2 else ref)

    def _damaged(self, what: str) -> StoreDamaged:
        """The :class:`StoreDamaged` of a value that prunescope never writes."""
        return StoreDamaged(
            f"{self.path} is damaged or not a prunescope store ({what}); restore it from a "
            "backup (its artifacts/ are kept), or, to recompute the study, move it away and run "
            "the study again")

    def _json(self, text: Any, job: Any, column: str, kind: type = dict) -> Any:
        """The JSON value of ``column`` of job ``job`` (``None``/empty: an empty ``kind``),
        which must be a ``kind``; :class:`StoreDamaged` naming both otherwise."""
        if text is None or text == "" or (isinstance(text, float) and text != text):
            return kind()  # NULL (pandas: None, or NaN in a column of NULLs)
        try:
            value = json.loads(text)
        except (TypeError, ValueError, RecursionError):
            value = None
        if not isinstance(value, kind):
            raise self._damaged(f"job {str(job)[:12]}: its {column} is not a JSON "
                                f"{kind.__name__}")
        return value

    def _resolved(self, kind: str, artifacts: str | None, checksums: str | None,
                  job: Any = "?") -> tuple[dict[str, str], dict[str, str]]:
        """``({name: url}, {url: sha256})`` of one job's stored JSON columns."""
        try:
            arts = {n: self._url(kind, r) for n, r in
                    self._json(artifacts, job, "artifacts").items()}
            sums = {self._url(kind, r): h for r, h in
                    self._json(checksums, job, "checksums").items()}
        except (TypeError, ValueError) as e:  # paths that are not strings
            raise self._damaged(f"job {str(job)[:12]}: its artifacts do not name files ({e})"
                                ) from None
        return arts, sums

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
        extra += ", digest = NULL"  # only a recorded result has one
        with self.transaction():
            self.conn.executemany(
                f"UPDATE jobs SET status = ?, error = ?, updated = ?{extra} WHERE id = ?",
                [(status, error, now, i) for i in ids])

    def record(self, results: Iterable[JobResult]) -> None:
        """Write finished jobs (status, timings, artifacts and their checksums, confusion
        counts) in one transaction, with the digest of each done job's rows
        (:meth:`verify`); artifact paths under the artifact root are stored relative to it."""
        results = list(results)
        now = time.time()
        name = self.arts.name
        with self.transaction():
            for r in results:
                if r.status not in ("done", "failed"):
                    raise ValueError(f"a job result has status done or failed, got {r.status!r}")
                self.conn.execute(
                    "UPDATE jobs SET status=?, error=?, started=?, finished=?, wall_s=?, "
                    "achieved_ratio=?, artifacts=?, info=?, checksums=?, digest=NULL, updated=? "
                    "WHERE id=?",
                    (r.status, r.error, r.started, r.finished, r.wall_s, r.achieved_ratio,
                     json.dumps({k: name(u) for k, u in r.artifacts.items()}, sort_keys=True),
                     json.dumps(r.info, sort_keys=True),
                     json.dumps({name(u): h for u, h in r.checksums.items()}, sort_keys=True),
                     now, r.job_id))
                if r.status == "done" and r.confusion is not None:
                    self._write_confusion(r.job_id, r.distribution or "nominal", r.confusion)
            done = [r.job_id for r in results if r.status == "done"]
            if done:
                self.conn.executemany("UPDATE jobs SET digest = ? WHERE id = ?", [
                    (d, jid) for jid, d in self._digests(done).items()])

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

    def invalidate(self, ids: Iterable[str]) -> list[str]:
        """Turn the given jobs and every job that depends on them (transitively, through the
        stored ``deps``) back to ``pending``, forgetting their results (artifacts, checksums,
        counts), so that the next run recomputes exactly those. Returns the reset ids, the
        given ones first. Their files stay until the rerun overwrites them."""
        children: dict[str, list[str]] = {}
        for jid, deps in self.conn.execute("SELECT id, deps FROM jobs"):
            for d in self._json(deps, jid, "deps", list):
                children.setdefault(d, []).append(jid)
        out: list[str] = []
        seen: set[str] = set()
        stack = list(reversed(list(ids)))
        while stack:
            jid = stack.pop()
            if jid not in seen:
                seen.add(jid)
                out.append(jid)
                stack.extend(reversed(children.get(jid, [])))
        now = time.time()
        with self.transaction():
            self.conn.executemany(
                "UPDATE jobs SET status='pending', error=NULL, started=NULL, finished=NULL, "
                "wall_s=NULL, achieved_ratio=NULL, artifacts=NULL, info=NULL, checksums=NULL, "
                "digest=NULL, updated=? WHERE id=?", [(now, j) for j in out])
            for table in ("evaluations", "confusions"):
                self.conn.executemany(f"DELETE FROM {table} WHERE job_id = ?",
                                      [(j,) for j in out])
        return out

    # ---- integrity ----------------------------------------------------------------------------
    def _rows_by_job(self, source: str, args: Sequence[Any] = ()
                     ) -> tuple[dict[Any, list[tuple]], dict[Any, list[tuple]]]:
        """``({job id: confusions rows}, {job id: evaluations rows})``, each row without its job
        id, as :func:`_rows_digest` takes them; ``source`` follows each table's name
        (``"WHERE job_id IN (?, ...)"`` with ``args``, or ``"NOT INDEXED"``)."""
        tables = []
        for table, cols in (("confusions", "distribution, num_classes, matrix"),
                            ("evaluations", "distribution, cls, support, predicted, correct")):
            rows: dict[Any, list[tuple]] = {}
            for r in self.conn.execute(f"SELECT job_id, {cols} FROM {table} {source}", args):
                rows.setdefault(r[0], []).append(r[1:])
            tables.append(rows)
        return tables[0], tables[1]

    def _digests(self, ids: list[str]) -> dict[str, str]:
        """``{job id: sha256 hex}`` of the rows of the given (just written) jobs
        (:func:`_rows_digest`), read through the indexes."""
        where = f"IN ({','.join('?' * len(ids))})"
        conf, counts = self._rows_by_job(f"WHERE job_id {where}", ids)
        return {r[0]: _rows_digest(r, conf.get(r[0], []), counts.get(r[0], []))
                for r in self.conn.execute(f"SELECT id, {_DIGESTED} FROM jobs WHERE id {where}",
                                           ids)}

    def verify(self, study: str | None = None) -> None:
        """Check every job's rows that carry a digest against it, reading each table in full
        (``NOT INDEXED``: a damaged index cannot hide a row); raise :class:`StoreDamaged`
        naming the jobs whose rows changed since they were written, or rows that belong to no
        job (``study``: the spec path in the ``prunescope invalidate`` command of the
        message). Jobs recorded without a digest (a schema-2 store) are not checked."""
        if self.version < 3 or self._verified == self.conn.total_changes:
            return  # unchecked schema, or checked already with nothing written since
        if not self.conn.in_transaction:  # one snapshot: a driver may commit meanwhile
            self.conn.execute("BEGIN")
            try:
                return self.verify(study)
            finally:
                if self.conn.in_transaction:
                    self.conn.execute("COMMIT")
        conf, counts = self._rows_by_job("NOT INDEXED")
        bad, ids = [], set()
        for digest, *row in self.conn.execute(f"SELECT digest, id, {_DIGESTED} FROM jobs "
                                              "NOT INDEXED"):
            ids.add(row[0])
            if digest is not None and digest != _rows_digest(
                    row, conf.get(row[0], []), counts.get(row[0], [])):
                bad.append(str(row[0]))
        orphans = (set(conf) | set(counts)) - ids
        if bad or orphans:
            s = study or "STUDY.toml"
            redo = (f"; restore the file from a backup, or redo those jobs: `prunescope "
                    f"invalidate {s} {' '.join(j[:12] for j in sorted(bad))}`, then "
                    f"`prunescope run {s}`") if bad else "; restore the file from a backup"
            raise StoreDamaged(
                f"{self.path} is damaged: "
                + (f"the stored rows of {len(bad)} done job(s) differ from the checksum written "
                   f"with them ({', '.join(j[:12] for j in sorted(bad)[:5])}"
                   f"{' ...' if len(bad) > 5 else ''})" if bad else "")
                + (" and " if bad and orphans else "")
                + (f"{len(orphans)} job id(s) of counts or confusion rows name no job"
                   if orphans else "") + redo)
        self._verified = self.conn.total_changes

    # ---- reads --------------------------------------------------------------------------------
    def statuses(self) -> dict[str, str]:
        """``{job id: status}`` of every job in the store."""
        return dict(self.conn.execute("SELECT id, status FROM jobs"))

    def kinds(self) -> dict[str, str]:
        """``{job id: kind}`` of every job in the store."""
        return dict(self.conn.execute("SELECT id, kind FROM jobs"))

    def errors(self) -> dict[str, str]:
        """``{job id: error text}`` of every failed job."""
        return dict(self.conn.execute("SELECT id, error FROM jobs WHERE status = 'failed'"))

    def infos(self, ids: Iterable[str]) -> dict[str, dict[str, Any]]:
        """``{job id: info dict}`` (what its worker reported) of the given jobs that have one."""
        out = {}
        for jid in ids:
            row = self.conn.execute("SELECT info FROM jobs WHERE id = ?", (jid,)).fetchone()
            if row and row[0]:
                out[jid] = json.loads(row[0])
        return out

    def find(self, prefix: str) -> str:
        """The one job id in the store that starts with ``prefix`` (e.g. the 12 characters
        ``prunescope status`` shows); :class:`StoreError` if none or several do."""
        found = [r[0] for r in self.conn.execute(
            "SELECT id FROM jobs WHERE substr(id, 1, ?) = ? LIMIT 2", (len(prefix), prefix))]
        if len(found) != 1:
            raise StoreError(f"{'no' if not found else 'more than one'} job in {self.path} has "
                             f"an id starting with {prefix!r}; give "
                             f"{'an id shown by' if not found else 'more characters of it, see'}"
                             " `prunescope status`")
        return found[0]

    def artifacts(self, ids: Iterable[str]) -> dict[str, dict[str, str]]:
        """``{job id: {artifact name: path or URL}}`` of the given (done) jobs."""
        return {jid: arts for jid, (arts, _) in self._files(ids).items()}

    def checksums(self, ids: Iterable[str]) -> dict[str, dict[str, str]]:
        """``{job id: {path or URL: sha256 hex}}`` of every file the given jobs wrote (empty
        for jobs recorded before prunescope kept checksums)."""
        return {jid: sums for jid, (_, sums) in self._files(ids).items()}

    def _files(self, ids: Iterable[str]) -> dict[str, tuple[dict[str, str], dict[str, str]]]:
        out = {}
        sums = "checksums" if self.version >= 2 else "NULL"  # schema 1 kept none
        for jid in ids:
            row = self.conn.execute(f"SELECT kind, artifacts, {sums} FROM jobs WHERE id = ?",
                                    (jid,)).fetchone()
            if row and row[1]:
                out[jid] = self._resolved(*row, job=jid)
        return out

    def jobs_frame(self) -> pd.DataFrame:
        """The ``jobs`` table as a frame (JSON columns left as text; ``artifacts`` and
        ``checksums`` hold the full paths or URLs under the artifact root), after
        :meth:`verify`."""
        self.verify()
        df = pd.read_sql_query("SELECT * FROM jobs", self.conn)
        if "checksums" not in df:
            df["checksums"] = None
        for col, kind in (("params", dict), ("deps", list), ("info", dict)):
            for jid, text in zip(df["id"], df[col]):
                self._json(text, jid, col, kind)
        self._numbers(df, "id", ("seed", "attempts", "started", "finished", "wall_s",
                                 "achieved_ratio", "updated"))
        files = [self._resolved(k, a, c if isinstance(c, str) else None, jid)
                 if isinstance(a, str) else (None, None)
                 for jid, k, a, c in zip(df["id"], df["kind"], df["artifacts"], df["checksums"])]
        df["artifacts"] = [None if a is None else json.dumps(a) for a, _ in files]
        df["checksums"] = [None if c is None else json.dumps(c) for _, c in files]
        return df

    def evaluations_frame(self) -> pd.DataFrame:
        """The ``evaluations`` table: ``job_id, distribution, cls, support, predicted,
        correct`` (counts int64), after :meth:`verify`."""
        self.verify()
        df = pd.read_sql_query("SELECT * FROM evaluations", self.conn)
        return self._numbers(df, "job_id", ("cls", "support", "predicted", "correct"))

    def _numbers(self, df: pd.DataFrame, id_col: str, cols: tuple[str, ...]) -> pd.DataFrame:
        """``df`` with ``cols`` as numbers (NULL stays missing); :class:`StoreDamaged` naming
        the job of the first value that is not a number."""
        for col in cols:
            bad = df[col].notna() & pd.to_numeric(df[col], errors="coerce").isna()
            if bad.any():
                raise self._damaged(f"job {str(df[id_col][bad].iloc[0])[:12]}: its {col} "
                                    f"{df[col][bad].iloc[0]!r} is not a number")
            df[col] = pd.to_numeric(df[col])
        return df

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
        if not exc_type:
            self.conn.execute("COMMIT")
        elif self.conn.in_transaction:  # SQLite already rolled back after e.g. SQLITE_FULL
            self.conn.execute("ROLLBACK")
