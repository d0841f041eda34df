"""The functional-agreement view of the report (SPEC 2, SPEC 6): figure and table when an
agreement frame is given, nothing otherwise."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from matplotlib.colors import to_hex

from prunescope.report import METHOD_COLORS, figures, render_report
from prunescope.report.render import _agreement_panels

KEYS = ["dataset", "arch", "method", "ratio", "model", "distribution"]


def _agreement(frame: pd.DataFrame, seed: int = 0) -> pd.DataFrame:
    """One synthetic agreement per pruned evaluation of ``frame``: falls with the ratio."""
    rows = frame.loc[frame["method"] != "dense", KEYS].drop_duplicates().reset_index(drop=True)
    rng = np.random.default_rng(seed)
    agree = 1.0 - 0.05 * np.log2(rows["ratio"]) - rng.uniform(0, 0.05, len(rows))
    return rows.assign(agreement=np.clip(agree, 0.0, 1.0))


@pytest.fixture(scope="module")
def agreement_report(multi_frame, tmp_path_factory):
    ag = _agreement(multi_frame)
    out = tmp_path_factory.mktemp("agreement_report")
    return ag, render_report(multi_frame, out, study_name="synthetic", agreement=ag)


def test_agreement_figure_and_table_are_written(agreement_report):
    ag, html = agreement_report
    root = html.parent
    for ext in ("png", "pdf"):
        assert (root / "figures" / f"agreement_cifar10-resnet56.{ext}").stat().st_size > 0
    for ext in ("md", "csv", "tex"):
        assert (root / "tables" / f"agreement.{ext}").stat().st_size > 0
    page = html.read_text(encoding="utf-8")
    assert "fig-agreement-cifar10-resnet56" in page
    assert "Functional agreement" in page and "same class as its dense parent" in page
    tab = pd.read_csv(root / "tables" / "agreement.csv")
    keys = ["method", "ratio", "distribution"]
    expect = (100 * ag.groupby(keys)["agreement"].mean()).rename("expect").reset_index()
    got = tab.merge(expect, on=keys, how="outer", indicator=True)
    assert (got["_merge"] == "both").all() and len(tab) == 4 * 3 * 3
    np.testing.assert_allclose(got["agreement (%)"], got["expect"])
    assert (tab["n"] == 4).all()
    assert (tab["99% CI low"] <= tab["agreement (%)"]).all()
    assert (tab["agreement (%)"] <= tab["99% CI high"]).all()
    # canonical method order, nominal first within a cell
    assert list(dict.fromkeys(tab["method"])) == ["mp", "up", "gp", "rp"]
    assert tab["distribution"].iloc[0] == "nominal"


def test_no_agreement_frame_no_agreement_view(multi_report):
    root = multi_report.parent
    assert not list((root / "figures").glob("agreement*"))
    assert not list((root / "tables").glob("agreement*"))
    assert "Functional agreement" not in multi_report.read_text(encoding="utf-8")


def test_empty_agreement_frame_gives_a_notice_and_no_files(multi_frame, tmp_path):
    empty = pd.DataFrame({c: [] for c in [*KEYS, "agreement"]})
    html = render_report(multi_frame, tmp_path, agreement=empty)
    assert not list((tmp_path / "figures").glob("agreement*"))
    assert not list((tmp_path / "tables").glob("agreement*"))
    assert "kept its per-image predictions" in html.read_text(encoding="utf-8")


def test_invalid_agreement_frames_are_refused(multi_frame, tmp_path):
    ag = _agreement(multi_frame)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        render_report(multi_frame, tmp_path / "a", agreement=ag.assign(agreement=1.5))
    with pytest.raises(ValueError, match="lacks column"):
        render_report(multi_frame, tmp_path / "b", agreement=ag.drop(columns="agreement"))


def test_agreement_plot_one_coloured_line_per_method_from_the_dense_point(multi_frame):
    ag = _agreement(multi_frame)
    ci = (ag.groupby(["method", "ratio", "distribution"])["agreement"].mean()
          .rename("mean").reset_index().assign(n=1, ci_low=np.nan, ci_high=np.nan))
    panels = [("nominal", ["nominal"]), ("contrast-5", ["contrast-5"])]
    fig = figures.agreement_plot(ci, panels, "t")
    ax = fig.axes[0]
    assert ax.get_title() == "nominal"
    lines = {ln.get_label(): ln for ln in ax.get_lines()}
    assert set(lines) == {"MP", "UP", "GP", "RP"}
    ln = lines["GP"]
    assert to_hex(ln.get_color()) == METHOD_COLORS["gp"].lower()
    xs, ys = ln.get_data()
    assert xs[0] == 1.0 and ys[0] == 100.0
    want = ci[(ci["method"] == "gp") & (ci["distribution"] == "nominal")].sort_values("ratio")
    np.testing.assert_allclose(ys[1:], 100 * want["mean"])


def test_agreement_panels_group_severities_when_many_distributions():
    few = ["nominal", "contrast-5", "noise-0.1"]
    assert _agreement_panels(few, "nominal") == [(d, [d]) for d in few]
    many = ["nominal", *(f"gaussian_noise-{s}" for s in (5, 1, 3)),
            *(f"noise-{s}" for s in (0.2, 0.05)), "contrast-2"]
    panels = _agreement_panels(many, "nominal")
    assert panels[0] == ("nominal", ["nominal"])
    groups = {t.split(" ")[0]: ds for t, ds in panels}
    assert groups["gaussian_noise"] == ["gaussian_noise-1", "gaussian_noise-3",
                                        "gaussian_noise-5"]
    assert groups["noise"] == ["noise-0.05", "noise-0.2"]
    assert groups["contrast-2"] == ["contrast-2"]


def test_agreement_intervals_stay_within_0_and_100_percent(multi_frame, tmp_path):
    """Issue 18 item 7: collapsed models agree on a few percent of the images, with a spread a
    t-interval stretches below 0 %; the logit interval stays inside [0, 100] % and is the
    back-transformed t-interval of the models' empirical logits."""
    from scipy import stats as sps

    ag = _agreement(multi_frame)
    low = [0.01, 0.25, 0.02, 0.30]  # the four models of one cell
    cell = (ag["method"] == "mp") & (ag["ratio"] == ag["ratio"].max())
    for dist in ag.loc[cell, "distribution"].unique():
        ag.loc[cell & (ag["distribution"] == dist), "agreement"] = low
    x = np.array(low)
    half = sps.t.ppf(0.995, 3) * x.std(ddof=1) / 2
    assert x.mean() - half < 0  # what the plain t-interval gave
    render_report(multi_frame, tmp_path, agreement=ag)
    tab = pd.read_csv(tmp_path / "tables" / "agreement.csv")
    assert (tab["99% CI low"] >= 0).all() and (tab["99% CI high"] <= 100).all()
    row = tab[(tab["method"] == "mp") & (tab["ratio"] == ag["ratio"].max())].iloc[0]
    n = multi_frame[(multi_frame["method"] == "dense") & (multi_frame["model"] == 0)
                    & (multi_frame["distribution"] == row["distribution"])]["support"].sum()
    lg = np.log((x * n + 0.5) / ((1 - x) * n + 0.5))
    lg_half = sps.t.ppf(0.995, 3) * lg.std(ddof=1) / 2
    expect = 100 / (1 + np.exp(-(lg.mean() + np.array([-lg_half, lg_half]))))
    np.testing.assert_allclose([row["99% CI low"], row["99% CI high"]], expect, rtol=1e-3)
    assert row["agreement (%)"] == pytest.approx(100 * x.mean(), abs=0.01)


def test_agreement_of_a_mitigation_study_reads_the_ce_models_only(multi_frame, tmp_path):
    """A study with a second fine-tuning objective: the agreement view, like every section before
    "Mitigation", pools only the cross-entropy models (the kd rows' agreement of 0 would pull
    every mean down), and the Mitigation section is added."""
    ce = multi_frame.assign(objective="ce")
    kd = ce[ce["method"] == "mp"].assign(objective="kd")
    frame = pd.concat([ce, kd], ignore_index=True)
    ag_ce = _agreement(multi_frame).assign(objective="ce")
    ag_kd = ag_ce[ag_ce["method"] == "mp"].assign(objective="kd", agreement=0.0)
    html = render_report(frame, tmp_path, study_name="mitigated",
                         agreement=pd.concat([ag_ce, ag_kd], ignore_index=True))
    tab = pd.read_csv(tmp_path / "tables" / "agreement.csv")
    keys = ["method", "ratio", "distribution"]
    expect = (100 * ag_ce.groupby(keys)["agreement"].mean()).rename("expect").reset_index()
    got = tab.merge(expect, on=keys, how="outer", indicator=True)
    assert (got["_merge"] == "both").all() and (tab["n"] == 4).all()
    np.testing.assert_allclose(got["agreement (%)"], got["expect"])
    page = html.read_text(encoding="utf-8")
    assert "Mitigation" in page and (tmp_path / "tables" / "mitigation.csv").stat().st_size > 0
