"""The SQLite store: schema versioning, transactions, confusion counts (issue 5)."""
from __future__ import annotations

import sqlite3

import numpy as np
import pytest

from prunescope.study import SCHEMA_VERSION, JobResult, Store, StoreVersionError, make_plan, parse_spec

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
