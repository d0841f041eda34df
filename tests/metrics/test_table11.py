"""The paper's Table 11 statistic as the authors' code computes it (SPEC 8) and the notice of
methods compared at unmatched achieved ratios (issue 25)."""
import numpy as np
import pandas as pd
import pytest

from prunescope.analysis.cells import unmatched_ratios
from prunescope.metrics import correct_share_variance, from_confusion, model_alpha, intensification


def _diag(correct, support):
    """Confusion with the given diagonal and class sizes; errors go to the next class."""
    c = len(correct)
    cm = np.zeros((c, c), dtype=np.int64)
    for i, (k, n) in enumerate(zip(correct, support)):
        cm[i, i] = k
        cm[i, (i + 1) % c] += n - k
    return cm


def test_table11_is_the_sample_variance_of_correct_over_1000():
    correct, support = [980, 1100, 870, 1000], [1000, 1135, 892, 1010]
    frame = from_confusion(_diag(correct, support), dataset="mnist", arch="a", method="dense",
                           ratio=1.0, model=0, distribution="nominal")
    got = correct_share_variance(frame)
    assert len(got) == 1
    assert got["table11_var"].iloc[0] == pytest.approx(np.var(np.array(correct) / 1000, ddof=1),
                                                       rel=1e-14)


def test_table11_equals_recall_variance_with_1000_images_per_class_only():
    correct = [990, 950, 900, 700]
    dense = from_confusion(_diag([1000] * 4, [1000] * 4), dataset="f", arch="a", method="dense",
                           ratio=1.0, model=0, distribution="nominal")
    pruned = from_confusion(_diag(correct, [1000] * 4), dataset="f", arch="a", method="mp",
                            ratio=2.0, model=0, distribution="nominal")
    frame = pd.concat([dense, pruned], ignore_index=True)
    var_after = model_alpha(intensification(frame))["var_after"].iloc[0]  # ddof 0
    t11 = correct_share_variance(frame).set_index("method")["table11_var"]["mp"]
    assert t11 == pytest.approx(var_after * 4 / 3, rel=1e-12)
    # MNIST's class sizes: the class-size spread dominates the recall spread
    sizes = [980, 1135, 1032, 1010]
    same_recall = from_confusion(_diag([round(0.99 * n) for n in sizes], sizes), dataset="mnist",
                                 arch="a", method="dense", ratio=1.0, model=0,
                                 distribution="nominal")
    recall = np.array([round(0.99 * n) / n for n in sizes])
    assert correct_share_variance(same_recall)["table11_var"].iloc[0] > 100 * np.var(recall, ddof=1)


def _alphas(achieved):
    return pd.DataFrame([dict(dataset="f", arch="a", method=m, ratio=r, model=i,
                              achieved_ratio=a)
                         for (m, r), a in achieved.items() for i in range(3)])


def test_unmatched_ratios_warns_beyond_two_percent_only():
    close = _alphas({("mp", 20.0): 20.0, ("up", 20.0): 20.3})
    assert unmatched_ratios(close) == []
    far = _alphas({("mp", 20.0): 18.6, ("up", 20.0): 12.1, ("mp-at-up", 20.0): 12.1,
                   ("mp", 50.0): 50.0})
    (notice,) = unmatched_ratios(far)
    assert "stated ratio 20" in notice and "mp 18.6" in notice and "up 12.1" in notice
    assert unmatched_ratios(far.drop(columns="achieved_ratio")) == []
