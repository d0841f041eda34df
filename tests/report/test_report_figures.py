"""Figure-level readability rules of the report (SPEC 6: figures readable when printed)."""
import matplotlib

matplotlib.use("Agg")

import numpy as np
import pandas as pd

from prunescope.report import figures


def _alphas(values_at_50: list[float]) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    rows = [{"ratio": r, "method": "mp", "model": m, "alpha": 1.0 + 0.2 * rng.normal()}
            for r in (2.0, 10.0) for m in range(5)]
    rows += [{"ratio": 50.0, "method": "mp", "model": m, "alpha": a} for m, a in enumerate(values_at_50)]
    return pd.DataFrame(rows)


def test_alpha_axis_turns_symlog_only_when_a_collapsed_cell_would_squash_the_rest():
    ordinary = figures.alpha_boxplots(_alphas([1.1, 1.3, 0.9, 1.2, 1.0]), None, "method", "t")
    assert ordinary.axes[0].get_yscale() == "linear"
    collapsed = figures.alpha_boxplots(_alphas([80.0, 95.0, 60.0, 170.0, 50.0]), None, "method", "t")
    ax = collapsed.axes[0]
    assert ax.get_yscale() == "symlog" and "symlog" in ax.get_ylabel()
    lo, hi = ax.get_ylim()
    assert lo < 1.0 and hi >= 170.0  # every point stays on the axis


def test_scatter_panels_have_their_own_limits():
    """One collapsed row must not set the limits of the informative rows (SPEC 6 scatter)."""
    rng = np.random.default_rng(1)
    pts = []
    for ratio, scale in ((2.0, 0.02), (50.0, 8.0)):
        for m in range(3):
            before = rng.normal(0, 0.02, 10)
            pts += [{"ratio": ratio, "method": "mp", "Bn_before": b, "Bn_after": b * scale / 0.02 * 0.5}
                    for b in before]
    points = pd.DataFrame(pts)
    pooled = pd.DataFrame({"ratio": [2.0, 50.0], "method": ["mp", "mp"], "alpha_hat": [0.5, 200.0],
                           "r2": [1.0, 1.0], "A_bar": [0.98, 0.11]})
    fig = figures.scatter_matrix(points, pooled, "method", "t")
    top, bottom = fig.axes[0], fig.axes[1]
    assert np.ptp(top.get_ylim()) < 0.2 < np.ptp(bottom.get_ylim())


def test_collapsed_cells_are_named_in_a_notice():
    """A pruned model that predicts one class for everything is flagged, a working one is not."""
    from prunescope import metrics
    from prunescope.report.render import analyse

    rng = np.random.default_rng(2)
    frames = []
    for m in range(3):
        dense = np.diag(rng.integers(80, 95, 10)) + 1
        frames.append(metrics.from_confusion(dense, dataset="mnist", arch="lenet5", method="dense",
                                             ratio=1.0, model=m))
        frames.append(metrics.from_confusion(dense, dataset="mnist", arch="lenet5", method="mp",
                                             ratio=2.0, model=m))
        collapsed = np.zeros((10, 10), dtype=np.int64)
        collapsed[:, 0] = dense.sum(1)
        frames.append(metrics.from_confusion(collapsed, dataset="mnist", arch="lenet5", method="mp",
                                             ratio=50.0, model=m))
    an = analyse(pd.concat(frames, ignore_index=True))
    notice = [n for n in an.notices if "collapsed" in n]
    assert len(notice) == 1 and "mp@50x" in notice[0] and "mp@2x" not in notice[0]
