"""A tiny long-tailed study end to end (issue 17): imbalanced training split on real MNIST,
counts stored with each model, PIEs from the stored predictions, the report's sections."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from prunescope.data import load
from prunescope.metrics.underrepresented import pie_mask
from prunescope.study import load_results, parse_spec, run_study
from prunescope.study.results import load_exemplars, read_predictions, training_splits

from .conftest import mnist_available

TINY_LT = """
name = "tiny-lt"
seed = 3
models = 3
ratios = [4]
n_val = 100
test_subset = 400
[[grid]]
datasets = ["mnist"]
architectures = ["lenet5"]
methods = ["mp"]
[[grid]]
datasets = ["mnist"]
architectures = ["lenet5"]
methods = ["mp"]
imbalance = { ratio = 20 }
[train]
schedule = [[1, 0.05]]
max_steps_per_epoch = 12
[finetune]
schedule = [[1, 0.01]]
max_steps_per_epoch = 2
[executor]
threads = 1
"""


@pytest.fixture(scope="module")
def lt_study(tmp_path_factory):
    if not mnist_available():
        pytest.skip("MNIST is not cached: run `prunescope data fetch mnist`")
    folder = tmp_path_factory.mktemp("lt")
    spec = parse_spec(TINY_LT, base_dir=folder)
    run_study(spec)
    return spec, load_results(spec)


def test_models_are_trained_on_the_recorded_imbalanced_split(lt_study):
    spec, res = lt_study
    train = res.jobs[res.jobs["kind"] == "train"]
    assert set(train["dataset"]) == {"mnist", "mnist-lt20"}
    lt = train[train["dataset"] == "mnist-lt20"]
    counts = np.array(lt["params"].iloc[0]["imbalance"]["counts"])
    assert counts[0] == 5421 and counts[-1] == int(5421 / 20)
    for info in lt["info"]:
        got = np.array(info["train_counts"])        # after the stratified hold-out of 100
        assert got.sum() == counts.sum() - 100 and (got <= counts).all()
        assert got[0] > 10 * got[-1]
    bal = train[train["dataset"] == "mnist"]["info"].iloc[0]["train_counts"]
    assert sum(bal) == 60000 - 100
    splits = training_splits(spec)
    pd.testing.assert_frame_equal(res.training_splits, splits)  # what `prunescope report` draws
    assert splits.loc[splits["dataset"] == "mnist-lt20", "train_count"].tolist() == counts.tolist()


def test_exemplars_match_a_direct_computation(lt_study):
    spec, res = lt_study
    ex = load_exemplars(res, gallery=5)
    pd.testing.assert_frame_equal(res.exemplars.summary, ex.summary)  # the report's default
    assert set(ex.summary["dataset"]) == {"mnist", "mnist-lt20"}
    ev = res.jobs[(res.jobs["kind"] == "evaluate") & (res.jobs["dataset"] == "mnist-lt20")]
    dense = np.stack([read_predictions(a["predictions"])
                      for a in ev[ev["method"] == "dense"]["artifacts"]])
    pruned = np.stack([read_predictions(a["predictions"])
                       for a in ev[ev["method"] == "mp"]["artifacts"]])
    is_pie, _, _ = pie_mask(dense, pruned, 10)
    row = ex.summary[ex.summary["dataset"] == "mnist-lt20"].iloc[0]
    assert row["n_pies"] == is_pie.sum() and row["n_images"] == 400
    assert row["n_dense"] == 3 and row["n_pruned"] == 3
    imgs = ex.images[ex.images["dataset"] == "mnist-lt20"]
    assert len(imgs) == is_pie.sum()
    test = load("mnist", "test")
    assert (test.y[imgs["index"].to_numpy()] == imgs["label"].to_numpy()).all()
    assert (imgs["dense_label"] != imgs["pruned_label"]).all()
    shares = ex.per_class.groupby(["dataset"])["share"].sum()
    for d, s in shares.items():
        n = ex.summary.loc[ex.summary["dataset"] == d, "n_pies"].iloc[0]
        assert (s == pytest.approx(1.0)) if n else np.isnan(s) or s == 0


def test_report_has_longtail_and_pie_sections(lt_study, tmp_path):
    from prunescope.report import render_report

    spec, res = lt_study
    page = render_report(res.frame, tmp_path, spec_text=res.spec_text, study_name="lt",
                         training_splits=training_splits(spec), exemplars=load_exemplars(res))
    text = page.read_text()
    assert 'id="longtail"' in text and 'id="pies"' in text
    pies = pd.read_csv(tmp_path / "tables" / "pies.csv")
    assert set(pies.columns) >= {"dataset", "method", "ratio", "index", "label", "dense_label",
                                 "pruned_label"}
    slopes = pd.read_csv(tmp_path / "tables" / "longtail_slopes.csv")
    assert list(slopes["dataset"].unique()) == ["mnist-lt20"]
    assert slopes["n"].iloc[0] == 3
    tests = pd.read_csv(tmp_path / "tables" / "longtail_tests.csv")
    assert tests["comparison"].tolist() == ["mnist-lt20 vs balanced"]
    assert 0 <= tests["p_corrected"].iloc[0] <= 1
