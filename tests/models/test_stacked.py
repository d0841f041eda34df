"""Packs: a stacked network of G models computes exactly what the G models compute alone."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from prunescope.models import build_model
from prunescope.models.stacked import (
    StackedModel,
    per_model_params,
    stack,
    stack_masks,
    unstack,
    unstack_tensors,
)

CASES = [("lenet5", (1, 28, 28)), ("lenet5-shrinkbench", (1, 28, 28)), ("resnet20", (3, 32, 32))]


def _models(arch: str, shape: tuple[int, int, int], g: int, seed0: int = 0):
    return [build_model(arch, 10, shape[0], seed=seed0 + i) for i in range(g)]


def _perturb_bn(models) -> None:
    """Give every BatchNorm non-trivial affine parameters and running statistics, different per
    model, so eval-mode equality tests more than the identity."""
    gen = torch.Generator().manual_seed(123)
    with torch.no_grad():
        for m in models:
            for mod in m.modules():
                if isinstance(mod, torch.nn.BatchNorm2d):
                    c = mod.num_features
                    mod.weight.copy_(1 + 0.3 * torch.randn(c, generator=gen))
                    mod.bias.copy_(0.2 * torch.randn(c, generator=gen))
                    mod.running_mean.copy_(0.5 * torch.randn(c, generator=gen))
                    mod.running_var.copy_(0.5 + torch.rand(c, generator=gen))


def _state_equal(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return list(sa) == list(sb) and all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.mark.parametrize("arch,shape", CASES)
@pytest.mark.parametrize("g", [1, 3])
@pytest.mark.parametrize("train", [True, False])
def test_forward_matches_each_model(arch, shape, g, train):
    models = _models(arch, shape, g)
    _perturb_bn(models)
    pack = stack(models)
    assert isinstance(pack, StackedModel) and pack.groups == g and pack.arch == arch
    x = torch.randn(g, 6, *shape, generator=torch.Generator().manual_seed(7))
    pack.train(train)
    for m in models:
        m.train(train)
    out = pack(x)
    ref = torch.stack([m(x[i]) for i, m in enumerate(models)])
    assert out.shape == (g, 6, 10)
    if g == 1:  # the very same ops: bitwise equal
        assert torch.equal(out, ref)
    else:
        # grouped and plain float32 convolutions sum in different orders: ~1e-5 apart on
        # ResNet-20 logits on some CPUs; a wiring error is O(1)
        torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-4)
    # BatchNorm running statistics were updated per model (train) or left alone (eval)
    for i, (got, m) in enumerate(zip(unstack(pack), models)):
        for k, v in m.state_dict().items():
            torch.testing.assert_close(got.state_dict()[k], v, rtol=1e-5, atol=1e-6,
                                       msg=f"model {i} {k}")


@pytest.mark.parametrize("arch,shape", CASES)
@pytest.mark.parametrize("g", [1, 3])
def test_gradients_match_each_model(arch, shape, g):
    """G = 1: bitwise in float32. G = 3: float64, because in float32 a freshly initialised
    ResNet's train-mode BatchNorm over a batch of 8 amplifies the (legitimate) rounding
    differences of grouped vs plain convolutions to a few percent of the gradient; in float64
    the pack's gradient is the single model's to ~1e-15, which shows the maths is the same."""
    dtype = torch.float32 if g == 1 else torch.float64
    models = [m.to(dtype) for m in _models(arch, shape, g, seed0=10)]
    pack = stack(models)
    assert next(pack.parameters()).dtype == dtype
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(g, 8, *shape, generator=gen).to(dtype)
    y = torch.randint(0, 10, (g, 8), generator=gen)
    logits = pack(x)
    # the pack loss: sum over models of each model's mean cross-entropy
    loss = sum(F.cross_entropy(logits[i], y[i]) for i in range(g))
    loss.backward()
    grads = unstack_tensors(pack, {n: p.grad for n, p in pack.named_parameters()})
    for i, m in enumerate(models):
        F.cross_entropy(m(x[i]), y[i]).backward()
        for n, p in m.named_parameters():
            if g == 1:
                assert torch.equal(grads[i][n], p.grad), n
            else:
                torch.testing.assert_close(grads[i][n], p.grad, rtol=1e-10, atol=1e-12,
                                           msg=f"model {i} {n}")


@pytest.mark.parametrize("arch,shape", CASES)
@pytest.mark.parametrize("g", [1, 3])
def test_round_trip_exact(arch, shape, g):
    models = _models(arch, shape, g, seed0=20)
    _perturb_bn(models)
    for m in models:
        m.eval()
    pack = stack(models)
    assert not pack.training
    back = unstack(pack)
    assert len(back) == g
    for m, b in zip(models, back):
        assert type(b) is type(m) and not b.training
        assert _state_equal(m, b)
    # the pack holds copies: changing the pack leaves the models alone
    with torch.no_grad():
        next(pack.parameters()).add_(1.0)
    assert _state_equal(models[0], back[0])


def test_per_model_views_and_masks():
    models = _models("resnet20", (3, 32, 32), 3, seed0=30)
    pack = stack(models)
    for g, m in enumerate(models):
        views = per_model_params(pack, g)
        assert list(views) == [n for n, _ in m.named_parameters()]
        for n, p in m.named_parameters():
            assert torch.equal(views[n], p.detach())
    # writing through a view writes into the pack, for that model only
    with torch.no_grad():
        per_model_params(pack, 1)["layer2.0.conv1.weight"].zero_()
    back = unstack(pack)
    assert back[1].layer2[0].conv1.weight.abs().sum() == 0
    assert torch.equal(back[0].layer2[0].conv1.weight, models[0].layer2[0].conv1.weight)
    assert torch.equal(back[2].layer2[0].conv1.weight, models[2].layer2[0].conv1.weight)

    gen = torch.Generator().manual_seed(0)
    names = ["conv1.weight", "layer3.2.conv2.weight"]
    masks = [{n: torch.rand(dict(m.named_parameters())[n].shape, generator=gen) < 0.5
              for n in names} for m in models[:2]] + [None]
    packed = stack_masks(pack, masks)
    params = dict(pack.named_parameters())
    for n in names:
        assert packed[n].shape == params[n].shape and packed[n].dtype == params[n].dtype
        per = pack.per_model(n, packed[n])
        assert torch.equal(per[0], masks[0][n].float())
        assert torch.equal(per[1], masks[1][n].float())
        assert torch.equal(per[2], torch.ones_like(per[2]))  # None: dense model
    assert stack_masks(pack, [None, None, None]) == {}
    with pytest.raises(ValueError, match="one mask dict"):
        stack_masks(pack, masks[:2])
    with pytest.raises(ValueError, match="same"):
        stack_masks(pack, [masks[0], {names[0]: masks[1][names[0]]}, None])


def test_masked_pack_equals_masked_models():
    """Applying stacked masks to the pack = applying each model's mask to that model."""
    models = _models("lenet5", (1, 28, 28), 2, seed0=40)
    pack = stack(models)
    gen = torch.Generator().manual_seed(1)
    masks = [{n: (torch.rand(p.shape, generator=gen) < 0.3) for n, p in m.named_parameters()
              if n.endswith("weight") and not n.startswith("classifier")} for m in models]
    packed = stack_masks(pack, masks)
    with torch.no_grad():
        torch._foreach_mul_([p for n, p in pack.named_parameters() if n in packed],
                            [packed[n] for n, _ in pack.named_parameters() if n in packed])
        for m, mk in zip(models, masks):
            for n, p in m.named_parameters():
                if n in mk:
                    p.mul_(mk[n])
    for m, b in zip(models, unstack(pack)):
        assert _state_equal(m, b)


def test_stack_rejects_mixed_architectures():
    with pytest.raises(ValueError, match="architecture"):
        stack([build_model("resnet20", 10), build_model("resnet32", 10)])
    with pytest.raises(ValueError, match="architecture"):
        stack([build_model("resnet20", 10), build_model("resnet20", 100)])
    with pytest.raises(ValueError, match="architecture"):
        stack([build_model("lenet5", 10, 1), build_model("lenet5-shrinkbench", 10, 1)])
    with pytest.raises(TypeError, match="cannot stack"):
        stack([torch.nn.Linear(3, 2)])
    with pytest.raises(ValueError, match="at least one"):
        stack([])
    pack = stack([build_model("lenet5", 10, 1)])
    with pytest.raises(ValueError, match=r"\(G, B, C, H, W\)"):
        pack(torch.zeros(4, 1, 28, 28))
