"""A field added to job parameters or a recipe enters the job id only when it differs from its
default (open_lth's rule, issue 15 item 4); today's fields keep today's ids."""
from __future__ import annotations

import dataclasses

from prunescope.identity import ALWAYS, id_field, identity
from prunescope.study.plan import (PARAMS, GradientsParams, PruneFinetuneParams, job_id,
                                   params_from_dict)
from prunescope.train import Recipe


@dataclasses.dataclass(frozen=True)
class Knobs:
    required: int
    legacy: float = dataclasses.field(default=0.5, metadata=ALWAYS)
    new: str = "off"
    cond: int | None = id_field(None, when=lambda k: k.required > 1)


def test_identity_applies_the_rule_per_field():
    assert identity(Knobs(1)) == {"required": 1, "legacy": 0.5}
    assert identity(Knobs(1, new="on")) == {"required": 1, "legacy": 0.5, "new": "on"}
    assert identity(Knobs(2)) == {"required": 2, "legacy": 0.5, "cond": None}
    nested = identity(Recipe(schedule=((2, 0.1), (1, 0.01))))
    assert nested["schedule"] == [[2, 0.1], [1, 0.01]]


def test_recipe_identity_is_todays_dict_and_a_new_field_keeps_it():
    r = Recipe.paper("resnet56", finetune=True)
    # every field of the first recipe is hashed, default or not; restart_momentum (added later)
    # only when set
    assert identity(r) == {k: v for k, v in r.to_dict().items() if k != "restart_momentum"}
    assert identity(dataclasses.replace(r, restart_momentum=True))["restart_momentum"] is True

    @dataclasses.dataclass(frozen=True)
    class Recipe2(Recipe):
        label_smoothing: float = 0.0

    r2 = Recipe2(schedule=r.schedule, augment=True)
    assert identity(r2) == identity(r)
    assert identity(dataclasses.replace(r2, label_smoothing=0.1))["label_smoothing"] == 0.1


def test_a_new_job_parameter_keeps_the_id_at_its_default():
    r = Recipe.paper("lenet5", finetune=True)
    p = PruneFinetuneParams("a" * 64, "mp", 4.0, "global", r, 7)

    @dataclasses.dataclass(frozen=True)
    class Extended(PruneFinetuneParams):
        new_knob: int = 3

    def jid(x):
        return job_id({"kind": "prune_finetune", "version": 1, **identity(x)})

    same = Extended("a" * 64, "mp", 4.0, "global", r, 7)
    assert jid(same) == jid(p)
    assert jid(dataclasses.replace(same, new_knob=4)) != jid(p)
    # the conditional fields of today: absent at their defaults, present when set
    assert "prune_classifier" not in identity(p) and "gradients" not in identity(p)
    assert identity(dataclasses.replace(p, prune_classifier=True))["prune_classifier"] is True
    full = identity(GradientsParams("b" * 64, "full"))
    assert full == {"parent": "b" * 64, "mode": "full"}
    assert identity(GradientsParams("b" * 64, "shrinkbench", None, 128, 7)) == {
        "parent": "b" * 64, "mode": "shrinkbench", "n_batches": None, "batch_size": 128,
        "seed": 7}


def test_params_round_trip_through_the_hashed_dict():
    r = Recipe.paper("lenet5")
    p = PruneFinetuneParams("a" * 64, "gp", 10.0, "layer", r, 3, gradients="c" * 64)
    d = {"kind": "prune_finetune", "version": 1, **identity(p)}
    assert params_from_dict("prune_finetune", d) == p
    assert set(PARAMS) == {"train", "rewind", "gradients", "prune_finetune", "structured",
                           "lth_level", "evaluate", "source"}  # source: an audit's dense model


def test_every_shipped_job_is_rebuilt_exactly_from_its_hashed_dict():
    from pathlib import Path

    from prunescope.study import load_spec, make_plan

    studies = Path(__file__).resolve().parents[2] / "studies"
    kinds = set()
    for name in ("quick.toml", "modern.toml"):
        for job in make_plan(load_spec(studies / name)).jobs:
            assert type(job.args) is PARAMS[job.kind]
            assert {"kind": job.kind, "version": 1, **identity(job.args)} == job.params
            kinds.add(job.kind)
    assert kinds == set(PARAMS) - {"source"}  # source jobs come from audits (tests/test_audit.py)
