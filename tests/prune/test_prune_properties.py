"""Ranking properties of SPEC 3 ("Properties to test") on a real architecture with random weights."""
import pytest
import torch

from prunescope.models import build_model
from prunescope.prune import make_masks, prunable, score

@pytest.fixture(scope="module")
def resnet20():
    return build_model("resnet20", 10, 3, seed=1)


def random_grads(params, seed):
    gen = torch.Generator().manual_seed(seed)
    return {n: torch.randn(p.shape, generator=gen) * 1e-3 for n, p in params.items()}


def global_order(scores):
    flat = torch.cat([s.reshape(-1) for s in scores.values()])
    return torch.sort(flat, descending=True, stable=True).indices


def same_masks(model, a, b):
    """Equal global orders already imply equal top-k masks; check two ratios end to end."""
    for r in (4, 50):
        ma, mb = make_masks(model, a, r).masks, make_masks(model, b, r).masks
        assert all(torch.equal(ma[n], mb[n]) for n in ma), f"masks differ at ratio {r}"


def test_up_with_eps_zero_ranks_exactly_like_gp(resnet20):
    params = prunable(resnet20)
    g = random_grads(params, 0)
    gp = score("gp", resnet20, params, grads=g)
    up = score("up", resnet20, params, grads=g, eps=0.0)
    assert all(torch.equal(gp[n], up[n]) for n in gp)
    assert torch.equal(global_order(gp), global_order(up))
    same_masks(resnet20, gp, up)


def test_up_with_zero_gradient_ranks_exactly_like_mp(resnet20):
    params = prunable(resnet20)
    zero = {n: torch.zeros_like(p) for n, p in params.items()}
    mp = score("mp", resnet20, params)
    up = score("up", resnet20, params, grads=zero, eps=5e-4)
    assert torch.equal(global_order(mp), global_order(up))
    same_masks(resnet20, mp, up)


def test_up_differs_from_both_in_general(resnet20):
    """With a real g and eps > 0, UP is neither GP nor MP (else the two tests above prove nothing)."""
    params = prunable(resnet20)
    g = random_grads(params, 1)
    up = make_masks(resnet20, score("up", resnet20, params, grads=g, eps=5.0), 10).masks
    gp = make_masks(resnet20, score("gp", resnet20, params, grads=g), 10).masks
    mp = make_masks(resnet20, score("mp", resnet20, params), 10).masks
    assert any(not torch.equal(up[n], gp[n]) for n in up)
    assert any(not torch.equal(up[n], mp[n]) for n in up)


def test_rp_same_seed_same_mask_other_seed_different(resnet20):
    params = prunable(resnet20)
    m = [make_masks(resnet20, score("rp", resnet20, params, seed=s), 10).masks for s in (5, 5, 6)]
    assert all(torch.equal(m[0][n], m[1][n]) for n in m[0])
    assert any(not torch.equal(m[0][n], m[2][n]) for n in m[0])
