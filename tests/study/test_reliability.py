"""Faults around the store and its artifacts (issue 14 items 4, 5, 8, 9; docs/reliability.md):
moved and copied study folders, read-only folders, one-line errors, damaged artifacts and
`prunescope invalidate`. Each test runs on copies of the tiny real-MNIST reference study."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from prunescope.cli import app
from prunescope.study import load_results, load_spec, run_study
from prunescope.study.artifacts import ArtifactDamaged
from prunescope.study.store import Store, StoreDamaged, StoreVersionError

SRC = str(Path(__file__).resolve().parents[2] / "src")
runner = CliRunner()


def _copy(spec, dest: Path, text: str | None = None):
    """``cp -a`` of the study's output folder to ``dest``, and the spec (its text replaced by
    ``text`` if given) reading it there."""
    shutil.copytree(spec.output, dest, symlinks=True)
    toml = Path(spec.path)
    if text is not None:
        toml = dest.parent / f"{dest.name}.toml"
        toml.write_text(text)
    return load_spec(toml, output=str(dest))


def _one_line(result) -> str:
    """The command's output, asserted to be exactly one line and no traceback."""
    out = result.output.strip()
    assert "Traceback" not in out and len(out.splitlines()) == 1, out
    return out


def _job(res, kind, model, method="dense"):
    j = res.jobs
    return j[(j["kind"] == kind) & (j["model"] == model) & (j["method"] == method)].iloc[0]


# ---- item 4: paths relative to the artifact root ---------------------------------------------
def test_a_moved_study_runs_new_jobs_and_a_copy_reads_only_its_own_files(tiny_reference,
                                                                         tmp_path):
    """`mv out-A out-B`: new jobs (a second ratio) find their parents, and the agreement frame
    has every row; `cp -a out-B out-C` then the original's artifacts deleted: the copy still
    has every row, and every path it reports lies inside it."""
    spec, _, _, _ = tiny_reference
    a = _copy(spec, tmp_path / "out-A", spec.text.replace("ratios = [4]", "ratios = [4, 8]"))
    (tmp_path / "out-A").rename(tmp_path / "out-B")
    b = load_spec(a.path, output=str(tmp_path / "out-B"))
    summary = run_study(b)
    assert summary.already_done == 14 and summary.failed == 0 and summary.ran == 8
    assert len(load_results(b).agreement) == 2 * 2 * 2  # models x methods x ratios
    shutil.copytree(tmp_path / "out-B", tmp_path / "out-C", symlinks=True)
    shutil.rmtree(tmp_path / "out-B" / "artifacts")
    c = load_spec(a.path, output=str(tmp_path / "out-C"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        res = load_results(c)
        assert len(res.agreement) == 8
    paths = [u for arts in res.jobs["artifacts"] for u in arts.values()]
    assert len(paths) == 22 and all(u.startswith(str(tmp_path / "out-C") + "/") for u in paths)


# ---- item 5: a read-only folder ---------------------------------------------------------------
def _unprivileged(cmd: list[str]) -> list[str]:
    """``cmd`` run so that file permissions bind. Tests often run as root, where ``chmod a-w``
    stops nothing; there the command runs through ``setpriv`` without the capabilities that
    override permissions (CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH, CAP_FOWNER)."""
    if os.geteuid() != 0:
        return cmd
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("root without setpriv: a read-only folder would not bind")
    caps = "-dac_override,-dac_read_search,-fowner"
    return [setpriv, f"--inh-caps={caps}", f"--bounding-set={caps}", *cmd]


_READER = """
import json, sys, warnings
from pathlib import Path
from typer.testing import CliRunner
from prunescope.cli import app
from prunescope.study import load_results, load_spec

study, out, report, folders = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
r = CliRunner()
every = {}
for i, folder in enumerate(folders):
    res = every[folder] = {}
    try:
        open(Path(folder) / "probe", "w")
        res["write"] = "allowed"
    except PermissionError:
        res["write"] = "denied"
    for name, args in {
            "status": ["status", study, "--output", folder],
            "plan": ["plan", study, "--output", folder],
            "export": ["export", study, "--output", folder, "--format", "csv",
                       "--out", f"{out}/r{i}.csv"],
            "export_default": ["export", study, "--output", folder, "--format", "csv"],
            "run": ["run", study, "--output", folder, "--quiet"],
            "report": ["report", study, "--output", folder, "--out", f"{out}/report{i}"],
            }.items():
        if name != "report" or report == "report":
            got = r.invoke(app, args)
            res[name] = [got.exit_code, got.output]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        loaded = load_results(load_spec(study, output=folder))
        res["agreement"] = len(loaded.agreement)
    res["warnings"] = [str(w.message) for w in caught]
    res["statuses"] = loaded.jobs["status"].value_counts().to_dict()
print("RESULT" + json.dumps(every))
"""


def _read_only_run(spec, folders: list[Path], tmp_path: Path, report: bool = False
                   ) -> list[dict]:
    """Run the read-only reader script on ``folders`` (made read-only for everyone first; one
    subprocess for all); one result dict per folder."""
    script = tmp_path / "reader.py"
    script.write_text(_READER)
    out = tmp_path / "written"
    out.mkdir()
    for f in folders:
        subprocess.run(["chmod", "-R", "a-w", str(f)], check=True)
    try:
        proc = subprocess.run(
            _unprivileged([sys.executable, str(script), spec.path, str(out),
                           "report" if report else "-", *map(str, folders)]),
            capture_output=True, text=True, timeout=600,
            env=os.environ | {"PYTHONPATH": SRC, "COLUMNS": "200"})
    finally:
        for f in folders:
            subprocess.run(["chmod", "-R", "u+w", str(f)], check=True)
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT")]
    assert line, proc.stdout + proc.stderr
    every = json.loads(line[0][len("RESULT"):])
    return [every[str(f)] for f in folders]


def test_a_read_only_study_folder_is_read_by_status_plan_export(tiny_reference, tmp_path):
    """Issue 14 item 5, with permissions that bind (see :func:`_unprivileged`): status, plan,
    export --out and the results (agreement included) read a `chmod -R a-w` folder: an archived
    one (no -wal/-shm beside the store), and one with a write-ahead log left in it (its last
    commit is seen); what would write there (run, the default export path) fails with one line
    naming the file."""
    spec, _, frame, _ = tiny_reference
    archived = _copy(spec, tmp_path / "archived")
    for index in Path(archived.output).glob("study.sqlite-*"):  # left by earlier readers
        index.unlink()
    ro = _copy(spec, tmp_path / "ro")
    # a driver that has not checkpointed yet: its last commit lives in study.sqlite-wal only
    last = _job(load_results(ro), "evaluate", 1, "gp")["id"]
    with Store(ro.output) as writer:
        writer.conn.execute("PRAGMA wal_autocheckpoint=0")
        writer.set_status([last], "failed", "in the wal only")
        assert Path(f"{ro.output}/study.sqlite-wal").stat().st_size > 0
        got = _read_only_run(spec, [Path(archived.output), Path(ro.output)], tmp_path)
    for res, s in zip(got, (archived, ro)):
        assert res["write"] == "denied"  # the folder really is read-only for the reader
        for name in ("status", "plan", "export"):
            assert res[name][0] == 0, (name, res[name][1])
        for name, path in (("export_default", "results.csv"), ("run", "run.lock")):
            assert res[name][0] == 1
            out = res[name][1].strip()
            assert len(out.splitlines()) == 1 and "Traceback" not in out, out
            assert f"permission denied: {s.output}/{path}" in out
    assert got[0]["statuses"] == {"done": 14}
    assert got[0]["agreement"] == 4 and got[0]["warnings"] == []
    assert len(pd.read_csv(tmp_path / "written" / "r0.csv")) == len(frame)
    assert "failed" in got[1]["status"][1] and "in the wal only" in got[1]["status"][1]
    assert got[1]["statuses"] == {"done": 13, "failed": 1}
    assert got[1]["agreement"] == 3 and got[1]["warnings"] == []
    assert len(pd.read_csv(tmp_path / "written" / "r1.csv")) == len(frame) - 10


@pytest.mark.slow
def test_report_of_a_read_only_folder_with_one_truncated_predictions_file(tiny_reference,
                                                                          tmp_path):
    """Issue 14 items 5 and 9: `prunescope report --out` renders a read-only study whose one
    predictions file was truncated: that agreement row is left out with a warning naming the
    file and the `prunescope invalidate` command; the report is written."""
    spec, _, _, _ = tiny_reference
    ro = _copy(spec, tmp_path / "ro")
    bad = Path(_job(load_results(ro), "evaluate", 0, "mp")["artifacts"]["predictions"])
    bad.write_bytes(bad.read_bytes()[:100])
    res, = _read_only_run(spec, [Path(ro.output)], tmp_path, report=True)
    code, output = res["report"]
    assert code == 0, output
    assert (tmp_path / "written" / "report0" / "report.html").is_file()
    assert res["agreement"] == 3
    assert any(bad.name in w and "prunescope invalidate" in w for w in res["warnings"])


# ---- item 8: one line per expected error ------------------------------------------------------
def test_store_faults_print_one_line_naming_the_file(tiny_reference, tmp_path):
    """A newer schema, a garbage file, a truncated store: `status` prints one line naming
    study.sqlite and the remedy, exit 1; `--debug` raises the error with its traceback."""
    spec, _, _, _ = tiny_reference
    s = _copy(spec, tmp_path / "s")
    path = Path(s.output) / "study.sqlite"
    good = path.read_bytes()
    import sqlite3

    con = sqlite3.connect(path)
    con.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    con.commit()
    con.close()
    args = ["status", spec.path, "--output", s.output]
    out = _one_line(runner.invoke(app, args))
    assert f"error: {path} was written by a newer prunescope (store schema 99)" in out
    assert isinstance(runner.invoke(app, ["--debug", *args]).exception, StoreVersionError)
    for damage in (b"garbage" * 2000, good[: len(good) // 3]):
        path.write_bytes(damage)
        for stale in ("-wal", "-shm"):
            Path(f"{path}{stale}").unlink(missing_ok=True)
        got = runner.invoke(app, args)
        assert got.exit_code == 1
        out = _one_line(got)
        assert f"{path} is damaged or not a prunescope store" in out and "backup" in out
        assert isinstance(runner.invoke(app, ["--debug", *args]).exception, StoreDamaged)


@pytest.mark.parametrize("damage", [
    "UPDATE jobs SET params = 'not json', digest = NULL WHERE kind = 'train'",
    "UPDATE jobs SET deps = '[', digest = NULL WHERE kind = 'evaluate'",
    "UPDATE jobs SET info = '{\"a\":', digest = NULL WHERE kind = 'evaluate'",
    "UPDATE jobs SET artifacts = '[1, 2]', digest = NULL WHERE kind = 'train'",
    "UPDATE jobs SET wall_s = 'fast', digest = NULL WHERE kind = 'train'",
    "UPDATE jobs SET error = CAST(x'c3ff' AS TEXT), digest = NULL WHERE kind = 'train'",
    "UPDATE evaluations SET correct = 'many'",
    "UPDATE meta SET value = 'two' WHERE key = 'schema_version'",
    "folder", "device",
])
def test_bad_values_in_a_valid_store_print_one_line(tiny_reference, tmp_path, damage):
    """Issue 23: valid SQLite holding values prunescope never writes, or study.sqlite as a
    folder or a device: `status` and `export` print the store's one-line "damaged" message
    (on main: JSONDecodeError, ValueError, sqlite3.OperationalError tracebacks, or a
    permissions message for the folder)."""
    import sqlite3

    spec, _, _, _ = tiny_reference
    s = _copy(spec, tmp_path / "s")
    path = Path(s.output) / "study.sqlite"
    if damage == "folder":
        path.unlink()
        path.mkdir()
    elif damage == "device":
        path.unlink()
        path.symlink_to("/dev/null")
    else:
        con = sqlite3.connect(path)
        con.execute(damage)
        con.commit()
        con.close()
    for args in (["status", spec.path], ["export", spec.path, "--out", str(tmp_path / "r.csv")]):
        got = runner.invoke(app, [*args, "--output", s.output])
        assert got.exit_code == 1, got.output
        line = _one_line(got)
        assert f"error: {path} is damaged" in line, line


@pytest.mark.parametrize("command, out, match", [
    ("export", "folder", "is a folder; give the path of a file"),
    ("export", "missing/deeper/r.csv", "the folder .*missing/deeper does not exist; create it"),
    ("export", "file/r.csv", "file is a file, not a folder"),
    ("report", "file", "is a file; give the path of a folder"),
    ("report", "file/report", "file is a file, not a folder"),
])
def test_out_paths_that_cannot_be_written_are_one_line(tiny_reference, tmp_path, command, out,
                                                       match):
    """Issue 23: `export --out` / `report --out` at a folder, a file or under a missing folder
    are refused before any work, in one line (on main: IsADirectoryError, OSError,
    FileExistsError, NotADirectoryError tracebacks)."""
    import re

    spec, _, _, _ = tiny_reference
    (tmp_path / "folder").mkdir()
    (tmp_path / "file").write_text("x")
    args = [command, spec.path, "--out", str(tmp_path / out)]
    got = runner.invoke(app, args + (["--format", "csv"] if command == "export" else []))
    assert got.exit_code == 1, got.output
    assert re.search(match, _one_line(got)), got.output


def test_no_flipped_bit_of_a_store_becomes_another_number(tiny_reference, tmp_path):
    """Issue 23 must-fix 4: one bit flipped every 197 bytes of a finished store, one copy per
    flip: each copy reads exactly the reference rows or fails with `StoreDamaged` (on main 45
    of 889 flips at a stride of 97 bytes gave other counts or job ids without a word, 6 a
    JSONDecodeError)."""
    import sqlite3

    spec, _, _, _ = tiny_reference
    s = _copy(spec, tmp_path / "s")
    path = Path(s.output) / "study.sqlite"
    con = sqlite3.connect(path)  # everything into the main file, as a closed driver leaves it
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    con.close()
    for stale in ("-wal", "-shm"):
        Path(f"{path}{stale}").unlink(missing_ok=True)

    def read(folder):
        with Store(folder, readonly=True, artifacts=s.artifacts) as st:
            return st.evaluations_frame(), st.jobs_frame().drop(columns="updated")

    ref_evals, ref_jobs = read(s.output)
    good = path.read_bytes()
    outcomes = {"same": 0, "refused": 0}
    for i in range(0, len(good), 197):
        copy = tmp_path / "flip"
        shutil.rmtree(copy, ignore_errors=True)
        copy.mkdir()
        (copy / "study.sqlite").write_bytes(good[:i] + bytes([good[i] ^ 1]) + good[i + 1:])
        try:
            evals, jobs = read(copy)
        except StoreDamaged:
            outcomes["refused"] += 1
            continue
        assert evals.equals(ref_evals) and jobs.equals(ref_jobs), f"bit flip at byte {i}"
        outcomes["same"] += 1
    assert outcomes["refused"] > 0 and outcomes["same"] > 0


def test_empty_store_beside_artifacts_is_refused_not_restarted(tiny_reference, tmp_path):
    """Issue 14 item 9: a 0-byte study.sqlite beside a full artifacts/ folder: `run` refuses
    with one line and starts nothing (the store stays empty, no artifact is touched)."""
    spec, _, _, _ = tiny_reference
    s = _copy(spec, tmp_path / "s")
    path = Path(s.output) / "study.sqlite"
    path.write_bytes(b"")
    before = {p: p.stat().st_mtime_ns for p in Path(s.artifacts).rglob("*")}
    n = sum(p.is_file() for p in Path(s.artifacts).glob("*/*"))  # 20: 14 jobs, 2+4 sidecars
    got = runner.invoke(app, ["run", spec.path, "--output", s.output, "--quiet"])
    assert got.exit_code == 1
    out = _one_line(got)
    assert f"{path} is empty (0 bytes) although" in out and f"holds {n} artifact files" in out
    assert path.stat().st_size == 0
    assert {p: p.stat().st_mtime_ns for p in Path(s.artifacts).rglob("*")} == before


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_no_cuda_prints_one_line(tiny_reference, tmp_path):
    spec, _, _, _ = tiny_reference
    s = _copy(spec, tmp_path / "s", spec.text.replace('name = "tiny"',
                                                      'name = "tiny"\ndevice = "cuda"'))
    (Path(s.output) / "study.sqlite").unlink()
    got = runner.invoke(app, ["run", s.path, "--output", s.output, "--quiet"])
    assert got.exit_code == 1
    out = _one_line(got)
    assert f"{s.path} asks for device 'cuda' but this machine has no CUDA device" in out


def test_missing_fsspec_backend_prints_one_line(tiny_reference, tmp_path):
    pytest.importorskip("fsspec")
    try:
        import s3fs  # noqa: F401
        pytest.skip("s3fs is installed")
    except ImportError:
        pass
    spec, _, _, _ = tiny_reference
    text = spec.text.replace('name = "tiny"', 'name = "tiny"\nartifacts = "s3://no-bucket/x"')
    (tmp_path / "s3.toml").write_text(text)
    got = runner.invoke(app, ["run", str(tmp_path / "s3.toml"), "--output",
                              str(tmp_path / "out"), "--quiet"])
    assert got.exit_code in (1, 2)  # refused at run time, or by the spec's validation
    assert "s3fs" in _one_line(got)


def test_a_full_disk_prints_one_line(tiny_reference, tmp_path, monkeypatch):
    """ENOSPC from any write of a command (here: export's file) is one line with the remedy."""
    import errno

    import prunescope.study as study_api

    def full(*_a, **_k):
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "r.csv"))

    monkeypatch.setattr(study_api, "export_results", full)
    spec, _, _, _ = tiny_reference
    got = runner.invoke(app, ["export", spec.path, "--out", str(tmp_path / "r.csv")])
    assert got.exit_code == 1
    out = _one_line(got)
    assert f"no space left on the device writing {tmp_path / 'r.csv'}" in out
    assert "finished jobs are kept" in out


# ---- item 9: checksums and invalidate ---------------------------------------------------------
def test_a_damaged_checkpoint_is_named_and_invalidate_redoes_its_job(tiny_reference, tmp_path,
                                                                     weights_digests):
    """A truncated dense checkpoint: the next job reading it fails naming the file and the
    train job that wrote it, with the command to redo it; `prunescope invalidate` of that job
    resets it and its 6 dependents only, and the rerun gives the reference's weights again."""
    spec, _, frame, digests = tiny_reference
    s = _copy(spec, tmp_path / "s")
    res = load_results(s)
    train = _job(res, "train", 0)
    weights = Path(train["artifacts"]["weights"])
    weights.write_bytes(weights.read_bytes()[:1000])
    ev = _job(res, "evaluate", 0)["id"]
    got = runner.invoke(app, ["invalidate", spec.path, "--output", s.output, ev[:12]])
    assert got.exit_code == 0 and "reset 1 job(s)" in got.output, got.output
    summary = run_study(s)
    assert summary.failed == 1
    error = summary.errors[ev]
    assert error.startswith(f"ArtifactDamaged: artifact {weights} is damaged")
    assert f"job {train['id'][:12]} recorded" in error
    assert f"prunescope invalidate STUDY.toml {train['id'][:12]}" in error
    got = runner.invoke(app, ["invalidate", spec.path, "--output", s.output, train["id"][:12]])
    assert got.exit_code == 0, got.output
    assert "reset 7 job(s) to pending: train" in got.output
    summary = run_study(s)
    assert summary.failed == 0 and summary.ran == 7 and summary.already_done == 7
    assert weights_digests(s) == digests
    pd.testing.assert_frame_equal(load_results(s).frame, frame)


def test_a_truncated_predictions_file_leaves_its_row_out_with_the_redo_command(tiny_reference,
                                                                               tmp_path):
    spec, _, _, _ = tiny_reference
    s = _copy(spec, tmp_path / "s")
    ev = _job(load_results(s), "evaluate", 1, "gp")
    bad = Path(ev["artifacts"]["predictions"])
    bad.write_bytes(bad.read_bytes()[:-5])
    res = load_results(s)
    with pytest.warns(UserWarning, match="damaged") as caught:
        ag = res.agreement
    text = str(caught[0].message)
    assert str(bad) in text and f"prunescope invalidate {spec.path} {ev['id'][:12]}" in text
    assert len(ag) == 3 and not ((ag["method"] == "gp") & (ag["model"] == 1)).any()
    with pytest.raises(ArtifactDamaged, match="damaged"):
        from prunescope.study import read_predictions

        read_predictions(str(bad), (ev["checksums"][str(bad)], ev["id"]))


@pytest.mark.parametrize("damage", ["swapped", "truncated"])
def test_pie_tables_use_only_predictions_that_match_their_checksums(tiny_reference, tmp_path,
                                                                    damage):
    """Issue 23 must-fix 3: on main two swapped predictions files were left out of the
    agreement table but still used for the PIE tables (mp@2 PIEs 82 -> 97), and a truncated
    one stopped `load_exemplars` (and the report) with an exception."""
    from prunescope.study.results import load_exemplars

    spec, _, _, _ = tiny_reference
    s = _copy(spec, tmp_path / "s")
    before = load_exemplars(load_results(s)).summary.set_index("method")
    assert (before.n_pruned == 2).all()
    res = load_results(s)
    mp, gp = (Path(_job(res, "evaluate", 0, m)["artifacts"]["predictions"]) for m in ("mp", "gp"))
    if damage == "swapped":
        a, b = mp.read_bytes(), gp.read_bytes()
        mp.write_bytes(b)
        gp.write_bytes(a)
    else:
        mp.write_bytes(mp.read_bytes()[:-5])
    with pytest.warns(UserWarning, match="damaged, their models are left out of the PIE") as w:
        after = load_exemplars(load_results(s)).summary.set_index("method")
    text = " ".join(str(x.message) for x in w)
    assert mp.name in text and "prunescope invalidate" in text
    hit = ["mp", "gp"] if damage == "swapped" else ["mp"]
    assert (after.loc[hit, "n_pruned"] == 1).all()
    assert (after.drop(index=hit).n_pruned == 2).all()


def test_a_disk_filling_during_a_run_stops_it_and_the_rerun_resumes(tiny_reference, tiny_spec,
                                                                   tmp_path, monkeypatch):
    """A worker whose checkpoint write hits ENOSPC does not fail its job (nor block its
    dependents, nor make every later job fail the same way): the job goes back to pending, no
    new pack starts, and the run stops with one ENOSPC error naming the file; after space is
    freed, the same command resumes and ends with the uninterrupted run's results."""
    import errno

    from prunescope.study import worker

    spec = tiny_spec(tmp_path)
    real = worker.save_checkpoint

    def full_for_pruned(path, model, meta, masks=None):
        if masks is not None:  # the pruned models' checkpoints
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return real(path, model, meta, masks=masks)

    monkeypatch.setattr(worker, "save_checkpoint", full_for_pruned)
    with pytest.raises(OSError) as e:
        run_study(spec)
    assert e.value.errno == errno.ENOSPC and "prune_finetune" in e.value.filename
    jobs = load_results(spec).jobs
    assert not jobs["status"].isin(["failed", "blocked"]).any()
    assert set(jobs.loc[jobs["kind"] == "prune_finetune", "status"]) == {"pending"}
    assert set(jobs.loc[jobs["kind"] == "train", "status"]) == {"done"}
    got = runner.invoke(app, ["run", str(tmp_path / "tiny.toml"), "--quiet"])
    assert got.exit_code == 1 and "no space left on the device writing" in _one_line(got)
    monkeypatch.setattr(worker, "save_checkpoint", real)
    summary = run_study(spec)
    assert summary.failed == 0 and summary.already_done > 0
    _, _, ref_frame, _ = tiny_reference
    cols = ["method", "ratio", "cls", "support", "predicted", "correct"]
    assert load_results(spec).frame[cols].equals(ref_frame[cols])
