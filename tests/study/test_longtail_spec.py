"""Long-tailed studies (issue 17): the [imbalance] table, per-cell splits, job ids and labels."""
from __future__ import annotations

from pathlib import Path

import pytest

from prunescope.study import SpecError, parse_spec
from prunescope.study.plan import make_plan
from prunescope.study.results import training_splits

STUDIES = Path(__file__).resolve().parents[2] / "studies"

BASE = """
name = "t"
models = 2
n_val = 500
datasets = ["fashion-mnist"]
architectures = ["lenet5"]
methods = ["mp"]
ratios = [2]
"""


def _ids(spec, kind):
    return {j.id for j in make_plan(spec).jobs if j.kind == kind}


def test_top_level_imbalance_enters_train_ids_with_its_counts(tmp_path):
    bal = parse_spec(BASE, base_dir=tmp_path)
    lt = parse_spec(BASE + "[imbalance]\nratio = 10\n", base_dir=tmp_path)
    assert lt.cells[0].imbalance.ratio == 10 and lt.cells[0].imbalance.profile == "exponential"
    assert lt.cells[0].label == "fashion-mnist-lt10"
    train = [j for j in make_plan(lt).jobs if j.kind == "train"]
    assert train[0].params["imbalance"]["counts"][0] == 6000
    assert train[0].params["imbalance"]["counts"][-1] == 600
    assert train[0].imbalance == "lt10"
    assert _ids(bal, "train").isdisjoint(_ids(lt, "train"))
    # every downstream job changes with its parent
    assert _ids(bal, "evaluate").isdisjoint(_ids(lt, "evaluate"))


def test_ratio_one_is_the_balanced_split_with_unchanged_ids(tmp_path):
    bal = parse_spec(BASE, base_dir=tmp_path)
    one = parse_spec(BASE + "[imbalance]\nratio = 1\n", base_dir=tmp_path)
    assert one.cells[0].imbalance is None
    assert {j.id for j in make_plan(bal).jobs} == {j.id for j in make_plan(one).jobs}


def test_seed_and_profile_change_the_ids(tmp_path):
    a = parse_spec(BASE + "[imbalance]\nratio = 10\n", base_dir=tmp_path)
    b = parse_spec(BASE + "[imbalance]\nratio = 10\nseed = 1\n", base_dir=tmp_path)
    c = parse_spec(BASE + "[imbalance]\nratio = 10\nprofile = 'step'\n", base_dir=tmp_path)
    assert len({frozenset(_ids(s, "train")) for s in (a, b, c)}) == 3
    assert c.cells[0].label == "fashion-mnist-step10"


def test_grid_cells_with_different_splits_stay_separate(tmp_path):
    spec = parse_spec((STUDIES / "longtail.toml").read_text(), base_dir=STUDIES)
    assert [c.label for c in spec.cells] == ["fashion-mnist", "fashion-mnist-lt10",
                                             "fashion-mnist-lt100"]
    plan = make_plan(spec)
    trains = [j for j in plan.jobs if j.kind == "train"]
    assert len(trains) == 3 * spec.models
    splits = training_splits(spec)
    lt100 = splits[splits["dataset"] == "fashion-mnist-lt100"]
    assert lt100["train_count"].tolist() == [int(6000 * 100 ** (-c / 9)) for c in range(10)]
    assert set(splits["imbalance_ratio"]) == {1.0, 10.0, 100.0}


@pytest.mark.parametrize("extra, key", [
    ("[imbalance]\nratio = 0.5\n", "imbalance.ratio"),
    ("[imbalance]\nratio = 7000\n", "imbalance.ratio"),
    ("[imbalance]\nratio = 10\nprofile = 'linear'\n", "imbalance.profile"),
    ("[imbalance]\nratio = 10\nseed = -1\n", "imbalance.seed"),
    ("[imbalance]\nratio = 10\nbogus = 1\n", "imbalance.bogus"),
    ("[imbalance]\nprofile = 'step'\n", "imbalance.ratio"),
])
def test_bad_imbalance_is_refused_naming_the_key(tmp_path, extra, key):
    with pytest.raises(SpecError, match=key.replace(".", r"\.")):
        parse_spec(BASE + extra, base_dir=tmp_path)


def test_hold_out_must_fit_the_imbalanced_split(tmp_path):
    text = BASE.replace("n_val = 500", "n_val = 15000") + "[imbalance]\nratio = 100\n"
    with pytest.raises(SpecError, match="n_val.*imbalanced training split"):
        parse_spec(text, base_dir=tmp_path)
