"""The paper-code protocol's keys in a study file (SPEC 8, issue 25): defaults keep every job id,
each non-default enters only the ids it changes, and combinations the authors' rule cannot
express are refused in one line naming the key."""
from __future__ import annotations

import pytest

from prunescope.catalog.protocol import PruneOptions
from prunescope.study import SpecError, parse_spec
from prunescope.study.plan import make_plan

BASE = """
name = "t"
models = 1
ratios = [10]
[[grid]]
datasets = ["fashion-mnist"]
architectures = ["lenet5-shrinkbench"]
methods = ["mp", "up"]
"""


def _ids(text, tmp_path):
    return {(j.kind, j.method if j.kind == "prune_finetune" else None,
             j.ratio if j.kind == "prune_finetune" else None): j
            for j in make_plan(parse_spec(text, base_dir=tmp_path)).jobs if j.kind != "evaluate"}


def test_pruning_options_enter_pruned_ids_and_training_options_dense_ids(tmp_path):
    """Each non-default pruning option enters the id of every one-shot job of its cell (MP's
    too: the options travel as one value), never a train or gradients job's; the training
    options enter the dense model's id, and so every id below it."""
    base = _ids(BASE, tmp_path)
    pruned = _ids('keep_rule = "shrinkbench"\nup_score = "signed-5e-4"\nrp_count = "binomial"\n'
                  + BASE, tmp_path)
    assert pruned[("train", None, None)].id == base[("train", None, None)].id
    assert pruned[("gradients", None, None)].id == base[("gradients", None, None)].id
    for m in ("mp", "up"):
        job = pruned[("prune_finetune", m, 10.0)]
        assert job.id != base[("prune_finetune", m, 10.0)].id
        assert job.params["keep_rule"] == "shrinkbench" and job.args.options == PruneOptions(
            keep_rule="shrinkbench", up_score="signed-5e-4", rp_count="binomial")
    assert "keep_rule" not in base[("prune_finetune", "mp", 10.0)].params
    trained = _ids('validation = "test"\nnormalisation = "fork"\n' + BASE, tmp_path)
    train = trained[("train", None, None)]
    assert train.id != base[("train", None, None)].id
    assert (train.params["n_val"], train.params["validation"], train.params["normalisation"]) == (
        0, "test", "fork")
    assert "validation" not in base[("train", None, None)].params


def test_grid_entries_set_the_mask_rule_per_cell(tmp_path):
    text = BASE + """
[[grid]]
datasets = ["mnist"]
architectures = ["lenet5-shrinkbench"]
methods = ["mp"]
keep_rule = "shrinkbench"
"""
    spec = parse_spec(text, base_dir=tmp_path)
    assert [c.pruning.keep_rule for c in spec.cells] == ["exact", "shrinkbench"]
    clash = text + """
[[grid]]
datasets = ["mnist"]
architectures = ["lenet5-shrinkbench"]
methods = ["up"]
"""
    with pytest.raises(SpecError, match=r"grid\[2\]\.keep_rule.*one prunable set and mask rule"):
        parse_spec(clash, base_dir=tmp_path)


@pytest.mark.parametrize("extra, key", [
    ('keep_rule = "shrinkbench"\nprune_biases = true\n', "prune_biases"),
    ('keep_rule = "shrinkbench"\nscope = "layer"\n', "keep_rule"),
    ('up_score = "signed"\n', "up_score"),
    ('validation = "val"\n', "validation"),
])
def test_refused_combinations_name_their_key(tmp_path, extra, key):
    with pytest.raises(SpecError, match=key):
        parse_spec(extra + BASE, base_dir=tmp_path)


def test_shrinkbench_ratio_limit_and_fork_normalisation_datasets(tmp_path):
    # the LeNet's classifier (850 parameters) is all that stays outside the prunable layers
    with pytest.raises(SpecError, match="keep_rule = 'shrinkbench'.*below 70.6"):
        parse_spec('keep_rule = "shrinkbench"\n' + BASE.replace("[10]", "[71]"),
                   base_dir=tmp_path)
    assert parse_spec('keep_rule = "shrinkbench"\n' + BASE.replace("[10]", "[70]"),
                      base_dir=tmp_path)
    assert parse_spec('normalisation = "fork"\n' + BASE.replace('"fashion-mnist"', '"cifar100"')
                      .replace('"lenet5-shrinkbench"', '"resnet20"'), base_dir=tmp_path)
