"""The SQLite store: schema versioning, transactions, confusion counts (issue 5)."""
from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

import numpy as np
import pytest

from prunescope.study import SCHEMA_VERSION, JobResult, Store, StoreVersionError, make_plan, parse_spec
from prunescope.study.store import DiskFull, StoreDamaged, StoreError

SPEC = """
name = "s"
models = 1
datasets = ["mnist"]
architectures = ["lenet5"]
methods = ["mp"]
ratios = [2]
"""


@pytest.fixture
def plan(tmp_path):
    return make_plan(parse_spec(SPEC, base_dir=tmp_path))


def test_add_jobs_idempotent_and_wal(tmp_path, plan):
    with Store(tmp_path) as st:
        assert st.add_jobs(plan.jobs) == len(plan.jobs)
        assert st.add_jobs(plan.jobs) == 0
        assert set(st.statuses().values()) == {"pending"}
        assert st.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        version = st.conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
        assert int(version[0]) == SCHEMA_VERSION


def test_record_writes_counts_and_blob(tmp_path, plan):
    ev = next(j for j in plan.jobs if j.kind == "evaluate")
    cm = np.array([[5, 1, 0], [2, 7, 1], [0, 0, 9]], dtype=np.int64)
    with Store(tmp_path) as st:
        st.add_jobs(plan.jobs)
        st.set_status([ev.id], "running")
        st.record([JobResult(ev.id, "done", wall_s=0.5, confusion=cm, distribution="nominal")])
        assert st.statuses()[ev.id] == "done"
        assert np.array_equal(st.confusion(ev.id), cm)
        rows = st.evaluations_frame().sort_values("cls")
        assert rows["support"].tolist() == [6, 10, 9]     # row sums (true class)
        assert rows["predicted"].tolist() == [7, 8, 10]   # column sums
        assert rows["correct"].tolist() == [5, 7, 9]      # diagonal
        assert int(st.jobs_frame().set_index("id").loc[ev.id, "attempts"]) == 1


def test_a_failing_write_leaves_nothing(tmp_path, plan):
    ev = next(j for j in plan.jobs if j.kind == "evaluate")
    tr = next(j for j in plan.jobs if j.kind == "train")
    with Store(tmp_path) as st:
        st.add_jobs(plan.jobs)
        bad = JobResult(ev.id, "done", confusion=np.zeros((2, 3), dtype=np.int64))
        with pytest.raises(ValueError, match="must be \\(C, C\\)"):
            st.record([JobResult(tr.id, "done", achieved_ratio=1.0), bad])
        # the whole transaction rolled back: the first result is not stored either
        assert st.statuses()[tr.id] == "pending"
        assert st.evaluations_frame().empty


def test_newer_schema_fails_clearly(tmp_path, plan):
    with Store(tmp_path) as st:
        st.add_jobs(plan.jobs)
    con = sqlite3.connect(tmp_path / "study.sqlite")
    con.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(SCHEMA_VERSION + 1),))
    con.commit()
    con.close()
    with pytest.raises(StoreVersionError, match="newer prunescope"):
        Store(tmp_path)
    with pytest.raises(StoreVersionError, match=f"schema {SCHEMA_VERSION + 1}"):
        Store(tmp_path, readonly=True)


def test_readonly_without_store(tmp_path):
    with pytest.raises(FileNotFoundError, match="prunescope run"):
        Store(tmp_path / "never", readonly=True)
    assert not (tmp_path / "never").exists()


# ---- issue 14: portable paths, checksums, damaged and read-only stores ------------------------
def _done(st, job, folder, name, kind_dir=None):
    """Record ``job`` done with one artifact ``<folder>/<kind>/<name>`` (and its checksum)."""
    url = str(folder / (kind_dir or job.kind) / name)
    st.set_status([job.id], "running")
    st.record([JobResult(job.id, "done", artifacts={"weights": url}, checksums={url: "ab" * 32})])
    return url


def test_artifact_paths_are_stored_relative_and_resolved_under_the_root(tmp_path, plan):
    """Issue 14 item 4: the store keeps `train/<file>`; opened with another root (a moved or
    copied folder), every path and checksum key lies under that root."""
    tr = next(j for j in plan.jobs if j.kind == "train")
    with Store(tmp_path / "a") as st:
        st.add_jobs(plan.jobs)
        _done(st, tr, tmp_path / "a" / "artifacts", f"{tr.id}.safetensors")
        raw = st.conn.execute("SELECT artifacts, checksums FROM jobs WHERE id = ?",
                              (tr.id,)).fetchone()
    assert json.loads(raw[0]) == {"weights": f"train/{tr.id}.safetensors"}
    assert list(json.loads(raw[1])) == [f"train/{tr.id}.safetensors"]
    shutil.move(tmp_path / "a", tmp_path / "b")
    with Store(tmp_path / "b", readonly=True) as st:
        want = str(tmp_path / "b" / "artifacts" / "train" / f"{tr.id}.safetensors")
        assert st.artifacts([tr.id]) == {tr.id: {"weights": want}}
        assert st.checksums([tr.id]) == {tr.id: {want: "ab" * 32}}
        assert json.loads(st.jobs_frame().set_index("id").loc[tr.id, "artifacts"]) == {
            "weights": want}
    with Store(tmp_path / "b", readonly=True, artifacts="memory://bucket/s") as st:
        assert st.artifacts([tr.id])[tr.id]["weights"] == f"memory://bucket/s/train/{tr.id}.safetensors"


def _as_schema_1(folder, old_root):
    """Rewrite the store in ``folder`` as prunescope 0.1 wrote it: absolute artifact paths
    under ``old_root``, no checksums column, schema_version 1."""
    con = sqlite3.connect(folder / "study.sqlite")
    for jid, kind, arts in con.execute("SELECT id, kind, artifacts FROM jobs").fetchall():
        if arts:
            old = {n: f"{old_root}/{kind}/{Path(u).name}" for n, u in json.loads(arts).items()}
            con.execute("UPDATE jobs SET artifacts = ? WHERE id = ?", (json.dumps(old), jid))
    con.execute("ALTER TABLE jobs DROP COLUMN checksums")
    con.execute("ALTER TABLE jobs DROP COLUMN digest")
    con.execute("UPDATE meta SET value = '1' WHERE key = 'schema_version'")
    con.commit()
    con.close()


def test_a_schema_1_store_is_read_re_rooted_and_migrated_on_a_writable_open(tmp_path, plan):
    """Issue 14 item 4: a store with absolute paths of a folder that was moved away reads its
    own (new) folder's files, read-only as it is, and is migrated to relative paths (schema 2)
    and row digests (schema 3, issue 23) when opened for writing."""
    tr = next(j for j in plan.jobs if j.kind == "train")
    with Store(tmp_path / "new") as st:
        st.add_jobs(plan.jobs)
        _done(st, tr, tmp_path / "new" / "artifacts", f"{tr.id}.safetensors")
    _as_schema_1(tmp_path / "new", "/gone/out-A/artifacts")
    want = str(tmp_path / "new" / "artifacts" / "train" / f"{tr.id}.safetensors")
    with Store(tmp_path / "new", readonly=True) as st:
        assert st.version == 1 and st.artifacts([tr.id])[tr.id]["weights"] == want
        assert st.checksums([tr.id]) == {tr.id: {}}
    with Store(tmp_path / "new") as st:
        assert st.artifacts([tr.id])[tr.id]["weights"] == want
        raw = st.conn.execute("SELECT artifacts FROM jobs WHERE id = ?", (tr.id,)).fetchone()[0]
        version = st.conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
    assert json.loads(raw) == {"weights": f"train/{tr.id}.safetensors"}
    assert int(version[0]) == SCHEMA_VERSION == 3


def test_invalidate_resets_a_job_and_its_descendants_only(tmp_path, plan):
    """Issue 14 item 9: `invalidate` turns one job and everything that depends on it back to
    pending (results, counts and checksums forgotten); the rest stays done."""
    full = make_plan(parse_spec(SPEC.replace("models = 1", "models = 2"), base_dir=tmp_path))
    cm = np.eye(3, dtype=np.int64)
    with Store(tmp_path) as st:
        st.add_jobs(full.jobs)
        st.record([JobResult(j.id, "done", confusion=cm if j.kind == "evaluate" else None,
                             artifacts={"w": f"{j.kind}/{j.id}"}, checksums={f"{j.kind}/{j.id}": "0"})
                   for j in full.jobs])
        train0 = next(j for j in full.jobs if j.kind == "train" and j.model == 0)
        below = {j.id for j in full.jobs if j.model == 0}
        assert st.find(train0.id[:12]) == train0.id
        reset = st.invalidate([train0.id])
        assert reset[0] == train0.id and set(reset) == below
        status = st.statuses()
        assert {i for i, s in status.items() if s == "pending"} == below
        assert {i for i, s in status.items() if s == "done"} == {j.id for j in full.jobs} - below
        assert not set(st.evaluations_frame()["job_id"]) & below
        kept = [j for j in full.jobs if j.kind == "evaluate" and j.model == 1]
        assert st.artifacts(below) == {} and len(st.evaluations_frame()) == 3 * len(kept)
    with Store(tmp_path) as st, pytest.raises(StoreError, match="no job"):
        st.find("zzzz")


def test_damaged_and_empty_store_files_are_refused_naming_the_file(tmp_path, plan):
    """Issue 14 items 8, 9: a garbage file, a truncated store and a 0-byte store beside the
    artifacts of an earlier run are refused with StoreDamaged naming the file; a 0-byte store
    without artifacts is simply a new store."""
    path = tmp_path / "study.sqlite"
    path.write_bytes(b"not a database at all " * 300)
    for ro in (False, True):
        with pytest.raises(StoreDamaged, match=f"{path}.*damaged or not a prunescope store"):
            Store(tmp_path, readonly=ro)
    path.unlink()
    with Store(tmp_path) as st:
        st.add_jobs(plan.jobs)
        st.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    path.write_bytes(path.read_bytes()[: 2 * 4096])  # the jobs table's pages cut off
    with pytest.raises(StoreDamaged, match="study.sqlite is damaged"):
        with Store(tmp_path, readonly=True) as st:
            st.statuses()
    path.write_bytes(b"")
    (tmp_path / "artifacts" / "train").mkdir(parents=True)
    (tmp_path / "artifacts" / "train" / "x.safetensors").write_bytes(b"w")
    for ro in (False, True):
        with pytest.raises(StoreDamaged, match="empty \\(0 bytes\\) although .* holds 1 artifact"):
            Store(tmp_path, readonly=ro)
    assert path.stat().st_size == 0  # nothing was started
    shutil.rmtree(tmp_path / "artifacts")
    with Store(tmp_path) as st:
        assert st.add_jobs(plan.jobs) == len(plan.jobs)


def test_a_full_disk_is_reported_as_disk_full_naming_the_store(tmp_path, plan):
    """Issue 14 item 8: SQLite's SQLITE_FULL (here: the page limit a full disk imposes, set with
    max_page_count) becomes DiskFull naming the file, and the write leaves nothing."""
    with Store(tmp_path) as st:
        st.add_jobs(plan.jobs[:1])
        pages = st.conn.execute("PRAGMA page_count").fetchone()[0]
        st.conn.execute(f"PRAGMA max_page_count = {pages}")
        big = [JobResult(plan.jobs[0].id, "done", info={"history": "x" * 100_000})]
        with pytest.raises(DiskFull, match=f"disk holding {tmp_path / 'study.sqlite'} is full"):
            st.record(big)
        assert st.statuses()[plan.jobs[0].id] == "pending"


@pytest.mark.parametrize("damage", [
    "UPDATE evaluations SET correct = 0 WHERE cls = 1",
    "UPDATE confusions SET matrix = zeroblob(72)",
    "UPDATE jobs SET achieved_ratio = 2.5 WHERE status = 'done'",
    "UPDATE jobs SET info = '{\"best_epoch\": 3}' WHERE status = 'done'",
])
def test_damaged_result_rows_are_named_not_read(tmp_path, plan, damage):
    """Issue 23 must-fix 4: each done job's rows carry a sha256 written in the same
    transaction; a changed count, matrix or ratio is refused naming the job to invalidate (on
    main the changed value was read: `correct` 193 -> 0 in export, status and the report)."""
    ev = next(j for j in plan.jobs if j.kind == "evaluate")
    cm = np.array([[5, 1, 0], [2, 7, 1], [0, 0, 9]], dtype=np.int64)
    with Store(tmp_path) as st:
        st.add_jobs(plan.jobs)
        st.record([JobResult(ev.id, "done", wall_s=0.5, achieved_ratio=1.0, confusion=cm,
                             distribution="nominal", info={"best_epoch": 2})])
        before = st.evaluations_frame()
    con = sqlite3.connect(tmp_path / "study.sqlite")
    con.execute(damage)
    con.commit()
    con.close()
    for readonly in (True, False):
        with Store(tmp_path, readonly=readonly) as st:
            for read in (st.evaluations_frame, st.jobs_frame):
                with pytest.raises(StoreDamaged, match=f"differ from the checksum.*prunescope "
                                                       f"invalidate STUDY.toml {ev.id[:12]}"):
                    read()
    with Store(tmp_path) as st:
        assert st.invalidate([ev.id]) == [ev.id]
        assert st.evaluations_frame().empty
        st.record([JobResult(ev.id, "done", wall_s=0.5, achieved_ratio=1.0, confusion=cm,
                             distribution="nominal", info={"best_epoch": 2})])
        assert st.evaluations_frame().equals(before)


def test_a_schema_2_store_opens_and_its_rows_stay_unchecked(tmp_path, plan):
    """A store written by the previous prunescope (schema 2, no digests) is read as it is and
    migrated when opened for writing; its rows have no digest, so they are not checked
    (docs/reliability.md); rows recorded after the migration are."""
    ev, ev2 = [j for j in plan.jobs if j.kind == "evaluate"][:2]
    cm = np.eye(3, dtype=np.int64) * 4
    with Store(tmp_path) as st:
        st.add_jobs(plan.jobs)
        st.record([JobResult(ev.id, "done", confusion=cm, distribution="nominal")])
    con = sqlite3.connect(tmp_path / "study.sqlite")
    con.execute("ALTER TABLE jobs DROP COLUMN digest")
    con.execute("UPDATE meta SET value = '2' WHERE key = 'schema_version'")
    con.commit()
    con.close()
    with Store(tmp_path, readonly=True) as st:
        assert st.version == 2 and st.evaluations_frame()["correct"].tolist() == [4, 4, 4]
    with Store(tmp_path) as st:
        assert st.version == SCHEMA_VERSION
        st.record([JobResult(ev2.id, "done", confusion=cm, distribution="nominal")])
    con = sqlite3.connect(tmp_path / "study.sqlite")
    con.execute("UPDATE evaluations SET correct = 1 WHERE job_id = ?", (ev.id,))
    con.commit()
    with Store(tmp_path, readonly=True) as st:
        assert sorted(st.evaluations_frame()["correct"]) == [1, 1, 1, 4, 4, 4]
    con.execute("UPDATE evaluations SET correct = 1 WHERE job_id = ?", (ev2.id,))
    con.commit()
    con.close()
    with Store(tmp_path, readonly=True) as st, pytest.raises(StoreDamaged, match=ev2.id[:12]):
        st.evaluations_frame()
