"""finetune_objectives and [objective_options] in a study spec (issue 26)."""
from __future__ import annotations

import pytest

from prunescope.study import SpecError, make_plan, parse_spec

BASE = """
name = "t"
models = 2
[[grid]]
datasets = ["fashion-mnist"]
architectures = ["lenet5-shrinkbench"]
methods = ["mp"]
ratios = [20.0]
{objectives}
[[grid]]
datasets = ["fashion-mnist"]
architectures = ["lenet5-shrinkbench"]
methods = ["up"]
ratios = [20.0]
{extra}
"""


def _plan(objectives="", extra=""):
    return make_plan(parse_spec(BASE.format(objectives=objectives, extra=extra)))


def _pruned(plan):
    return {(j.method, j.objective): j for j in plan.jobs if j.kind == "prune_finetune"}


def test_ce_keeps_the_ids_and_objectives_are_per_method():
    plain = _pruned(_plan())
    listed = _pruned(_plan('finetune_objectives = ["ce"]'))
    assert {k: j.id for k, j in plain.items()} == {k: j.id for k, j in listed.items()}
    both = _pruned(_plan('finetune_objectives = ["ce", "kd", "ceag"]'))
    assert set(both) == {("mp", "ce"), ("mp", "kd"), ("mp", "ceag"), ("up", "ce")}
    assert both[("mp", "ce")].id == plain[("mp", "ce")].id
    assert "objective" not in both[("mp", "ce")].params
    assert both[("mp", "kd")].params["objective_options"] == [["temperature", 4.0],
                                                               ["weight", 0.9]]
    evals = [j for j in _plan('finetune_objectives = ["ce", "kd"]').jobs if j.kind == "evaluate"]
    assert {j.objective for j in evals} == {"ce", "kd"}


def test_objective_options_change_the_id():
    a = _pruned(_plan('finetune_objectives = ["kd"]'))[("mp", "kd")]
    b = _pruned(_plan('finetune_objectives = ["kd"]',
                      "[objective_options.kd]\nweight = 0.5"))[("mp", "kd")]
    assert a.id != b.id and ["weight", 0.5] in b.params["objective_options"]


@pytest.mark.parametrize("objectives,extra,words", [
    ('finetune_objectives = ["xx"]', "", "finetune_objectives"),
    ('finetune_objectives = []', "", "finetune_objectives"),
    ("", "[objective_options.kd]\ntau = 2", "has no option 'tau'"),
    ("", "[objective_options.nope]\nweight = 2", "objective_options"),
])
def test_bad_objectives_are_one_line_errors(objectives, extra, words):
    with pytest.raises(SpecError, match=words) as e:
        _plan(objectives, extra)
    assert "\n" not in str(e.value)
