"""The paper-code protocol's mask options (SPEC 8) against a NumPy re-expression of the rules of
the authors' ShrinkBench fork (``strategies/utils.py``, ``strategies/magnitude.py``,
``strategies/random.py``, ``pruning/utils.py``), element for element, on ShrinkBench's LeNet."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from prunescope.catalog.protocol import PruneOptions
from prunescope.catalog.ratios import UnreachableRatioError, keep_count, shrinkbench_fraction
from prunescope.models import build_model, classifier_name
from prunescope.prune import count_parameters
from prunescope.prune.oneshot import one_shot_masks, prune_model
from prunescope.prune.scores import score
from prunescope.prune.params import prunable

RATIOS = (2, 4, 10, 20, 50)
FORK = PruneOptions(keep_rule="shrinkbench", up_score="signed-5e-4", rp_count="binomial")


@pytest.fixture(scope="module")
def lenet():
    """ShrinkBench's LeNet (the fork's ``models/mnistnet.py`` ``LeNet``), seeded, with a fake
    gradient of every parameter (the rules only read its values)."""
    model = build_model("lenet5-shrinkbench", 10, 1, seed=3, image_size=28)
    gen = torch.Generator().manual_seed(11)
    grads = {n: torch.randn(p.shape, generator=gen) * 0.05 for n, p in model.named_parameters()}
    return model, grads


def _fork_layers(model):
    """The fork's prunable modules: every Conv/Linear but its ``fc3`` (``is_classifier``; here
    the last Linear), as ``{module: {param: float64 numpy}}`` (``get_params``: weight, bias)."""
    return {name: {p: t.detach().double().numpy() for p, t in m.named_parameters()}
            for name, m in model.named_modules()
            if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))
            and name != classifier_name(model)}


def _fork_fraction(model, ratio):
    """``fraction_to_keep``: prunable size counts the biases of the prunable modules."""
    total = sum(p.numel() for p in model.parameters())
    prunable_size = sum(a.size for params in _fork_layers(model).values() for a in params.values())
    return 1 / prunable_size * (total / ratio - (total - prunable_size))


def _fork_masks(importances, fraction):
    """``fraction_threshold`` over every importance given, then ``importance_masks``
    (``map_importances`` drops ``bias``; ``threshold_mask`` is symmetric)."""
    flat = np.concatenate([imp.flatten() for params in importances.values()
                           for imp in params.values()])
    threshold = np.quantile(flat, 1 - fraction)
    return {f"{mod}.{p}": ~np.logical_and(imp < threshold, imp > -threshold)
            for mod, params in importances.items() for p, imp in params.items() if p != "bias"}


def _fork_importances(model, grads, method):
    """The fork's importances: ``GlobalMagWeight`` (``map_importances(np.abs)``: weights only),
    ``GlobalMagGrad`` (``|w*g|``, biases too), ``MixedMagGrad`` (``-w*g + 5e-4*w^2``, biases
    too)."""
    layers = _fork_layers(model)
    g = {n: t.double().numpy() for n, t in grads.items()}
    if method == "mp":
        return {m: {p: np.abs(a) for p, a in ps.items() if p != "bias"} for m, ps in layers.items()}
    if method == "gp":
        return {m: {p: np.abs(a * g[f"{m}.{p}"]) for p, a in ps.items()} for m, ps in layers.items()}
    return {m: {p: -a * g[f"{m}.{p}"] + 5e-4 * a ** 2 for p, a in ps.items()}
            for m, ps in layers.items()}


def _achieved(model, masks):
    total = count_parameters(model)
    return total / (total - sum(int((~np.asarray(m)).sum()) for m in masks.values()))


@pytest.mark.parametrize("method", ["mp", "gp", "up"])
@pytest.mark.parametrize("ratio", RATIOS)
def test_shrinkbench_rule_matches_the_fork_element_for_element(lenet, method, ratio):
    model, grads = lenet
    expected = _fork_masks(_fork_importances(model, grads, method), _fork_fraction(model, ratio))
    got = one_shot_masks(model, method, ratio, grads=grads, options=FORK, meta={"weight_decay": 0})
    assert set(got.masks) == set(expected) == {f"{m}.weight" for m in _fork_layers(model)}
    for name, mask in expected.items():
        assert np.array_equal(got.masks[name].numpy(), mask), name
    assert got.achieved_ratio == pytest.approx(_achieved(model, expected), rel=1e-15)
    assert got.requested_ratio == ratio


def test_fork_magnitude_falls_short_of_the_stated_ratio(lenet):
    """SPEC 8's figures for the LeNet: 1.99 / 9.67 / 42.1 at stated 2 / 10 / 50 (MP)."""
    model, grads = lenet
    achieved = [one_shot_masks(model, "mp", r, options=FORK).achieved_ratio for r in (2, 10, 50)]
    assert [round(a, 2) for a in achieved[:2]] == [1.99, 9.67] and round(achieved[2], 1) == 42.1


def test_signed_up_keeps_negative_scores_and_more_than_stated(lenet):
    model, grads = lenet
    res = one_shot_masks(model, "up", 50, grads=grads, options=FORK, meta={"weight_decay": 0})
    signed = score("up", model, prunable(model), grads=grads, signed=True)
    kept_negative = sum(int((s[res.masks[n]] < 0).sum()) for n, s in signed.items())
    assert kept_negative > 0
    assert res.achieved_ratio < one_shot_masks(model, "mp", 50, options=FORK).achieved_ratio


def test_signed_score_ignores_the_training_decay(lenet):
    model, grads = lenet
    params = prunable(model)
    a = score("up", model, params, grads=grads, eps=0.0, signed=True)
    b = score("up", model, params, grads=grads, eps=0.1, signed=True)
    for n, theta in params.items():
        t, g = theta.detach().double(), grads[n].double()
        assert torch.equal(a[n], b[n]) and torch.equal(a[n], -t * g + 5e-4 * t * t)


@pytest.mark.parametrize("keep_rule", ["exact", "shrinkbench"])
def test_binomial_rp_keeps_each_draw_below_the_fraction(lenet, keep_rule):
    """``random_mask``: a weight is pruned when its uniform draw exceeds the keep fraction."""
    model, _ = lenet
    opts = PruneOptions(keep_rule=keep_rule, rp_count="binomial")
    res = one_shot_masks(model, "rp", 10, seed=5, options=opts)
    draws = score("rp", model, prunable(model), seed=5)
    n_weights = sum(d.numel() for d in draws.values())
    fraction = (_fork_fraction(model, 10) if keep_rule == "shrinkbench" else
                keep_count(count_parameters(model), n_weights, 10) / n_weights)
    for n, d in draws.items():
        assert np.array_equal(res.masks[n].numpy(), d.numpy() <= fraction), n
    exact = one_shot_masks(model, "rp", 10, seed=5, options=PruneOptions(keep_rule=keep_rule))
    assert sum(res.kept.values()) != sum(exact.kept.values())  # a binomial count, not a fixed one


@pytest.mark.parametrize("options", [PruneOptions(), FORK], ids=["exact", "fork"])
def test_mp_at_up_keeps_as_many_weights_as_up(lenet, options):
    model, grads = lenet
    for ratio in (20, 50):
        up = one_shot_masks(model, "up", ratio, grads=grads, options=options,
                            meta={"weight_decay": 5e-4})
        mp = one_shot_masks(model, "mp-at-up", ratio, grads=grads, options=options,
                            meta={"weight_decay": 5e-4})
        assert sum(mp.kept.values()) == sum(up.kept.values())
        assert mp.achieved_ratio == up.achieved_ratio and mp.requested_ratio == ratio
        magnitudes = torch.cat([p.detach().abs().reshape(-1) for p in prunable(model).values()])
        kept = torch.cat([m.reshape(-1) for m in mp.masks.values()])
        assert magnitudes[kept].min() >= magnitudes[~kept].max()  # MP's own top-k


def test_shrinkbench_keep_fraction_and_its_limit():
    assert shrinkbench_fraction(100, 80, 2) == pytest.approx((50 - 20) / 80)
    with pytest.raises(UnreachableRatioError, match="keep_rule = 'shrinkbench'.*below 5"):
        shrinkbench_fraction(100, 80, 5)


def test_shrinkbench_rule_refuses_biases_and_layer_scope(lenet):
    model, _ = lenet
    with pytest.raises(ValueError, match="never masks a bias"):
        PruneOptions(keep_rule="shrinkbench", prune_biases=True)
    with pytest.raises(ValueError, match="scope = 'global'"):
        one_shot_masks(model, "mp", 4, scope="layer", options=FORK)


def test_prune_model_zeroes_what_the_fork_rule_masks(lenet):
    model, grads = lenet
    clone = build_model("lenet5-shrinkbench", 10, 1, seed=3, image_size=28)
    res = prune_model(clone, "up", 10, grads=grads, options=FORK)
    for n, p in clone.named_parameters():
        if n in res.masks:
            assert bool((p[~res.masks[n]] == 0).all())
        else:
            assert torch.equal(p, dict(model.named_parameters())[n])  # biases, fc3 untouched
