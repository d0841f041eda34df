"""prunescope.audit on a user-defined model and real MNIST (issues 8 and 18; SPEC 2, 3, 7).

An audit is a one-model study: its jobs run through the study worker and store, so a finished
model is kept and a rerun resumes (issue 18 item 2); everything is checked before any work
(items 2-4); it says what will run and how long first (item 1) and what its results cannot be
taken as (item 5)."""
from __future__ import annotations

import io
import json
import re
import sys
import textwrap
import warnings

import numpy as np
import pytest
import torch
from safetensors.torch import save_file
from torch import nn
from typer.testing import CliRunner

from prunescope import data as D
from prunescope.audit import AuditError, as_arrays, audit
from prunescope.cli import app
from prunescope.study import Store
from prunescope.study.progress import RunDisplay
from prunescope.train import Recipe


def _mlp() -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(784, 48), nn.ReLU(), nn.Linear(48, 10))


@pytest.fixture(scope="module")
def mnist_small():
    """2,000 real MNIST training images and 1,000 test images, uint8 NHWC."""
    try:
        train, test = D.load("mnist", "train"), D.load("mnist", "test")
    except Exception as e:  # pragma: no cover - only without the registry
        pytest.skip(f"real MNIST unavailable: {e}")
    idx = np.random.default_rng(0).choice(len(train.y), 2000, replace=False)
    return (train.x[idx], train.y[idx]), (test.x[:1000], test.y[:1000]), train.classes


@pytest.fixture(scope="module")
def trained(mnist_small):
    """A user's model trained by the user's own loop on raw [0, 1] inputs."""
    (x, y), _, _ = mnist_small
    torch.manual_seed(0)
    net = _mlp()
    xt = torch.tensor(x, dtype=torch.float32).permute(0, 3, 1, 2) / 255.0
    yt = torch.tensor(y)
    opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    for _ in range(4):
        for i in range(0, len(yt), 100):
            loss = nn.functional.cross_entropy(net(xt[i:i + 100]), yt[i:i + 100])
            opt.zero_grad()
            loss.backward()
            opt.step()
    return net.eval()


class _Recorder(RunDisplay):
    """Records the driver's events; ``stop_after`` finished fine-tuning packs it raises
    KeyboardInterrupt (a Ctrl-C in the middle of an audit)."""

    def __init__(self, log: io.StringIO | None = None, stop_after: int | None = None) -> None:
        self.log, self.stop_after = log, stop_after
        self.log_at_start = None
        self.todo: list = []
        self.finished: list[str] = []

    def start(self, plan, todo, work):
        self.log_at_start = self.log.getvalue() if self.log is not None else None
        self.todo = list(todo)
        assert all(work(j) > 0 for j in todo)

    def pack_finished(self, pack, results):
        self.finished += [r.job_id for r in results if r.status == "done"]
        if self.stop_after is not None and pack.kind == "prune_finetune":
            self.stop_after -= 1
            if self.stop_after == 0:
                raise KeyboardInterrupt


_KW = dict(mean=[0.0], std=[1.0], weight_decay=5e-4, n_val=200)


@pytest.fixture(scope="module")
def audited(mnist_small, trained, tmp_path_factory):
    """One audit: mp and up at 2 and 20, one shifted distribution, short fine-tuning."""
    train, test, classes = mnist_small
    before = {k: v.clone() for k, v in trained.state_dict().items()}
    log = io.StringIO()
    rec = _Recorder(log)
    out = tmp_path_factory.mktemp("audit")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # issue 18 item 9: no raw Python warning during an audit
        res = audit(trained, train, test, methods=("mp", "up"), ratios=(2, 20),
                    distributions=("gaussian_noise-4",), class_names=classes, top_k=2,
                    finetune=Recipe(schedule=((1, 0.01),), max_steps_per_epoch=3, batch_size=64),
                    out_dir=out, log=log, display=rec, **_KW)
    return res, before, log.getvalue(), rec, out


def test_audit_end_to_end_worst_classes_match_recalls(audited, mnist_small, trained):
    res, before, _, _, _ = audited
    _, _, classes = mnist_small
    # the user's model is untouched
    assert all(torch.equal(before[k], v) for k, v in trained.state_dict().items())
    assert set(res.runs.method) == {"mp", "up"} and np.allclose(res.runs.achieved_ratio, res.runs.ratio, rtol=1e-3)
    assert res.runs.accuracy_dense.iloc[0] > 0.8
    assert (res.runs.finetune_steps == 3).all() and res.runs.finetuned.all()
    # every stored recall equals correct / support of the stored counts
    counts = res.counts.set_index(["method", "ratio", "distribution", "cls"])
    for r in res.classwise.sample(20, random_state=0).itertuples():
        row = counts.loc[(r.method, r.ratio, r.distribution, r.cls)]
        assert r.recall_after == pytest.approx(row.correct / row.support, abs=1e-12)
        dense = counts.loc[("dense", 1.0, r.distribution, r.cls)]
        assert r.recall_before == pytest.approx(dense.correct / dense.support, abs=1e-12)
    # the worst-hit classes are exactly the classes with the most negative recall change
    for (m, t, d), grp in res.classwise.groupby(["method", "ratio", "distribution"]):
        worst = res.worst_classes[(res.worst_classes.method == m) & (res.worst_classes.ratio == t)
                                  & (res.worst_classes.distribution == d)].sort_values("rank")
        expect = grp.sort_values(["recall_change", "cls"]).head(2)
        assert list(worst.cls) == list(expect.cls)
        assert list(worst.class_name) == [classes[c] for c in expect.cls]
    assert len(res.alphas) == 2 * 2 * 2 and res.alphas.alpha.notna().all()
    assert len(res.prune_potential) == 2 * 2
    ag = res.agreement.set_index(["method", "ratio", "distribution"]).agreement
    assert 0 < ag[("mp", 20.0, "nominal")] < 1
    assert res.report is not None and res.report.is_file() and "<img" in res.report.read_text()


def test_audit_is_a_one_model_study_in_the_store(audited):
    """Item 2: the audit's jobs are study jobs in its store, each pruned model kept as a
    checkpoint with its masks; the result is read from there."""
    res, _, _, rec, out = audited
    with Store(out, readonly=True) as store:
        jobs = store.jobs_frame()
    assert set(jobs.kind) == {"source", "gradients", "prune_finetune", "evaluate"}
    assert (jobs.status == "done").all()
    pf = jobs[jobs.kind == "prune_finetune"]
    # 4 fine-tuned models and the same 4 right after pruning (for accuracy_pruned)
    assert len(pf) == 8
    for a in pf.artifacts:
        assert (out / "artifacts" / "prune_finetune" / json.loads(a)["weights"].rsplit("/", 1)[1]).is_file()
    # the dense and 4 fine-tuned models on 2 distributions, the 4 pruned-only ones on nominal
    assert (jobs.kind == "evaluate").sum() == 5 * 2 + 4
    acc = res.runs.set_index(["method", "ratio"])
    assert not np.allclose(acc.accuracy_pruned, acc.accuracy_final)  # fine-tuning changed them
    # issue 23: the user's model reached the jobs from the object passed, not from a pickle in
    # the folder (which a shared audit folder could replace): no file there can run code
    assert not [p for p in out.rglob("*.pt")]
    assert not [p for p in out.rglob("*.json") if '"module"' in p.read_text()]


def test_the_audit_data_file_is_checked_when_read(audited, tmp_path):
    """Issue 23 must-fix 2: the audit's data file is read only if its content has the sha256
    written beside it (on main it was read unchecked)."""
    import shutil
    from pathlib import Path

    from prunescope.study import worker
    from prunescope.study.artifacts import ArtifactDamaged

    *_, out = audited
    src = next((out / "artifacts" / "source").glob("*.npz"))
    (tmp_path / "source").mkdir()
    for f in (src, Path(f"{src}.sha256")):
        shutil.copy(f, tmp_path / "source" / f.name)
    url = str(tmp_path / "source" / src.name)
    worker._user_data.cache_clear()
    assert worker._user_data(str(tmp_path), url)["y_test"].shape == (1000,)
    worker._user_data.cache_clear()
    damaged = bytearray(Path(url).read_bytes())
    damaged[len(damaged) // 2] ^= 1
    Path(url).write_bytes(bytes(damaged))
    with pytest.raises(ArtifactDamaged, match="run the same audit again"):
        worker._user_data(str(tmp_path), url)


def test_audit_lists_the_images_whose_prediction_pruning_changed(audited, mnist_small):
    """Issue 17: the per-image view of one model (its PIEs): every listed image changed its
    prediction, carries its true label, and per cell the changed fraction is 1 - agreement."""
    res, _, _, _, out = audited
    _, test, _ = mnist_small
    view = res.changed_images
    assert set(view.columns) == {"method", "ratio", "distribution", "index", "label",
                                 "dense_label", "pruned_label"}
    assert (view.dense_label != view.pruned_label).all()
    y = np.asarray(test[1])
    assert (y[view["index"].to_numpy()] == view["label"].to_numpy()).all()
    n_changed = view.groupby(["method", "ratio", "distribution"]).size()
    ag = res.agreement.set_index(["method", "ratio", "distribution"]).agreement
    assert set(n_changed.index) <= set(ag.index) and len(n_changed) >= 4
    for key, agreement in ag.items():
        assert n_changed.get(key, 0) == round((1 - agreement) * len(y))
    assert "Pruning-identified exemplars" in res.report.read_text()


def test_audit_says_what_runs_and_how_long_before_any_work(audited):
    """Item 1: the plan and a probe-based estimate are printed before the first job starts."""
    _, _, log, rec, _ = audited
    assert rec.log_at_start is not None
    assert "4 pruned models (mp, up at ratios 2, 20)" in rec.log_at_start
    est = re.search(r"estimated time: about (\d+) (s|min)", rec.log_at_start)
    assert est, rec.log_at_start
    assert "ms per training step" in rec.log_at_start
    assert len(rec.todo) == 1 + 8 + 14  # gradients, 8 models, 14 evaluations (source recorded)


def test_audit_resumes_after_ctrl_c_and_keeps_finished_models(mnist_small, trained, tmp_path):
    """Item 2: Ctrl-C after the first fine-tuned model keeps it; the rerun runs only the rest."""
    train, test, _ = mnist_small
    kw = dict(methods=("mp", "rp"), ratios=(4,), finetune=Recipe(schedule=((1, 0.01),),
              max_steps_per_epoch=2, batch_size=64), out_dir=tmp_path, **_KW)
    first = _Recorder(stop_after=1)
    with pytest.raises(KeyboardInterrupt):
        audit(trained, train, test, display=first, log=None, **kw)
    kept = set(first.finished)
    assert kept, "the first finished model must be in the store"
    with Store(tmp_path, readonly=True) as store:
        status = store.statuses()
    assert all(status[j] == "done" for j in kept)
    log = io.StringIO()
    again = _Recorder(log)
    res = audit(trained, train, test, display=again, log=log, **kw)
    assert kept.isdisjoint(j.id for j in again.todo)
    assert f"{len(kept) + 1} already done (resumed)" in log.getvalue()  # + the source job
    assert len(res.runs) == 2
    # a third run has nothing to do and gives the same tables
    third = _Recorder()
    res3 = audit(trained, train, test, display=third, log=None, **kw)
    assert third.todo == []
    assert res3.runs.drop(columns="seconds").equals(res.runs.drop(columns="seconds"))


@pytest.mark.parametrize("bad, match", [
    (dict(ratios=(2, 10000)), "ratio 10000 cannot be reached"),
    (dict(ratios=(2, 0.5)), "ratio 0.5 is invalid"),
    (dict(methods=("mp", "lth")), "method 'lth'"),
    (dict(methods=("up",), weight_decay=None), "weight decay"),
    (dict(distributions=("jpeg-3",)), "distribution 'jpeg-3'"),
    (dict(scope="channel"), "scope"),
    (dict(grad_mode="batches"), "grad_batches"),
    (dict(finetune={"schedule": []}), "finetune"),
    (dict(delta=0.005), "delta = 0.005 is invalid.*looks like a fraction|delta.*0.005"),
    (dict(delta=101), "delta = 101 is invalid"),
])
def test_every_option_is_checked_before_any_work(mnist_small, trained, tmp_path, bad, match):
    """Item 2: a bad ratio (unreachable included) or option fails before the store exists,
    so before UP's gradient pass and before any model is pruned."""
    train, test, _ = mnist_small
    kw = dict(_KW, methods=("mp", "up"), ratios=(2,)) | bad
    with pytest.raises(AuditError, match=match):
        audit(trained, train, test, out_dir=tmp_path / "a", log=None, **kw)
    assert not (tmp_path / "a").exists()


def test_delta_is_in_percentage_points_as_documented(mnist_small, trained, tmp_path):
    """Issue 24: ``delta`` is read as percentage points downstream (metrics.prune_potential),
    so the checks take points too: 2 (two points) passes them, where the fraction check refused
    it; the next check (top_k) is the one that fails."""
    train, test, _ = mnist_small
    with pytest.raises(AuditError, match="top_k = 0"):
        audit(trained, train, test, out_dir=tmp_path / "a", log=None,
              **dict(_KW, methods=("mp",), ratios=(2,), delta=2, top_k=0))


@pytest.mark.parametrize("mutate, match", [
    (lambda x, y: (x, y + 5), r"train_data labels run 5\.\.14 but the model has 10 outputs"),
    (lambda x, y: (np.zeros((len(y), 32, 32, 1), np.uint8), y), "cannot take the images"),
    (lambda x, y: (np.where(np.arange(x.size).reshape(x.shape) == 7, np.nan, x / 255.0), y),
     "NaN"),
    (lambda x, y: (x.astype(np.int32), y), "dtype int32"),
    (lambda x, y: (x[:, :20] if len(y) > 1000 else x, y), "every split must have one image shape"),
    (lambda x, y: (x, y.astype(np.float32)), "labels must be integers"),
])
def test_bad_data_is_refused_before_any_work(mnist_small, trained, tmp_path, mutate, match):
    """Item 4: labels outside the model's outputs, wrong image shapes or dtypes, NaNs."""
    (x, y), test, _ = mnist_small
    with pytest.raises(AuditError, match=match):
        audit(trained, mutate(x, y), mutate(*test), methods=("mp",), ratios=(2,),
              out_dir=tmp_path / "a", log=None, **_KW)
    assert not (tmp_path / "a").exists()


def test_as_arrays_accepts_common_forms(tmp_path):
    rng = np.random.default_rng(1)
    x = rng.integers(0, 256, (6, 3, 8, 8), dtype=np.uint8)  # NCHW uint8
    y = np.arange(6) % 3
    xs, ys = as_arrays((x, y))
    assert xs.shape == (6, 8, 8, 3) and np.array_equal(xs[2, :, :, 1], x[2, 1])
    xf, _ = as_arrays((torch.tensor(x / 255.0, dtype=torch.float32), torch.tensor(y)))
    assert np.array_equal(xf, xs)  # float in [0, 1] rounds back to the same bytes
    ds = torch.utils.data.TensorDataset(torch.tensor(x), torch.tensor(y))
    assert np.array_equal(as_arrays(ds)[0], xs)
    np.savez(tmp_path / "a.npz", x=x[:3], y=y[:3])
    np.savez(tmp_path / "b.npz", x=x[3:], y=y[3:])
    xn, yn = as_arrays(tmp_path)
    assert np.array_equal(xn, xs) and np.array_equal(yn, y)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        as_arrays((x.astype(np.float32), y))
    with pytest.raises(ValueError, match="labels"):
        as_arrays((x, y[:4]))


# ---- the command line (items 3 and 9) ----------------------------------------------------------
@pytest.fixture
def user_package(mnist_small, trained, tmp_path):
    """A folder holding a package mypkg/models.py with build(), its weights and a data folder,
    as the README's `--model mypackage.models:build` describes."""
    train, test, _ = mnist_small
    data = tmp_path / "data"
    data.mkdir()
    np.savez(data / "train.npz", x=train[0][:1000], y=train[1][:1000])
    np.savez(data / "test.npz", x=test[0][:500], y=test[1][:500])
    (tmp_path / "mypkg").mkdir()
    (tmp_path / "mypkg" / "__init__.py").write_text("")
    (tmp_path / "mypkg" / "models.py").write_text(textwrap.dedent("""
        from torch import nn
        def build():
            return nn.Sequential(nn.Flatten(), nn.Linear(784, 48), nn.ReLU(), nn.Linear(48, 10))
    """))
    torch.save(trained.state_dict(), tmp_path / "w.pt")
    yield tmp_path
    for name in ("mypkg.models", "mypkg"):
        sys.modules.pop(name, None)


def _one_line_error(result) -> str:
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    lines = [ln for ln in result.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), result.output
    return lines[0]


def test_cli_audit_user_model_imports_from_the_current_directory(user_package, monkeypatch):
    """Item 3: run from the folder holding the package, as Python users expect (no sys.path
    edits); output lines are not wrapped at 80 columns when not on a terminal (item 9)."""
    monkeypatch.chdir(user_package)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(user_package))])
    out = user_package / ("a-long-output-folder-name-that-does-not-fit-in-eighty-columns" * 2)
    result = CliRunner().invoke(app, ["audit", "w.pt", "--model", "mypkg.models:build",
                                      "--data", "data", "--methods", "mp,rp", "--ratios", "4",
                                      "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "Prune potential" in result.output
    assert (out / "report" / "report.html").is_file() and (out / "worst_classes.csv").is_file()
    assert str(out / "report" / "report.html") in result.output  # the path on one line
    assert "estimated time" in result.output
    assert "Warning" not in result.output


@pytest.mark.parametrize("args, match", [
    (["w.pt", "--model", "nosuch.models:build", "--data", "data"], "cannot import 'nosuch.models'"),
    (["w.pt", "--model", "mypkg.models:nothere", "--data", "data"], "no callable 'nothere'"),
    (["w.pt", "--model", "mypkg.models:build"], "--model needs --data"),
    (["w.pt", "--model", "mypkg.models:build", "--data", "data", "--ratios", "2,10000"],
     "ratio 10000 cannot be reached"),
    (["w.pt"], r"w\.pt is not a prunescope checkpoint.*--model"),
    (["nosidecar.safetensors"], r"nosidecar\.safetensors has no sidecar.*--model"),
    (["cut.safetensors"], r"cut\.safetensors cannot be read.*truncated"),
    (["cut.pt", "--model", "mypkg.models:build", "--data", "data"], r"cut\.pt cannot be read"),
])
def test_cli_audit_failures_are_one_line(user_package, monkeypatch, args, match):
    """Items 2 and 3: import failures, a checkpoint without its sidecar, a truncated one, a
    state dict given as a checkpoint: one line naming the file and the way forward."""
    monkeypatch.chdir(user_package)
    state = torch.load("w.pt", weights_only=True)
    save_file({k: v.contiguous() for k, v in state.items()}, "nosidecar.safetensors")
    (user_package / "cut.safetensors").write_bytes(
        (user_package / "nosidecar.safetensors").read_bytes()[:300])
    (user_package / "cut.safetensors.json").write_text(json.dumps(
        {"arch": "lenet5", "num_classes": 10, "in_channels": 1, "weight_decay": 5e-4,
         "checkpoint_format": 1, "dataset": "mnist"}))
    (user_package / "cut.pt").write_bytes((user_package / "w.pt").read_bytes()[:200])
    result = CliRunner().invoke(app, ["audit", *args, "--out", "out"])
    assert re.search(match, _one_line_error(result)), result.output
    assert not (user_package / "out" / "study.sqlite").exists()


def _damaged_npz(path, damage):
    """Write ``path`` as a damaged --data file (issue 23)."""
    import zipfile

    x, y = np.zeros((10, 28, 28, 1), np.uint8), np.arange(10)
    if damage == "truncated":
        np.savez(path, x=x, y=y)
        path.write_bytes(path.read_bytes()[:700])
    elif damage == "npy named npz":
        with open(path, "wb") as fh:
            np.save(fh, x)
    elif damage == "huge header":  # declares 10^12 images, holds 100 bytes
        head = io.BytesIO()
        np.lib.format.write_array_header_1_0(
            head, {"descr": "|u1", "fortran_order": False, "shape": (10**12, 28, 28, 1)})
        labels = io.BytesIO()
        np.save(labels, y)
        with zipfile.ZipFile(path, "w") as z:
            z.writestr("x.npy", head.getvalue() + bytes(100))
            z.writestr("y.npy", labels.getvalue())
    elif damage == "labels 2^62":
        np.savez(path, x=x, y=np.full(10, 2**62))
    else:  # 0-d arrays
        np.savez(path, x=np.array(5), y=np.array(3))


@pytest.mark.parametrize("damage, match", [
    ("truncated", "not a readable .npz file"),
    ("npy named npz", "single .npy array, not an .npz archive"),
    ("huge header", r"declares shape \(1000000000000, 28, 28, 1\).*truncated or damaged"),
    ("labels 2^62", "labels run 4611686018427387904.*class indices"),
    ("0-d arrays", r"got shapes \(\) and \(\)"),
])
def test_cli_audit_damaged_data_is_one_line(user_package, monkeypatch, damage, match):
    """Issue 23: `audit --data` with a damaged train.npz prints one line naming the file (on
    main: BadZipFile, AttributeError, MemoryError, ValueError tracebacks) and starts nothing."""
    monkeypatch.chdir(user_package)
    _damaged_npz(user_package / "data" / "train.npz", damage)
    result = CliRunner().invoke(app, ["audit", "w.pt", "--model", "mypkg.models:build",
                                      "--data", "data", "--methods", "mp", "--out", "out"])
    assert re.search(match, _one_line_error(result)), result.output
    assert not (user_package / "out" / "study.sqlite").exists()


def test_audit_checkpoint_default_finetuning_is_short_and_full_one_flag_away(tmp_path):
    """Item 1: a checkpoint's default fine-tuning is one epoch capped at DEFAULT_FINETUNE_STEPS
    steps; --finetune-epochs 15 gives the paper's 15 full epochs."""
    import prunescope.audit as A
    from prunescope.models import build_model
    from prunescope.train import save_checkpoint

    pytest.importorskip("prunescope.data").load("mnist", "test")
    path = tmp_path / "m.safetensors"
    save_checkpoint(path, build_model("lenet5", 10, 1, seed=0),
                    {"arch": "lenet5", "num_classes": 10, "in_channels": 1, "image_size": 28,
                     "weight_decay": 5e-4, "dataset": "mnist", "n_val": 5000, "split_seed": 0})
    seen = A.checkpoint_arguments(path)
    assert seen["finetune"].epochs == 1
    assert seen["finetune"].max_steps_per_epoch == A.DEFAULT_FINETUNE_STEPS
    seen = A.checkpoint_arguments(path, finetune_epochs=15)
    assert seen["finetune"].epochs == 15 and seen["finetune"].max_steps_per_epoch is None


def test_audit_checkpoint_rebuilds_the_long_tailed_split_of_its_sidecar(tmp_path):
    """Issue 24: a long-tailed model's sidecar records its ``imbalance``; the audit's training
    and validation images are that split (as ``prunescope prune`` and the study rebuild it),
    not the balanced one."""
    import prunescope.audit as A
    from prunescope.data import training_split
    from prunescope.models import build_model
    from prunescope.train import save_checkpoint

    full = pytest.importorskip("prunescope.data").load("mnist", "train")
    counts = [600, 500, 400, 300, 250, 200, 150, 120, 100, 80]
    imbalance = {"counts": counts, "seed": 3}
    path = tmp_path / "lt.safetensors"
    save_checkpoint(path, build_model("lenet5", 10, 1, seed=0),
                    {"arch": "lenet5", "num_classes": 10, "in_channels": 1, "image_size": 28,
                     "weight_decay": 5e-4, "dataset": "mnist", "n_val": 500, "split_seed": 1,
                     "imbalance": imbalance})
    seen = A.checkpoint_arguments(path)
    (x_tr, y_tr), (x_va, y_va) = seen["train_data"], seen["val_data"]
    assert np.bincount(np.concatenate([y_tr, y_va]), minlength=10).tolist() == counts
    tr, va = training_split(full.y, 500, 1, imbalance)
    assert np.array_equal(y_tr, full.y[tr]) and np.array_equal(x_va, full.x[va])
