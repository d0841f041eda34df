"""PIEs on constructed cases with known modes, and the count slope (issue 17)."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from prunescope.metrics.underrepresented import (accuracy_on, count_slopes, modal_labels,
                                                 pie_class_share, pie_mask)


def test_modal_label_and_tie_break_to_smallest_class():
    preds = np.array([[0, 1, 2, 3],
                      [0, 2, 2, 1],
                      [1, 2, 0, 3]])
    # image 0: 0,0,1 -> 0; image 1: 1,2,2 -> 2; image 2: 2,2,0 -> 2; image 3: 3,1,3 -> 3
    assert modal_labels(preds, 4).tolist() == [0, 2, 2, 3]
    tie = np.array([[3, 1], [1, 3]])          # every image a 1-1 tie
    assert modal_labels(tie, 4).tolist() == [1, 1]


def test_pies_follow_hookers_definition():
    dense = np.array([[0, 1, 2, 1, 0],
                      [0, 1, 2, 2, 0],
                      [0, 1, 1, 1, 0]])       # modes 0, 1, 2, 1, 0
    pruned = np.array([[0, 2, 2, 1, 1],
                       [0, 2, 1, 1, 1],
                       [1, 1, 2, 1, 0]])      # modes 0, 2, 2, 1, 1
    is_pie, d, p = pie_mask(dense, pruned, 3)
    assert d.tolist() == [0, 1, 2, 1, 0] and p.tolist() == [0, 2, 2, 1, 1]
    assert is_pie.tolist() == [False, True, False, False, True]
    # one model disagreeing does not make a PIE when the mode holds (image 0)
    y = np.array([0, 1, 2, 1, 2])
    assert pie_class_share(is_pie, y, 3).tolist() == [0.0, 0.5, 0.5]
    assert np.isnan(pie_class_share(np.zeros(5, bool), y, 3)).all()
    acc = accuracy_on(dense, y, is_pie)           # on images 1 and 4
    assert acc.tolist() == [0.5, 0.5, 0.5]


def test_pie_shapes_must_match():
    with pytest.raises(ValueError, match="same N"):
        pie_mask(np.zeros((2, 5), int), np.zeros((2, 4), int), 3)
    with pytest.raises(ValueError, match="0..2"):
        modal_labels(np.array([[3]]), 3)


def test_count_slope_recovers_a_linear_loss_of_balance():
    counts = np.array([1000, 100, 10])
    rows = []
    for model, slope in ((0, -0.2), (1, -0.1)):
        for c, n in enumerate(counts):
            before = 0.1 * (c - 1)
            after = before + slope * np.log10(n) + 0.3
            rows.append(dict(dataset="d-lt100", arch="a", method="mp", ratio=10.0, model=model,
                             distribution="nominal", cls=c, Bn_before=before, Bn_after=after))
    slopes = count_slopes(pd.DataFrame(rows),
                          pd.DataFrame({"dataset": "d-lt100", "cls": [0, 1, 2],
                                        "train_count": counts}))
    assert slopes["slope"].tolist() == pytest.approx([-0.2, -0.1])
    assert slopes["n_classes"].tolist() == [3, 3]


def test_count_slope_is_undefined_when_counts_do_not_vary():
    rows = [dict(dataset="d", arch="a", method="mp", ratio=2.0, model=0, distribution="nominal",
                 cls=c, Bn_before=0.1 * c, Bn_after=0.2 * c) for c in range(3)]
    out = count_slopes(pd.DataFrame(rows), pd.DataFrame({"dataset": "d", "cls": [0, 1, 2],
                                                         "train_count": [50, 50, 50]}))
    assert np.isnan(out["slope"].iloc[0])
