"""Functional agreement of a study (SPEC 2): evaluate jobs keep their per-image predictions as
an artifact and ``load_results().agreement`` compares each pruned evaluation with its dense one."""
from __future__ import annotations

import json
import sqlite3

import numpy as np
import pandas as pd
import pytest

import prunescope.study.results as results_mod
from prunescope.data import load, train_val_indices
from prunescope.study import AGREEMENT_COLUMNS, load_results, load_spec, read_predictions
from prunescope.study.artifacts import Artifacts
from prunescope.study.store import STORE_FILE


def _evals(res):
    return res.jobs[(res.jobs["kind"] == "evaluate") & (res.jobs["status"] == "done")]


def test_evaluate_jobs_store_predictions_in_test_set_order(tiny_reference):
    """The artifact holds (N_test,) small-int predictions whose per-class counts reproduce the
    stored confusion counts against the real test labels (so the order is the test set's)."""
    spec, _, frame, _ = tiny_reference
    res = load_results(spec)
    evals = _evals(res)
    assert len(evals) == 6
    y = load("mnist", "test").y
    _, idx = train_val_indices(y, spec.test_subset, seed=spec.split_seed)
    y = y[idx]
    for _, row in evals.iterrows():
        url = row["artifacts"]["predictions"]
        raw = np.load(url)
        assert raw.dtype == np.uint8 and raw.shape == (spec.test_subset,)
        pred = read_predictions(url)
        f = frame[(frame["method"] == row["method"]) & (frame["model"] == row["model"])
                  & (frame["distribution"] == row["distribution"])].sort_values("cls")
        np.testing.assert_array_equal(np.bincount(pred, minlength=10), f["predicted"])
        np.testing.assert_array_equal(np.bincount(y[pred == y], minlength=10), f["correct"])


def test_agreement_frame_equals_direct_recomputation(tiny_reference):
    spec, _, _, _ = tiny_reference
    res = load_results(spec)
    ag = res.agreement
    assert list(ag.columns) == list(AGREEMENT_COLUMNS)
    # 2 models x (MP, GP) x nominal
    assert len(ag) == 4 and set(ag["method"]) == {"mp", "gp"}
    assert ag["agreement"].between(0.0, 1.0).all()
    evals = _evals(res).set_index(["method", "model", "distribution"])
    for _, row in ag.iterrows():
        pruned = np.load(evals.loc[(row["method"], row["model"], row["distribution"]),
                                   "artifacts"]["predictions"])
        dense = np.load(evals.loc[("dense", row["model"], row["distribution"]),
                                  "artifacts"]["predictions"])
        assert row["agreement"] == pytest.approx(np.count_nonzero(pruned == dense) / len(dense))
    # fine-tuned at ratio 4 for 2 steps: mostly the dense model's answers, but not all of them
    assert (ag["agreement"] > 0.5).all()


def test_agreement_pairs_each_pruned_model_with_its_own_dense(tiny_reference, monkeypatch):
    """Replace one pruned model's predictions by its own dense model's: agreement must become
    exactly 1; by the other dense model's: it must equal their direct agreement (< 1)."""
    spec, _, _, _ = tiny_reference
    res = load_results(spec)
    evals = _evals(res).set_index(["method", "model"])
    url = {k: a["predictions"] for k, a in evals["artifacts"].items()}
    swap = {url[("mp", 0)]: url[("dense", 0)], url[("gp", 1)]: url[("dense", 0)]}
    real = results_mod.read_predictions
    monkeypatch.setattr(results_mod, "read_predictions", lambda u, *_: real(swap.get(u, u)))
    ag = load_results(spec).agreement.set_index(["method", "model"])["agreement"]
    assert ag[("mp", 0)] == 1.0
    d0, d1 = real(url[("dense", 0)]), real(url[("dense", 1)])
    assert ag[("gp", 1)] == pytest.approx(np.mean(d0 == d1))
    assert ag[("gp", 1)] < 1.0
    assert ag[("gp", 0)] == pytest.approx(res.agreement.set_index(["method", "model"])
                                          .loc[("gp", 0), "agreement"])


def _copy_store(spec, dest):
    """A copy of the study's SQLite store in ``dest`` (its ``artifacts`` folder a link to the
    original one) and the spec reading it."""
    dest.mkdir(parents=True)
    (dest / "artifacts").symlink_to(spec.artifacts)
    src = sqlite3.connect(f"file:{spec.output}/{STORE_FILE}?mode=ro", uri=True)
    dst = sqlite3.connect(dest / STORE_FILE)
    src.backup(dst)
    src.close()
    return dst, load_spec(spec.path, output=str(dest))


def _edit_artifacts(conn, edit):
    """Edit the evaluations' artifacts as an older prunescope wrote them (without the row
    digests of issue 23, which would name the edit as damage)."""
    rows = conn.execute("SELECT id, artifacts FROM jobs WHERE kind = 'evaluate'").fetchall()
    for jid, arts in rows:
        conn.execute("UPDATE jobs SET artifacts = ?, digest = NULL WHERE id = ?",
                     (json.dumps(edit(jid, json.loads(arts or "{}"))), jid))
    conn.commit()
    conn.close()


def test_study_without_predictions_has_an_empty_agreement_frame(tiny_reference, tmp_path):
    """A study run before predictions were kept: evaluate jobs have no such artifact."""
    spec, _, frame, _ = tiny_reference
    conn, old = _copy_store(spec, tmp_path / "old")
    _edit_artifacts(conn, lambda _j, a: {k: v for k, v in a.items() if k != "predictions"})
    res = load_results(old)
    pd.testing.assert_frame_equal(res.frame, frame)
    assert res.agreement.empty and list(res.agreement.columns) == list(AGREEMENT_COLUMNS)


def test_missing_prediction_files_leave_rows_out_with_a_warning(tiny_reference, tmp_path):
    spec, _, _, _ = tiny_reference
    conn, copy = _copy_store(spec, tmp_path / "copy")
    res = load_results(spec)
    gone = _evals(res)
    gone = gone[(gone["method"] == "gp") & (gone["model"] == 1)]["id"].item()
    _edit_artifacts(conn, lambda j, a: a | {"predictions": str(tmp_path / "nope.npy")}
                    if j == gone else a)
    with pytest.warns(UserWarning, match="nope.npy"):
        ag = load_results(copy).agreement
    assert len(ag) == 3 and not ((ag["method"] == "gp") & (ag["model"] == 1)).any()


def test_status_and_export_read_no_predictions_and_agreement_is_unchanged(tiny_reference,
                                                                        tmp_path, monkeypatch):
    """``agreement`` is computed on first access: ``prunescope status`` and ``export`` (and
    ``load_results`` itself) read no predictions artifact; the first access reads each file once,
    later accesses none, and the frame equals the one computed from the jobs directly."""
    from typer.testing import CliRunner

    from prunescope.cli import app

    spec, _, frame, _ = tiny_reference
    reads: list[str] = []
    real = results_mod.read_predictions

    def counting(url, *_):
        reads.append(url)
        return real(url)

    monkeypatch.setattr(results_mod, "read_predictions", counting)
    out = CliRunner().invoke(app, ["status", spec.path])
    assert out.exit_code == 0, out.output
    out = CliRunner().invoke(app, ["export", spec.path, "--format", "csv",
                                   "--out", str(tmp_path / "r.csv")])
    assert out.exit_code == 0, out.output
    assert len(pd.read_csv(tmp_path / "r.csv")) == len(frame)
    res = load_results(spec)
    pd.testing.assert_frame_equal(res.frame, frame)
    assert reads == []
    ag = res.agreement
    urls = [a["predictions"] for a in _evals(res)["artifacts"]]
    assert sorted(reads) == sorted(urls)  # 2 dense + 4 pruned, each once
    assert res.agreement is ag and len(reads) == len(urls)
    pd.testing.assert_frame_equal(ag, results_mod._agreement(res.jobs))


def test_status_works_with_the_predictions_artifacts_gone(tiny_reference, tmp_path):
    """Status and export of a study whose predictions files are gone: no warning, same
    output; the warning about the missing files comes when ``agreement`` is read."""
    import warnings

    from typer.testing import CliRunner

    from prunescope.cli import app

    spec, _, frame, _ = tiny_reference
    conn, copy = _copy_store(spec, tmp_path / "copy")
    _edit_artifacts(conn, lambda j, a: a | {"predictions": str(tmp_path / f"gone-{j}.npy")})
    ref = CliRunner().invoke(app, ["status", spec.path])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        res = load_results(copy)
        out = CliRunner().invoke(app, ["status", spec.path, "--output", copy.output])
        exp = CliRunner().invoke(app, ["export", spec.path, "--output", copy.output,
                                       "--format", "csv", "--out", str(tmp_path / "r.csv")])
    assert out.exit_code == 0 and exp.exit_code == 0, out.output + exp.output
    table = out.output[out.output.index("┏"):]  # the title names the folder
    assert table == ref.output[ref.output.index("┏"):] and "done" in table
    pd.testing.assert_frame_equal(res.frame, frame)
    with pytest.warns(UserWarning, match="gone-"):
        assert res.agreement.empty


def test_predictions_round_trip_through_an_fsspec_url():
    arts = Artifacts("memory://prunescope-agreement-test")
    pred = np.array([0, 3, 9, 3], dtype=np.uint8)
    with arts.writing("evaluate") as tmp:
        np.save(tmp / "x.npy", pred)
    url = arts.url("evaluate/x.npy")
    assert url.startswith("memory://")
    got = read_predictions(url)
    assert got.dtype == np.int64
    np.testing.assert_array_equal(got, pred)
    with pytest.raises(FileNotFoundError, match="missing"):
        read_predictions(arts.url("evaluate/absent.npy"))


def test_study_results_is_a_plain_dataclass_with_a_lazy_agreement(tmp_path):
    """``agreement`` is ``load_agreement()`` on first access, once; ``dataclasses.replace``
    keeps the loader; without one it is empty with AGREEMENT_COLUMNS; the warning about a
    missing predictions file points at the line that reads ``agreement``."""
    import dataclasses

    jobs = pd.DataFrame({
        "id": ["d", "p"], "kind": ["evaluate"] * 2, "status": ["done"] * 2,
        "dataset": ["mnist"] * 2, "arch": ["lenet5"] * 2, "method": ["dense", "mp"],
        "ratio": [1.0, 2.0], "model": [0, 0], "distribution": ["nominal"] * 2,
        "objective": ["ce"] * 2,
        "artifacts": [{"predictions": str(tmp_path / f"{j}.npy")} for j in ("d", "p")]})
    calls = []

    def loader():
        calls.append(1)
        return results_mod._agreement(jobs)

    res = results_mod.StudyResults(frame=None, jobs=jobs, spec=None, spec_text="",
                                   out_dir=str(tmp_path), load_agreement=loader)
    assert "load_agreement" not in repr(res) and calls == []
    with pytest.warns(UserWarning, match="missing") as caught:
        ag = res.agreement
    assert caught[0].filename == __file__
    assert ag.empty and res.agreement is ag and calls == [1]
    with pytest.raises(dataclasses.FrozenInstanceError):
        res.out_dir = "elsewhere"
    moved = dataclasses.replace(res, out_dir="elsewhere")
    assert moved.load_agreement is loader and moved.out_dir == "elsewhere"
    empty = results_mod.StudyResults(None, None, None, "", "")
    assert empty.agreement.empty and list(empty.agreement.columns) == list(AGREEMENT_COLUMNS)
