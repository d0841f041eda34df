"""`compare` (issue 27 item 1): each input kind a user may have, the ratio counted from the
tensors, the audit's views and the single-pair statistics, and bad inputs refused in one line
before any evaluation."""
from __future__ import annotations

import importlib.util
import sys

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn.utils import prune as torch_prune

from prunescope.audit import AuditError, compare
from prunescope.data.device import DeviceImages
from prunescope.train import predict

sys.path.insert(0, str(__import__("pathlib").Path(__file__).parent))
from nets import branchy_resnet, small_cnn  # noqa: E402

C = 4


@pytest.fixture(scope="module")
def test_set():
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(C), 30)
    x = rng.integers(0, 256, (len(y), 8, 8, 1), dtype=np.uint8)
    x[..., 0] = np.clip(x[..., 0] // 2 + 30 * y[:, None, None], 0, 255)
    return x, y


def _preds(model, x, y, mean=(0.5,), std=(0.25,)):
    return predict(model, DeviceImages(x, y, list(mean), list(std), "cpu"))


def _torch_pruned(amount=0.6):
    net = small_cnn(C)
    for m in (net[0], net[3], net[8]):
        torch_prune.l1_unstructured(m, "weight", amount=amount)
    return net


def _nonzero(net):
    return sum(int(torch.count_nonzero(p)) for p in net.parameters())


def test_torch_prune_and_plain_zero_state_dicts(tmp_path, test_set):
    x, y = test_set
    dense, pruned = small_cnn(C), _torch_pruned()
    torch.save(dense.state_dict(), tmp_path / "dense.pt")
    torch.save(pruned.state_dict(), tmp_path / "masked.pt")
    assert any(k.endswith("weight_orig") for k in torch.load(tmp_path / "masked.pt"))
    want = _preds(pruned, x, y)
    torch_prune.remove(pruned[0], "weight"), torch_prune.remove(pruned[3], "weight")
    torch_prune.remove(pruned[8], "weight")
    torch.save(pruned.state_dict(), tmp_path / "zeros.pt")
    ratio = sum(p.numel() for p in dense.parameters()) / _nonzero(pruned)
    res = compare(tmp_path / "dense.pt", [tmp_path / "masked.pt", tmp_path / "zeros.pt"],
                  (x, y), build=lambda: small_cnn(C), methods=["torch", "zeros"],
                  mean=[0.5], std=[0.25], n_resamples=50, out_dir=tmp_path / "out", report=True)
    assert res.report.is_file() and (tmp_path / "out" / "mcnemar.csv").is_file()
    m = res.models.set_index("name")
    assert m.loc["masked.pt", "source"] == "torch.nn.utils.prune state dict"
    assert m.loc["zeros.pt", "source"] == "state dict"
    for f in ("masked.pt", "zeros.pt"):
        assert m.loc[f, "achieved_ratio"] == pytest.approx(ratio, rel=1e-12)
        assert m.loc[f, "accuracy"] == pytest.approx((want == y).mean())
    assert m.loc["dense.pt", "accuracy"] == pytest.approx((_preds(dense, x, y) == y).mean())
    # the per-image view: exactly the images whose prediction changed
    ch = res.changed_images[res.changed_images.method == "torch"]
    assert ch["index"].tolist() == np.flatnonzero(want != _preds(dense, x, y)).tolist()
    ag = res.agreement.set_index("method").agreement
    assert ag["torch"] == pytest.approx((want == _preds(dense, x, y)).mean())
    # the audit's views and the pair statistics, one per pruned model
    assert len(res.classwise) == 2 * C and len(res.alphas) == 2 and len(res.mcnemar) == 2 * C
    assert set(res.intervals.statistic) == {"alpha", "max_eag"}
    assert "test-set sampling" in res.uncertainty
    assert len(res.prune_potential) == 2


def test_structurally_pruned_state_dict_is_narrowed(tmp_path, test_set):
    import torch_pruning as tp

    x, y = test_set
    rgb = np.repeat(x, 3, -1)
    dense = branchy_resnet(C)
    pruned = branchy_resnet(C)
    ex = torch.randn(1, 3, 8, 8)
    tp.pruner.MetaPruner(pruned, ex, importance=tp.importance.MagnitudeImportance(p=1),
                         pruning_ratio=0.5, ignored_layers=[pruned[-1]]).step()
    torch.save(dense.state_dict(), tmp_path / "dense.pt")
    torch.save(pruned.state_dict(), tmp_path / "narrow.pt")
    res = compare(tmp_path / "dense.pt", [tmp_path / "narrow.pt"], (rgb, y),
                  build=lambda: branchy_resnet(C), mean=[0.5] * 3, std=[0.25] * 3,
                  n_resamples=20)
    row = res.models.iloc[1]
    assert row.source == "narrowed state dict"
    n_dense = sum(p.numel() for p in dense.parameters())
    assert row.achieved_ratio == pytest.approx(n_dense / _nonzero(pruned))
    assert row.achieved_ratio > 2.5
    want = _preds(pruned, rgb, y, (0.5,) * 3, (0.25,) * 3)
    assert row.accuracy == pytest.approx((want == y).mean())


def test_pickles_refused_unless_trusted(tmp_path, test_set):
    import torch_pruning as tp

    x, y = test_set
    torch.save(small_cnn(C).state_dict(), tmp_path / "dense.pt")
    pruned = small_cnn(C)
    tp.pruner.MetaPruner(pruned, torch.randn(1, 1, 8, 8),
                         importance=tp.importance.MagnitudeImportance(p=1), pruning_ratio=0.25,
                         ignored_layers=[pruned[-1]]).step()
    torch.save(pruned, tmp_path / "module.pt")
    torch.save(tp.state_dict(pruned), tmp_path / "tp.pth")
    for f in ("module.pt", "tp.pth"):
        with pytest.raises(AuditError) as e:
            compare(tmp_path / "dense.pt", [tmp_path / f], (x, y), build=lambda: small_cnn(C))
        assert "--trust-pickle" in str(e.value) and str(tmp_path / f) in str(e.value)
        assert "\n" not in str(e.value)
    res = compare(tmp_path / "dense.pt", [tmp_path / "module.pt", tmp_path / "tp.pth"], (x, y),
                  build=lambda: small_cnn(C), trust_pickle=True, methods=["a", "b"],
                  n_resamples=10)
    assert res.models.source.tolist()[1:] == ["pickled module", "Torch-Pruning state"]
    assert res.models.achieved_ratio[1] == pytest.approx(res.models.achieved_ratio[2])
    assert res.models.accuracy[1] == res.models.accuracy[2]


def test_bad_inputs_one_line_before_work(tmp_path, test_set, monkeypatch):
    import prunescope.train as T

    x, y = test_set
    monkeypatch.setattr(T, "predict", lambda *a, **k: pytest.fail("evaluated before checks"))
    dense = small_cnn(C)
    cases = [
        ([small_cnn(C + 1)], {}, "has 5 outputs but the dense model has 4"),
        ([dense], {"class_names": ["a", "b"]}, "class_names has 2 names"),
        ([small_cnn(C, in_channels=3)], {}, "cannot take the images"),
        ([tmp_path / "missing.pt"], {}, "no model file"),
    ]
    for pruned, kw, msg in cases:
        with pytest.raises(AuditError, match=msg) as e:
            compare(dense, pruned, (x, y), **kw)
        assert "\n" not in str(e.value)
    torch.save(small_cnn(C).state_dict(), tmp_path / "w.pt")
    with pytest.raises(AuditError, match="no architecture"):
        compare(tmp_path / "w.pt", [dense], (x, y))


def test_distributions_and_several_seeds(test_set):
    x, y = test_set
    dense = [small_cnn(C), small_cnn(C)]
    pruned = [[_torch_pruned(0.5)], [_torch_pruned(0.5)]]
    res = compare(dense, pruned, (x, y), distributions=["noise-0.1"], n_resamples=10)
    assert set(res.alphas.distribution) == {"nominal", "noise-0.1"}
    assert res.mcnemar.empty and (res.intervals.ci_method == "t across seeds").all()
    assert "seed-to-seed" in res.uncertainty
    assert (res.intervals.n == 2).all()
    assert len(res.classwise) == 2 * 2 * C and set(res.classwise.seed) == {0, 1}
    assert len(res.worst_classes) == 2 * 2 * 3 and set(res.agreement.seed) == {0, 1}


def test_a_builder_per_checkpoint(tmp_path, test_set):
    x, y = test_set
    narrow = lambda: nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(),  # noqa: E731
                                   nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, C))
    torch.save(small_cnn(C).state_dict(), tmp_path / "dense.pt")
    torch.save(narrow().state_dict(), tmp_path / "other.pt")
    res = compare(tmp_path / "dense.pt", [tmp_path / "other.pt"], (x, y),
                  build=[lambda: small_cnn(C), narrow], n_resamples=10)
    n_dense = sum(p.numel() for p in small_cnn(C).parameters())
    assert res.models.achieved_ratio[1] == pytest.approx(n_dense / _nonzero(narrow()))
    with pytest.raises(AuditError, match="do not fit the model build"):
        compare(tmp_path / "dense.pt", [tmp_path / "other.pt"], (x, y),
                build=[lambda: small_cnn(C), lambda: small_cnn(C)])


def test_pruned_state_dict_loads_into_the_dense_model(tmp_path, test_set):
    x, y = test_set
    pruned = _torch_pruned(0.7)
    torch.save(pruned.state_dict(), tmp_path / "p.pt")
    res = compare(small_cnn(C), [tmp_path / "p.pt"], (x, y), n_resamples=10)
    assert res.models.source[1] == "torch.nn.utils.prune state dict"
    for i in (0, 3, 8):
        torch_prune.remove(pruned[i], "weight")
    assert res.models.achieved_ratio[1] == pytest.approx(
        sum(p.numel() for p in small_cnn(C).parameters()) / _nonzero(pruned))
