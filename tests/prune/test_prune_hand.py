"""Hand-computable cases for every criterion of SPEC 3 on a tiny network (element by element)."""
import math

import pytest
import torch
from torch import nn

from prunescope.prune import (
    UnreachableRatioError,
    keep_count,
    make_masks,
    masks_from_scores,
    prunable,
    prune_model,
    score,
)

THETA = [[1.0, -2.0, 3.0], [-0.5, 4.0, 0.25]]
G = [[0.5, 1.0, -1.0], [2.0, 0.125, 0.0]]
EPS = 0.125  # exact in binary, so the hand values below are exact


def tiny() -> nn.Sequential:
    """Linear(3, 2) -> ReLU -> Linear(2, 2): 8 + 6 = 14 parameters, 6 prunable (``0.weight``)."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 2), nn.ReLU(), nn.Linear(2, 2))
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor(THETA))
    return net


def grads():
    return {"0.weight": torch.tensor(G)}


def t(rows):
    return torch.tensor(rows, dtype=torch.float64)


def test_prunable_excludes_classifier_biases_and_batchnorm():
    """SPEC 3 "Prunable parameters": Conv/Linear weights, not the classifier, biases, BN."""
    net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.Flatten(), nn.Linear(2, 4),
                        nn.Linear(4, 3))
    assert list(prunable(net)) == ["0.weight", "3.weight"]
    assert list(prunable(net, prune_biases=True)) == ["0.weight", "0.bias", "3.weight", "3.bias"]
    assert list(prunable(net, prune_classifier=True)) == ["0.weight", "3.weight", "4.weight"]
    with pytest.raises(ValueError, match="not a module"):
        prunable(net, classifier="nope")


def test_mp_scores():
    net = tiny()
    s = score("mp", net, prunable(net))
    assert torch.equal(s["0.weight"], t([[1, 2, 3], [0.5, 4, 0.25]]))


def test_gp_scores():
    net = tiny()
    s = score("gp", net, prunable(net), grads=grads())
    assert torch.equal(s["0.weight"], t([[0.5, 2, 3], [1, 0.5, 0]]))


def test_up_scores_printed_formula_with_abs():
    """SPEC 3 UP: |-theta*g + eps*theta^2| with g the data-loss gradient."""
    net = tiny()
    s = score("up", net, prunable(net), grads=grads(), eps=EPS)["0.weight"]
    expected = t([
        [abs(-0.5 + EPS * 1), abs(2 + EPS * 4), abs(3 + EPS * 9)],
        [abs(1 + EPS * 0.25), abs(-0.5 + EPS * 16), abs(0 + EPS * 0.0625)],
    ])
    assert torch.equal(s, expected)


def test_up_reads_eps_from_meta_and_never_defaults():
    net = tiny()
    p = prunable(net)
    from_meta = score("up", net, p, grads=grads(), meta={"recipe": {"weight_decay": EPS}})
    assert torch.equal(from_meta["0.weight"], score("up", net, p, grads=grads(), eps=EPS)["0.weight"])
    with pytest.raises(ValueError, match="weight decay"):
        score("up", net, p, grads=grads())
    with pytest.raises(ValueError, match="data-loss gradient"):
        score("gp", net, p)


def test_rp_scores_are_seeded_uniform():
    net = tiny()
    s = score("rp", net, prunable(net), seed=7)["0.weight"]
    expected = torch.rand((2, 3), generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    assert torch.equal(s, expected)
    assert ((s >= 0) & (s < 1)).all()


# 14 parameters, 8 not prunable. Ratio 14/12 keeps k = 4 of the 6 prunable weights.
@pytest.mark.parametrize(
    "method, expected",
    [
        ("mp", [[1, 1, 1], [0, 1, 0]]),  # keeps 4, 3, 2, 1
        ("gp", [[1, 1, 1], [1, 0, 0]]),  # keeps 3, 2, 1 and the first of the tied 0.5s
        ("up", [[0, 1, 1], [1, 1, 0]]),  # keeps 3.375, 2.5, 1.5, 1.03125
    ],
)
def test_masks_by_hand(method, expected):
    net = tiny()
    res = prune_model(net, method, 14 / 12, grads=grads(), eps=EPS)
    mask = torch.tensor(expected, dtype=torch.bool)
    assert torch.equal(res.masks["0.weight"], mask)
    assert res.kept == {"0.weight": 4}
    assert res.achieved_ratio == pytest.approx(14 / 12)
    assert res.densities == {"0.weight": pytest.approx(4 / 6)}
    assert torch.equal(net[0].weight, torch.tensor(THETA) * mask)


def test_rp_mask_by_hand():
    net = tiny()
    res = prune_model(net, "rp", 14 / 11, seed=3)
    u = torch.rand(6, generator=torch.Generator().manual_seed(3), dtype=torch.float64).tolist()
    top3 = sorted(range(6), key=lambda i: -u[i])[:3]
    expected = torch.zeros(6, dtype=torch.bool)
    expected[top3] = True
    assert torch.equal(res.masks["0.weight"].reshape(-1), expected)


def test_ties_keep_lower_flat_index_first():
    res = masks_from_scores({"a": torch.ones(3), "b": torch.ones(2)}, n_total=5, ratio=2.5)
    assert res.masks["a"].tolist() == [True, True, False]
    assert res.masks["b"].tolist() == [False, False]
    res = masks_from_scores({"a": torch.ones(3), "b": torch.ones(2)}, 5, 2.5, scope="layer")
    assert res.masks["a"].tolist() == [True, False, False]  # quotas 1.2 -> 1, 0.8 -> 1
    assert res.masks["b"].tolist() == [True, False]


def test_keep_count_keeps_the_largest_k_that_meets_the_ratio():
    """SPEC 3 "so that t is met": the largest k whose achieved ratio is >= t, never the
    nearest k (which can fall just short of t)."""
    # 100 params, 10 fixed: ratio 3 -> 33.33 nonzero -> k = 23.33 -> 23 (ratio 3.03)
    assert keep_count(100, 90, 3.0) == 23
    # 33.5 nonzero allowed: the nearest count 24 (ratio 2.94) would miss t = 2.985
    assert keep_count(100, 90, 100 / 33.5) == 23
    assert keep_count(100, 90, 100 / 33.9) == 23
    assert keep_count(100, 90, 100 / 34) == 24  # met exactly
    assert keep_count(100, 90, 1.0) == 90
    assert keep_count(100, 90, 1.01) == 89  # 99 nonzero: 1.0101 >= 1.01; 100 would be 1.0
    assert keep_count(100, 90, 10.0) == 0  # exactly the largest reachable ratio
    for past in (9.6, 9.4):  # 0.4 or 0.6 weights past it: both need k < 0 (SPEC 3)
        with pytest.raises(UnreachableRatioError):
            keep_count(100, 90, 100 / past)
    assert keep_count(50, 50, 50.0) == 1  # everything prunable: keeping one weight is the limit
    with pytest.raises(UnreachableRatioError, match="largest reachable ratio is 50 "):
        keep_count(50, 50, 200.0)
    with pytest.raises(ValueError, match=">= 1"):
        keep_count(100, 90, 0.5)


@pytest.mark.parametrize("ratio", [2, 4, 10, 20, 50])
def test_lenet5_meets_every_paper_ratio(ratio):
    """LeNet-5 (61,706 parameters, 850 of them the protected classifier, 236 biases): rounding
    to the nearest count gave 3.99987 at t = 4; the achieved ratio is now >= t, and keeping one
    more weight would fall below t."""
    from prunescope.models import build_model
    from prunescope.prune import count_parameters, prunable

    model = build_model("lenet5", 10, 1)
    n_total = count_parameters(model)
    n_prunable = sum(p.numel() for p in prunable(model).values())
    k = keep_count(n_total, n_prunable, ratio)
    n_fixed = n_total - n_prunable
    assert n_total / (n_fixed + k) >= ratio
    assert n_total / (n_fixed + k + 1) < ratio
    if ratio == 4:  # the case the issue measured: round() kept one weight too many
        assert k == math.floor(n_total / 4 - n_fixed) == math.floor(n_total / 4 - n_fixed + 0.5) - 1


def test_keep_gives_exactly_k_and_the_mask_of_the_ratio_that_k_gives():
    """``keep=k`` keeps exactly k prunable weights; for every k it is the mask (and record) of
    the ratio ``n_total / (n_fixed + k)``, in both scopes."""
    gen = torch.Generator().manual_seed(0)
    scores = {"a": torch.randn(4, 5, generator=gen), "b": torch.randn(7, generator=gen)}
    n_total = 27 + 5  # 5 parameters outside the prunable set
    for scope in ("global", "layer"):
        for k in range(28):
            new = masks_from_scores(scores, n_total, scope=scope, keep=k)
            old = masks_from_scores(scores, n_total, n_total / (5 + k), scope)
            assert sum(new.kept.values()) == k
            assert new.summary() == old.summary()
            assert all(torch.equal(new.masks[n], old.masks[n]) for n in scores)
    net = tiny()
    res = make_masks(net, score("mp", net, prunable(net)), keep=3)
    assert res.kept == {"0.weight": 3} and res.requested_ratio == 14 / 11


def test_keep_and_ratio_are_exclusive_and_keep_is_checked():
    s = {"a": torch.ones(3), "b": torch.ones(2)}
    with pytest.raises(TypeError, match="not both"):
        masks_from_scores(s, 6, 2.0, keep=1)
    with pytest.raises(TypeError, match="not neither"):
        masks_from_scores(s, 6)
    for bad in (-1, 6, 1.5, True):
        with pytest.raises(ValueError, match=r"keep must be .* \[0, 5\]"):
            masks_from_scores(s, 6, keep=bad)
    assert masks_from_scores(s, 6, keep=0).achieved_ratio == 6.0
    assert masks_from_scores(s, 5, keep=1).achieved_ratio == 5.0
    with pytest.raises(UnreachableRatioError, match="keep=0"):
        masks_from_scores(s, 5, keep=0)  # everything prunable: one weight must stay


def test_unreachable_ratio_names_ratio_and_maximum():
    net = tiny()
    with pytest.raises(UnreachableRatioError, match=r"ratio 2 is unreachable.*largest reachable ratio is 1\.75"):
        make_masks(net, score("mp", net, prunable(net)), 2.0)
