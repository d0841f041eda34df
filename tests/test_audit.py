"""prunescope.audit on a user-defined model and real MNIST (issue 8; SPEC 2, 3, 7)."""
from __future__ import annotations

import sys
import textwrap

import numpy as np
import pytest
import torch
from torch import nn
from typer.testing import CliRunner

from prunescope import data as D
from prunescope.audit import as_arrays, audit
from prunescope.cli import app
from prunescope.train import Recipe


def _mlp() -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(784, 48), nn.ReLU(), nn.Linear(48, 10))


@pytest.fixture(scope="module")
def mnist_small():
    """3,000 real MNIST training images and 2,000 test images, uint8 NHWC."""
    try:
        train, test = D.load("mnist", "train"), D.load("mnist", "test")
    except Exception as e:  # pragma: no cover - only without the registry
        pytest.skip(f"real MNIST unavailable: {e}")
    idx = np.random.default_rng(0).choice(len(train.y), 3000, replace=False)
    return (train.x[idx], train.y[idx]), (test.x[:2000], test.y[:2000]), train.classes


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


def test_audit_end_to_end_worst_classes_match_recalls(mnist_small, trained):
    train, test, classes = mnist_small
    before = {k: v.clone() for k, v in trained.state_dict().items()}
    res = audit(trained, train, test, methods=("mp", "up"), ratios=(2, 20), mean=[0.0], std=[1.0],
                weight_decay=5e-4, distributions=("gaussian_noise-4",), class_names=classes, top_k=2)
    # the user's model is untouched
    assert all(torch.equal(before[k], v) for k, v in trained.state_dict().items())
    assert set(res.runs.method) == {"mp", "up"} and np.allclose(res.runs.achieved_ratio, res.runs.ratio, rtol=1e-3)
    # dense accuracy well above chance, and pruning to 20x costs accuracy on the nominal set
    assert res.runs.accuracy_dense.iloc[0] > 0.85
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
    # alpha per (method, ratio, distribution) and one prune potential per (method, distribution)
    assert len(res.alphas) == 2 * 2 * 2 and res.alphas.alpha.notna().all()
    assert len(res.prune_potential) == 2 * 2
    # agreement: identical predictions would give 1; 20x pruning without fine-tuning must disagree somewhere
    ag = res.agreement.set_index(["method", "ratio", "distribution"]).agreement
    assert 0 < ag[("mp", 20.0, "nominal")] < 1
    assert res.report is None


def test_audit_finetune_holds_masks_and_writes_report(mnist_small, trained, tmp_path):
    train, test, _ = mnist_small
    recipe = Recipe(schedule=((1, 0.01),), max_steps_per_epoch=5, batch_size=64)
    res = audit(trained, train, test, methods=("mp",), ratios=(10,), mean=[0.0], std=[1.0],
                finetune=recipe, n_val=500, out_dir=tmp_path)
    assert bool(res.runs.finetuned.iloc[0])
    assert res.report is not None and res.report.is_file()
    assert "<img" in res.report.read_text()


def test_audit_rejects_up_without_weight_decay(mnist_small, trained):
    train, test, _ = mnist_small
    with pytest.raises(ValueError, match="(?i)weight.decay|eps"):
        audit(trained, train, test, methods=("up",), ratios=(2,), mean=[0.0], std=[1.0])


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


def test_cli_audit_user_model(mnist_small, trained, tmp_path, monkeypatch):
    train, test, _ = mnist_small
    data = tmp_path / "data"
    data.mkdir()
    np.savez(data / "train.npz", x=train[0][:1000], y=train[1][:1000])
    np.savez(data / "test.npz", x=test[0][:1000], y=test[1][:1000])
    (tmp_path / "mymodel.py").write_text(textwrap.dedent("""
        from torch import nn
        def build():
            return nn.Sequential(nn.Flatten(), nn.Linear(784, 48), nn.ReLU(), nn.Linear(48, 10))
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    torch.save(trained.state_dict(), tmp_path / "w.pt")
    out = tmp_path / "audit"
    result = CliRunner().invoke(app, ["audit", str(tmp_path / "w.pt"), "--model", "mymodel:build",
                                      "--data", str(data), "--methods", "mp,rp", "--ratios", "4",
                                      "--out", str(out)])
    sys.modules.pop("mymodel", None)
    assert result.exit_code == 0, result.output
    assert "Prune potential" in result.output
    assert (out / "report.html").is_file() and (out / "worst_classes.csv").is_file()
