"""Prune potential in the report as Lost in Pruning reports it (SPEC 2): the removed fraction
1 - 1/t (mean and 99 % CI over models) first, t beside it, at the achieved ratio."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from report_synth import multi_method, synthetic_results

from prunescope import analysis, metrics
from prunescope.report import render, render_report


def _curve(model: int, distribution: str, errors: list[float]) -> list[dict]:
    rows = [dict(dataset="d", arch="a", method="dense", ratio=1.0, model=model,
                 distribution=distribution, error=0.10)]
    return rows + [dict(dataset="d", arch="a", method="mp", ratio=t, model=model,
                        distribution=distribution, error=e)
                   for t, e in zip((2.0, 4.0, 10.0, 20.0, 50.0), errors)]


def test_summary_orders_by_removed_fraction_where_mean_ratio_reverses():
    """The issue's example: potentials {2, 50} vs {20, 20}: mean t 26 > 20, but 74 % < 95 %
    of the parameters removed; the summary's first number is the removed fraction and its t
    is 1 / (1 - mean removed) (3.85 and 20), the mean of t only beside it."""
    bad, good = 0.2, 0.10
    rows = (_curve(0, "a", [good, bad, bad, bad, bad]) + _curve(1, "a", [good] * 5)
            + _curve(0, "b", [good] * 4 + [bad]) + _curve(1, "b", [good] * 4 + [bad]))
    potential = metrics.prune_potential(pd.DataFrame(rows))
    out = analysis.potential_summary(potential).set_index("distribution")
    assert out.loc["a", "mean"] == pytest.approx(74.0) and out.loc["b", "mean"] == pytest.approx(95.0)
    assert out.loc["a", "mean"] < out.loc["b", "mean"]
    assert out.loc["a", "mean_t"] == 26.0 and out.loc["b", "mean_t"] == 20.0
    assert out.loc["a", "t"] == pytest.approx(1 / 0.26) and out.loc["b", "t"] == pytest.approx(20.0)
    assert out.loc["a", "t_ci_low"] <= out.loc["a", "t"] <= out.loc["a", "t_ci_high"]
    assert np.isnan(out.loc["b", "ci_low"]) or out.loc["b", "ci_low"] == pytest.approx(95.0)


def test_report_table_is_the_removed_fraction_at_the_achieved_ratio(tmp_path):
    frame = synthetic_results(multi_method()[:2], n_models=3, ratios=(2.0, 10.0),
                              distributions=("nominal", "contrast-5"), seed=3)
    assert (frame["achieved_ratio"] != frame["ratio"]).any()  # 1e-4 above the request
    render_report(frame, tmp_path)
    tab = pd.read_csv(tmp_path / "tables" / "prune_potential.csv")
    assert list(tab.columns[4:9]) == ["n", "removed (%)", "99% CI low (%)", "99% CI high (%)", "t"]
    pot = metrics.prune_potential(metrics.error_frame(frame))
    achieved = pot.groupby(["method", "distribution"])["removed_pct"].mean()
    requested = (100 * (1 - 1 / pot["potential_requested"])).groupby(
        [pot["method"], pot["distribution"]]).mean()
    got = tab.set_index(["method", "distribution"])["removed (%)"]
    assert got.to_numpy() == pytest.approx(achieved.loc[got.index].to_numpy(), rel=1e-12)
    moved = achieved != requested
    assert moved.any() and (got.loc[moved[moved].index] != requested.loc[moved[moved].index]).all()
    assert "Tolerance δ = 0.5 percentage points" in (tmp_path / "report.html").read_text(encoding="utf-8")


def test_render_report_refuses_a_delta_that_looks_like_a_fraction(tmp_path):
    frame = synthetic_results(multi_method()[:1], n_models=2, ratios=(2.0,))
    with pytest.raises(ValueError, match="looks like a fraction"):
        render_report(frame, tmp_path / "x", delta=0.005)
    assert not (tmp_path / "x").exists()
