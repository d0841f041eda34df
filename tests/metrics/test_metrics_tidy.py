"""Tidy count frames (docs/architecture.md, metrics section)."""
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from prunescope.metrics import (
    KEY_COLUMNS,
    confusion_from_predictions,
    from_confusion,
    from_confusions,
    from_predictions,
    validate,
)

KEYS = dict(dataset="cifar10", arch="resnet20", method="mp", ratio=4, model=3)


def test_from_confusion_counts_rows_columns_diagonal():
    cm = np.array([[5, 1, 0], [2, 3, 1], [0, 4, 6]])
    f = from_confusion(cm, **KEYS)
    assert list(f.columns[:7]) == list(KEY_COLUMNS)
    assert f["support"].tolist() == [6, 6, 10]
    assert f["predicted"].tolist() == [7, 8, 7]
    assert f["correct"].tolist() == [5, 3, 6]
    assert f["cls"].tolist() == [0, 1, 2]
    assert (f["distribution"] == "nominal").all()
    assert f["ratio"].dtype == np.float64 and (f["ratio"] == 4.0).all()
    validate(f)


def test_extra_keys_pass_through_and_sit_before_counts():
    f = from_confusion(np.eye(2, dtype=int) * 3, **KEYS, distribution="gauss-3", level=2, seed=11)
    assert (f["level"] == 2).all() and (f["seed"] == 11).all()
    assert (f["distribution"] == "gauss-3").all()
    assert list(f.columns[-3:]) == ["support", "predicted", "correct"]


def test_from_predictions_matches_confusion():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 4, 200)
    p = np.where(rng.random(200) < 0.7, y, rng.integers(0, 4, 200))
    cm = confusion_from_predictions(y, p, 4)
    expected = pd.crosstab(y, p).reindex(index=range(4), columns=range(4), fill_value=0).to_numpy()
    np.testing.assert_array_equal(cm, expected)
    pd.testing.assert_frame_equal(from_predictions(y, p, 4, **KEYS), from_confusion(cm, **KEYS))


def test_from_confusions_stacks_models():
    cms = np.stack([np.eye(3, dtype=np.int64) * (g + 1) for g in range(4)])
    keys = pd.DataFrame({**{k: [v] * 4 for k, v in KEYS.items()}, "model": range(4)})
    f = from_confusions(cms, keys)
    assert len(f) == 12
    assert f.groupby("model")["support"].sum().tolist() == [3, 6, 9, 12]


@pytest.mark.parametrize("bad, msg", [
    (np.zeros((2, 3)), "shape"),
    (np.array([[1.5, 0], [0, 1]]), "whole numbers"),
    (np.array([[3, -1], [0, 1]]), ">= 0"),
])
def test_bad_confusions_are_rejected(bad, msg):
    with pytest.raises(ValueError, match=msg):
        from_confusion(bad, **KEYS)


def test_labels_out_of_range_are_rejected():
    with pytest.raises(ValueError, match="outside 0..2"):
        confusion_from_predictions(np.array([0, 3]), np.array([0, 1]), 3)


def test_validate_rejects_duplicates_missing_and_inconsistent_counts():
    f = from_confusion(np.eye(2, dtype=int), **KEYS)
    with pytest.raises(ValueError, match="duplicated key"):
        validate(pd.concat([f, f]))
    with pytest.raises(ValueError, match="lacks column"):
        validate(f.drop(columns="distribution"))
    g = f.copy()
    g.loc[0, "correct"] = 5
    with pytest.raises(ValueError, match="correct exceeds"):
        validate(g)


def test_metrics_and_stats_do_not_import_torch():
    code = ("import sys, prunescope.metrics, prunescope.stats; "
            "assert 'torch' not in sys.modules, 'torch was imported'")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_f1_is_the_count_identity_wherever_the_class_is_present():
    """SPEC 2: F = 2PR/(P+R) = 2 correct / (support + predicted). A present class that is never
    predicted has R = 0 and P = 0/0: F = 0, the limit of 2PR/(P+R) at R = 0 for any P (precision
    itself stays NaN); a predicted but never-hit class has P = R = 0 and F = 0; a class absent
    from the test set (support 0, recall undefined) has no F."""
    from prunescope.metrics import ImbalanceWarning, per_class

    cm = np.array([[5, 5, 0], [0, 10, 0], [0, 10, 0]])  # class 2 never predicted, class 0 ok
    t = from_confusion(cm, dataset="d", arch="a", method="dense", ratio=1.0, model=0)
    f = per_class(t, "f1").set_index("cls")["value"]
    assert f[2] == 0.0
    assert np.isnan(per_class(t, "precision").set_index("cls")["value"][2])
    assert f[0] == pytest.approx(2 * 5 / (10 + 5))
    absent = np.array([[5, 5, 0], [0, 10, 0], [0, 0, 0]])  # class 2 absent and never predicted
    with pytest.warns(ImbalanceWarning):
        fa = per_class(from_confusion(absent, dataset="d", arch="a", method="dense", ratio=1.0,
                                      model=0), "f1").set_index("cls")["value"]
    assert np.isnan(fa[2]) and fa[1] == pytest.approx(2 * 10 / (10 + 15))
    cm2 = np.array([[0, 10], [5, 5]])  # class 0 predicted 5 times, never right
    f2 = per_class(from_confusion(cm2, dataset="d", arch="a", method="dense", ratio=1.0,
                                  model=0), "f1").set_index("cls")["value"]
    assert f2[0] == 0.0
