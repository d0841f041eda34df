"""Exact pruning ratios (SPEC 3 "Pruning ratio", "Layer-wise scope") on the study's models."""
import pytest
import torch

from prunescope.models import build_model
from prunescope.prune import (
    UnreachableRatioError,
    apply_masks,
    count_parameters,
    make_masks,
    prunable,
    prune_model,
    score,
)

RATIOS = (2, 4, 10, 20, 50)
ARCHS = (("lenet5", 1), ("resnet20", 3), ("resnet56", 3))


def nonzero_by_mask(model, masks):
    """Count from the model itself: all parameters minus the masked-out weights (which are zero)."""
    named = dict(model.named_parameters())
    pruned = 0
    for n, m in masks.items():
        assert (named[n][~m] == 0).all()
        pruned += int((~m).sum())
    return count_parameters(model) - pruned


@pytest.fixture(scope="module", params=ARCHS, ids=[a for a, _ in ARCHS])
def dense(request):
    arch, channels = request.param
    return build_model(arch, 10, channels, seed=0)


@pytest.mark.parametrize("scope", ["global", "layer"])
def test_achieved_ratio_meets_requested_and_one_more_weight_would_not(dense, scope):
    n_total = count_parameters(dense)
    scores = score("mp", dense, prunable(dense))
    state = {k: v.clone() for k, v in dense.state_dict().items()}
    for ratio in RATIOS:
        dense.load_state_dict(state)  # one-shot: every ratio from the same dense parent
        res = make_masks(dense, scores, ratio, scope=scope)
        apply_masks(dense, res.masks)
        nnz = nonzero_by_mask(dense, res.masks)
        assert nnz == res.n_nonzero
        # SPEC 3 "so that t is met": the largest nonzero count whose ratio is still >= t, so
        # the achieved ratio is at least the requested one and one more weight would miss it
        assert nnz <= n_total / ratio < nnz + 1
        assert res.achieved_ratio == n_total / nnz >= ratio
        assert res.achieved_ratio == pytest.approx(ratio, rel=1.0 / nnz)
    dense.load_state_dict(state)


def test_layer_scope_same_density_in_every_layer(dense):
    params = prunable(dense)
    n_prunable = sum(p.numel() for p in params.values())
    for ratio in RATIOS:
        res = make_masks(dense, score("mp", dense, params), ratio, scope="layer")
        fraction = sum(res.kept.values()) / n_prunable
        for n, p in params.items():
            assert abs(res.densities[n] - fraction) <= 1.0 / p.numel(), n
            assert res.densities[n] == res.masks[n].sum().item() / p.numel()


def test_global_scope_densities_differ_across_layers():
    """MP at a global threshold is not the layer-wise rule: densities must differ somewhere."""
    model = build_model("resnet20", 10, 3, seed=0)
    res = make_masks(model, score("mp", model, prunable(model)), 10)
    assert max(res.densities.values()) - min(res.densities.values()) > 0.05


def test_unreachable_ratio_fails_clearly(dense):
    params = prunable(dense)
    n_total = count_parameters(dense)
    max_ratio = n_total / (n_total - sum(p.numel() for p in params.values()))
    too_far = max_ratio * 1.01
    with pytest.raises(UnreachableRatioError) as err:
        make_masks(dense, score("mp", dense, params), too_far)
    assert f"{too_far:g}" in str(err.value) and f"{max_ratio:.6g}" in str(err.value)
    res = make_masks(dense, score("mp", dense, params), max_ratio)  # the limit itself is reachable
    assert sum(res.kept.values()) == 0


def test_prune_model_zeroes_weights_and_leaves_the_rest():
    model = build_model("lenet5", 10, 1, seed=0)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    res = prune_model(model, "mp", 20)
    for n, v in model.state_dict().items():
        if n in res.masks:
            assert torch.equal(v, before[n] * res.masks[n])
        else:
            assert torch.equal(v, before[n]), n
    assert set(res.masks) == {"conv1.weight", "conv2.weight", "fc1.weight", "fc2.weight"}


def test_ratio_just_past_the_maximum_is_unreachable(dense):
    """SPEC 3: a ratio that needs fewer than zero prunable weights is an error, even when it is
    within half a weight of the maximum (rounding must not quietly achieve less)."""
    params = prunable(dense)
    n_total = count_parameters(dense)
    n_fixed = n_total - sum(p.numel() for p in params.values())
    just_past = n_total / (n_fixed - 0.25)  # needs -0.25 prunable weights
    with pytest.raises(UnreachableRatioError):
        make_masks(dense, score("mp", dense, params), just_past)
