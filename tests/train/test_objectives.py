"""Fine-tuning objectives (issue 26): kd at weight 0 is cross-entropy bitwise; the multipliers
of the constrained objectives rise under a violation and stay at zero where it holds; packs
train each model with its own dense parent."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from prunescope.catalog import objectives as registry
from prunescope.models import build_model
from prunescope.train import Recipe, fit
from prunescope.train.objectives import DenseReference, build_objective, dense_reference
from prunescope.train.pack import fit_pack

RECIPE = Recipe(schedule=((1, 0.05), (1, 0.01)), batch_size=48, max_steps_per_epoch=3)


def _state(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_kd_weight_zero_is_cross_entropy_bitwise(quadrants):
    train, val = quadrants
    dense = build_model("lenet5", 4, 1, seed=5)
    fit(dense, train, val, RECIPE, seed=1)
    plain, distilled = build_model("lenet5", 4, 1, seed=3), build_model("lenet5", 4, 1, seed=3)
    ref = fit(plain, train, val, RECIPE, seed=17)
    kd = build_objective("kd", {"weight": 0.0}, [dense_reference("kd", dense, train, 4)])
    res = fit(distilled, train, val, RECIPE, seed=17, objective=kd)
    a, b = _state(plain), _state(distilled)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert [h["val_loss"] for h in ref.history] == [h["val_loss"] for h in res.history]


def test_kd_weight_changes_the_result(quadrants):
    """The teacher term is not a no-op: weight 0.9 ends elsewhere than cross-entropy."""
    train, val = quadrants
    dense = build_model("lenet5", 4, 1, seed=5)
    fit(dense, train, val, RECIPE, seed=1)
    plain, distilled = build_model("lenet5", 4, 1, seed=3), build_model("lenet5", 4, 1, seed=3)
    fit(plain, train, val, RECIPE, seed=17)
    fit(distilled, train, val, RECIPE, seed=17,
        objective=build_objective("kd", None, [dense_reference("kd", dense, train, 4)]))
    assert not torch.equal(plain.classifier.weight, distilled.classifier.weight)


class _Fixed(nn.Module):
    """Logits from a learnable table indexed by nothing: every input gets ``bias``."""

    def __init__(self, bias):
        super().__init__()
        self.bias = nn.Parameter(torch.tensor(bias, dtype=torch.float32))

    def forward(self, x):
        return self.bias.expand(x.shape[0], -1)


def _step(name, options, logits_row, y, refs):
    """One loss call on a batch whose every image gets ``logits_row``; the multipliers."""
    loss = build_objective(name, options, refs)
    k = len(logits_row)
    logits = torch.tensor(logits_row, dtype=torch.float32).expand(1, len(y), k).clone()
    logits.requires_grad_(True)
    out = loss(logits, torch.tensor([y]), torch.zeros(1, len(y), 1, 1, 1))
    out.backward()
    return loss.multipliers[0], out


@pytest.mark.parametrize("name", ["equalized-loss", "ceag"])
def test_multipliers_rise_under_a_violation(name):
    """The model predicts class 0 for everything: class 1 has the larger loss (equalized loss)
    and loses all its accuracy while the dense parent had all of it (CEAG)."""
    refs = [DenseReference(class_accuracy=np.array([1.0, 1.0]), accuracy=1.0)]
    lam, _ = _step(name, {"dual_lr": 0.5}, [3.0, -3.0], [0, 0, 1, 1], refs)
    assert lam[1] > 0
    if name == "ceag":  # gap 1 - 0.5 - tolerance 0.01 = 0.49, times dual_lr 0.5
        assert lam[1].item() == pytest.approx(0.5 * 0.49)
        assert lam[0].item() == 0.0  # class 0's gap 0 - 0.5 < tolerance: projected to 0
    else:  # equality: class 0's loss is below the mean, its multiplier goes negative
        assert lam[0] < 0


@pytest.mark.parametrize("name", ["equalized-loss", "ceag"])
def test_multipliers_stay_zero_when_the_constraint_holds(name):
    """Every image right with a huge margin: every class loss is 0.0 exactly, equal to the
    mean, and every class keeps the dense parent's accuracy."""
    refs = [DenseReference(class_accuracy=np.array([1.0, 1.0]), accuracy=1.0)]
    lam, _ = _step(name, {"dual_lr": 0.5}, [200.0, -200.0], [0, 0, 0], refs)
    assert torch.equal(lam, torch.zeros(2))
    loss = build_objective(name, {"dual_lr": 0.5}, refs)
    logits = torch.tensor([[[200.0, -200.0], [-200.0, 200.0]]])
    for _ in range(3):
        loss(logits, torch.tensor([[0, 1]]), torch.zeros(1, 2, 1, 1, 1))
    assert torch.equal(loss.multipliers, torch.zeros(1, 2))


def test_multipliers_push_the_gradient_toward_the_violated_class():
    """After the multiplier rose, the primal gradient raises class 1's logit more than CE."""
    refs = [DenseReference(class_accuracy=np.array([1.0, 1.0]), accuracy=1.0)]
    y = torch.tensor([[0, 0, 1, 1]])
    grads = {}
    for name in ("ce", "ceag"):
        logits = torch.tensor([3.0, -3.0]).expand(1, 4, 2).clone().requires_grad_(True)
        build_objective(name, {"dual_lr": 5.0} if name == "ceag" else None, refs)(
            logits, y, torch.zeros(1, 4, 1, 1, 1)).backward()
        grads[name] = logits.grad[0, 2:, 1].sum().item()
    assert grads["ceag"] < grads["ce"] < 0  # descent raises class 1's logit, CEAG more


def test_objective_options_are_checked():
    with pytest.raises(ValueError, match="has no option 'tau'"):
        registry.objective("kd").resolve({"tau": 2})
    with pytest.raises(ValueError, match="finite number"):
        registry.objective("ceag").resolve({"tolerance": float("nan")})
    assert registry.objective("kd").resolve(None) == {"temperature": 4.0, "weight": 0.9}


@pytest.mark.parametrize("name", ["kd", "ceag"])
def test_pack_of_one_equals_fit_with_an_objective(quadrants, name):
    """A pack of one with an objective ends bitwise where ``fit`` ends (CPU), so packs and single
    fits run the same objective."""
    train, val = quadrants
    dense = build_model("lenet5", 4, 1, seed=5)
    fit(dense, train, val, RECIPE, seed=1)
    ref = dense_reference(name, dense, train, 4)
    solo, packed = build_model("lenet5", 4, 1, seed=3), build_model("lenet5", 4, 1, seed=3)
    fit(solo, train, val, RECIPE, seed=17, objective=build_objective(name, None, [ref]))
    fit_pack([packed], train, val, RECIPE, seeds=[17],
             objective=build_objective(name, None, [ref], stacked=True))
    a, b = _state(solo), _state(packed)
    assert all(torch.equal(a[k], b[k]) for k in a)
