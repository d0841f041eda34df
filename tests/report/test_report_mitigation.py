"""The report's Mitigation section (issue 26): its trade-off figure has one panel per ratio
with one point per objective at the summary's means, and its tables are the analysis' numbers."""
from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.colors import to_hex

from prunescope import analysis
from prunescope.catalog import objectives as registry
from prunescope.report.mitigation import summary_table, tradeoff_figure


def _frame(multi_frame: pd.DataFrame) -> pd.DataFrame:
    """MP's models fine-tuned with ce and, as a second objective, kd (the kd copies made a
    little worse: 1 to 3 correct images of class 0, by model, counted wrong)."""
    ce = multi_frame[multi_frame["method"].isin(["dense", "mp"])].assign(objective="ce")
    kd = ce[ce["method"] == "mp"].assign(objective="kd")
    worse = (kd["cls"] == 0) & (kd["correct"] > 3)
    kd.loc[worse, "correct"] -= 1 + kd.loc[worse, "model"] % 3
    return pd.concat([ce, kd], ignore_index=True)


def test_tradeoff_figure_one_panel_per_ratio_points_at_the_means(multi_frame):
    mt = analysis.mitigation(_frame(multi_frame))
    assert mt is not None
    summary = mt.summary[mt.summary["distribution"] == "nominal"]
    fig = tradeoff_figure(summary, "t")
    axes = fig.axes
    ratios = sorted(summary["ratio"].unique())
    assert len(axes) == len(ratios) == 3
    for ax, ratio in zip(axes, ratios):
        assert ax.get_title() == f"ratio {ratio:g}x"
        lines = [c.lines[0] for c in ax.containers]  # one errorbar per objective
        assert [to_hex(line.get_color()) for line in lines] == [
            to_hex(registry.objective(o).colour) for o in ("ce", "kd")]
        for obj, line in zip(("ce", "kd"), lines):
            row = summary[(summary["ratio"] == ratio) & (summary["objective"] == obj)]
            acc = row.loc[row["value"] == "accuracy_after", "mean"].item()
            eag = row.loc[row["value"] == "max_eag", "mean"].item()
            np.testing.assert_allclose(line.get_xydata()[0], [100 * eag, 100 * acc])
    table = summary_table(summary)
    assert list(table["objective"][:2]) == [registry.objective(o).label for o in ("ce", "kd")]
