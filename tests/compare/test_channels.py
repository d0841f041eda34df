"""Channel pruning of any architecture through Torch-Pruning (issue 27 item 3): a
MobileNetV2-like net (depthwise convolutions, inverted residuals) and a ResNet with a projection
branch reach the requested parameter ratio with the smallest channel fraction that does, still
run, and have their latency measured."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from prunescope.prune import UnreachableRatioError, count_parameters
from prunescope.prune.channels import FRACTION_TOL, _pruned, prune_channels

sys.path.insert(0, str(Path(__file__).parent))
from nets import branchy_resnet, mobilenet_like  # noqa: E402

EX = torch.randn(1, 3, 8, 8, generator=torch.Generator().manual_seed(0))


def _batches():
    g = torch.Generator().manual_seed(1)
    return [(torch.randn(8, 3, 8, 8, generator=g), torch.randint(0, 4, (8,), generator=g))]


@pytest.mark.parametrize("build, importance", [(mobilenet_like, "l1"),
                                               (branchy_resnet, "taylor")])
def test_reaches_ratio_with_smallest_fraction(build, importance):
    net = build()
    before = count_parameters(net)
    res = prune_channels(net, EX, 3.0, importance,
                         batches=_batches() if importance == "taylor" else None,
                         latency_batch=8)
    assert count_parameters(net) == before  # the given model is untouched
    assert res.params_before == before and res.params_after == count_parameters(res.model)
    assert res.achieved_ratio == pytest.approx(before / res.params_after)
    assert 3.0 <= res.achieved_ratio < 3.6
    if importance == "l1":
        less = _pruned(net.eval(), EX, "l1", res.channel_fraction - FRACTION_TOL, None)
        assert before / count_parameters(less) < 3.0  # a smaller fraction falls short
    else:  # the same fraction by L1 norm keeps other channels
        by_l1 = _pruned(net.eval(), EX, "l1", res.channel_fraction, None)
        assert by_l1[0].weight.shape == res.model[0].weight.shape
        assert not torch.equal(by_l1[0].weight, res.model[0].weight)
    out = res.model(torch.randn(5, 3, 8, 8))
    assert out.shape == (5, 4) and torch.isfinite(out).all()
    assert res.latency_before_ms > 0 and res.latency_after_ms > 0


def test_refusals():
    net = mobilenet_like()
    with pytest.raises(UnreachableRatioError, match="reaches"):
        prune_channels(net, EX, 1000.0)
    with pytest.raises(ValueError, match="training batches"):
        prune_channels(net, EX, 2.0, "taylor")
    with pytest.raises(ValueError, match="choose one of l1, taylor"):
        prune_channels(net, EX, 2.0, "l2")


def test_top_fraction_keeps_a_channel_in_the_narrowest_layer():
    from torch import nn

    from prunescope.prune.channels import top_fraction

    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1),
                        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 3)).eval()
    f = top_fraction(net)
    assert int(8 * (1 - f)) == 1  # Torch-Pruning's kept count at that fraction
    top = _pruned(net, EX, "l1", f, None)
    assert top[0].out_channels == 1 and top[2].out_channels == 1
    # Torch-Pruning leaves a layer it would empty unpruned: beyond f nothing more goes
    assert count_parameters(_pruned(net, EX, "l1", 0.95, None)) > count_parameters(top)


def test_a_model_torch_pruning_breaks_is_refused():
    from prunescope.models import build_model

    net = build_model("resnet20", 10, 3, seed=0).eval()  # zero-padding shortcuts, not traced
    with pytest.raises(ValueError, match="cannot remove channels of this"):
        prune_channels(net, torch.randn(1, 3, 32, 32), 2.0)
