"""Recipes of SPEC 4 (schedules, optimiser settings) and their JSON form."""
import json

import pytest

from prunescope.train import Recipe


def test_paper_resnet_schedule_spec4():
    r = Recipe.paper_resnet()
    assert r.schedule == ((10, 0.01), (20, 0.1), (10, 0.01), (10, 0.001), (10, 0.0001))
    assert r.epochs == 60 and r.augment and r.nesterov
    assert (r.momentum, r.batch_size, r.weight_decay) == (0.9, 128, 5e-4)
    lrs = [r.lr_at(e) for e in range(60)]
    assert lrs[9] == 0.01 and lrs[10] == 0.1 and lrs[29] == 0.1 and lrs[30] == 0.01
    assert lrs[49] == 0.001 and lrs[59] == 0.0001


def test_paper_finetune_and_lenet_spec4():
    f = Recipe.paper_resnet_finetune()
    assert f.schedule == ((10, 0.1), (5, 0.01), (5, 0.001), (5, 0.0001)) and f.epochs == 25
    lenet = Recipe.paper_lenet()
    assert lenet.schedule == ((30, 0.01),) and lenet.batch_size == 128 and not lenet.augment
    assert Recipe.paper_lenet_finetune().epochs == 15
    assert Recipe.paper("resnet56", finetune=True) == f
    assert Recipe.paper("lenet5") == lenet


def test_with_epochs_scales_proportionally():
    r = Recipe.paper_resnet()
    assert r.with_epochs(6).schedule == ((1, 0.01), (2, 0.1), (1, 0.01), (1, 0.001), (1, 0.0001))
    assert r.with_epochs(60) == r
    assert r.with_epochs(3).epochs == 3
    assert r.with_epochs(120).schedule[1] == (40, 0.1)
    assert Recipe.paper_lenet().with_epochs(2).schedule == ((2, 0.01),)


def test_dict_round_trip_is_json_and_exact():
    r = Recipe.paper_resnet().with_epochs(7)
    d = json.loads(json.dumps(r.to_dict()))
    assert Recipe.from_dict(d) == r
    assert d["weight_decay"] == 5e-4 and d["schedule"][0] == [1, 0.01]


def test_validation_errors_are_clear():
    with pytest.raises(ValueError, match="unknown Recipe keys"):
        Recipe.from_dict({"schedule": [[1, 0.1]], "lr": 0.1})
    with pytest.raises(ValueError, match="schedule is empty"):
        Recipe(schedule=())
    with pytest.raises(ValueError, match="epochs must be >= 1"):
        Recipe(schedule=((0, 0.1),))
    with pytest.raises(ValueError, match="nesterov"):
        Recipe(schedule=((1, 0.1),), momentum=0.0)
    with pytest.raises(ValueError, match="outside"):
        Recipe.paper_lenet().lr_at(30)
    with pytest.raises(ValueError, match="no paper recipe"):
        Recipe.paper("vgg16")
