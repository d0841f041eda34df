"""Report options of SPEC 5 "also offer": Holm correction, bootstrap CIs and the per-model mean
of I, through render_report and `prunescope report`."""
from __future__ import annotations

import re

import numpy as np
import pandas as pd
import prunescope.report as report_pkg
import prunescope.study as study_pkg
import pytest
from report_synth import Cell, multi_method, stub_results, synthetic_results
from typer.testing import CliRunner

from prunescope import stats
from prunescope.analysis import family_orders
from prunescope.cli import app
from prunescope.cli import report as cli_report
from prunescope.report import analyse, pvalues, render, render_report


@pytest.fixture(scope="module")
def small_frame() -> pd.DataFrame:
    """CIFAR-10 ResNet-56 with MP, UP, GP and RP at 3 ratios, 5 models."""
    return synthetic_results(multi_method(), n_models=5, ratios=(2.0, 10.0, 50.0), seed=4)


@pytest.fixture(scope="module")
def tables_by_option(small_frame, tmp_path_factory) -> dict[tuple[str, str], object]:
    """The tables section (no figures) under each (correction, ci_method)."""
    out = {}
    for correction, ci_method in [("bonferroni", "t"), ("holm", "t"), ("bonferroni", "bootstrap")]:
        d = tmp_path_factory.mktemp(f"{correction}-{ci_method}")
        an = analyse(small_frame, ci_method=ci_method)
        render._tables_section(an, d, correction)
        out[(correction, ci_method)] = d / "tables"
    return out


def test_holm_p_values_are_at_most_bonferroni_and_the_default_is_bonferroni(small_frame,
                                                                              tables_by_option):
    """SPEC 5: p multiplied by the family size (Bonferroni) by default; Holm as an option, never
    larger, and smaller somewhere in a family with several comparisons."""
    bonf = pd.read_csv(tables_by_option[("bonferroni", "t")] / "pvalues_methods_long.csv")
    holm = pd.read_csv(tables_by_option[("holm", "t")] / "pvalues_methods_long.csv")
    assert (bonf["correction"] == "bonferroni").all() and (holm["correction"] == "holm").all()
    assert np.array_equal(bonf["p_raw"], holm["p_raw"])
    assert (holm["p_corrected"] <= bonf["p_corrected"] + 1e-15).all()
    assert (holm["p_corrected"] < bonf["p_corrected"] - 1e-12).any()
    orders = family_orders()
    ref = stats.method_tests(analyse(small_frame).alphas, order=orders.methods,
                             leave_to_mp_vs_up=orders.mp_vs_up, levels=orders.levels).long
    assert bonf["p_corrected"].to_numpy() == pytest.approx(ref["p_corrected"].to_numpy(), rel=1e-12)
    md = (tables_by_option[("holm", "t")] / "pvalues_methods.md").read_text()
    assert "Holm-corrected" in md and "Bonferroni" not in md
    assert "Bonferroni-corrected" in (tables_by_option[("bonferroni", "t")] / "pvalues_methods.md").read_text()


def test_bootstrap_intervals_differ_from_t_and_the_default_is_t(small_frame, tables_by_option):
    """SPEC 5: a 99 % t-interval per cell by default; a bootstrap CI as an option."""
    t = pd.read_csv(tables_by_option[("bonferroni", "t")] / "alpha_ci.csv")
    boot = pd.read_csv(tables_by_option[("bonferroni", "bootstrap")] / "alpha_ci.csv")
    assert np.array_equal(t["mean α"], boot["mean α"])
    assert not np.allclose(t["99% CI low"], boot["99% CI low"])
    assert not np.allclose(t["99% CI high"], boot["99% CI high"])
    alphas = analyse(small_frame).alphas
    ref = stats.mean_ci(alphas, level=0.99).set_index(["method", "ratio"]).loc[
        list(zip(t["method"], t["ratio"]))]
    assert t["99% CI low"].to_numpy() == pytest.approx(ref["ci_low"].to_numpy(), rel=1e-12)
    boot_ref = stats.mean_ci(alphas, level=0.99, method="bootstrap").set_index(["method", "ratio"]).loc[
        list(zip(t["method"], t["ratio"]))]
    assert boot["99% CI high"].to_numpy() == pytest.approx(boot_ref["ci_high"].to_numpy(), rel=1e-12)
    md = (tables_by_option[("bonferroni", "bootstrap")] / "alpha_ci.md").read_text()
    assert "bootstrap interval" in md and "t-interval" not in md


def test_alpha_by_distribution_reuses_the_nominal_intervals(tmp_path, monkeypatch):
    """The nominal rows of the per-distribution alpha table are analyse()'s intervals: with the
    bootstrap, the nominal cells are resampled once (for the CI table), not a second time."""
    frame = synthetic_results(multi_method()[:2], n_models=3, ratios=(2.0, 10.0),
                              distributions=("nominal", "noise-1", "noise-2"), seed=6)
    calls = []
    real = stats.mean_ci

    def recording(data, *args, **kw):
        calls.append((kw.get("value"), kw.get("method"), set(data["distribution"])))
        return real(data, *args, **kw)

    monkeypatch.setattr(stats, "mean_ci", recording)
    render_report(frame, tmp_path, ci_method="bootstrap")
    alpha_calls = [c for c in calls if c[0] == "alpha"]
    assert alpha_calls == [("alpha", "bootstrap", {"nominal"}),
                           ("alpha", "bootstrap", {"noise-1", "noise-2"})]
    # "reason" is empty for every cell here (n = 3): read back from the CSV as NaN, left out
    long = pd.read_csv(tmp_path / "tables" / "alpha_by_distribution_long.csv").drop(
        columns="reason")
    assert list(long["distribution"].unique()) == ["noise-1", "noise-2", "nominal"]  # sorted
    nom = long[long["distribution"] == "nominal"].reset_index(drop=True)
    monkeypatch.setattr(stats, "mean_ci", real)
    ref = analyse(frame, ci_method="bootstrap").ci
    pd.testing.assert_frame_equal(nom, ref.drop(columns="reason"), check_dtype=False)
    shifted = long[long["distribution"] != "nominal"].reset_index(drop=True)
    alphas = render.metrics.model_alpha(render.metrics.pair_with_dense(
        render.metrics.per_class(frame[frame["distribution"] != "nominal"].drop(
            columns=["achieved_ratio"]))))
    ref = stats.mean_ci(alphas, by=["dataset", "arch", "method", "ratio", "distribution"],
                        method="bootstrap")
    pd.testing.assert_frame_equal(shifted, ref.drop(columns="reason"), check_dtype=False)


def test_alpha_ci_table_shows_the_per_model_mean_of_i(small_frame, tables_by_option):
    """SPEC 5: a per-model mean of I beside the slope, with the count of undefined I."""
    t = pd.read_csv(tables_by_option[("bonferroni", "t")] / "alpha_ci.csv")
    alphas = analyse(small_frame).alphas
    per_cell = alphas.groupby(["method", "ratio"]).agg(mean_I=("mean_I", "mean"),
                                                       sd=("mean_I", "std"),
                                                       undefined=("n_undefined_I", "sum"))
    ref = per_cell.loc[list(zip(t["method"], t["ratio"]))]
    assert t["mean I"].to_numpy() == pytest.approx(ref["mean_I"].to_numpy(), rel=1e-12)
    assert t["sd mean I"].to_numpy() == pytest.approx(ref["sd"].to_numpy(), rel=1e-12)
    assert np.array_equal(t["undefined I"], ref["undefined"])
    assert t["sd α"].to_numpy() == pytest.approx(
        alphas.groupby(["method", "ratio"])["alpha"].std().loc[list(zip(t["method"], t["ratio"]))]
        .to_numpy(), rel=1e-12)


def test_undefined_i_is_counted_in_the_alpha_ci_table(tmp_path):
    """SPEC 2: I is NaN where Bn before = 0 (never silently dropped): the table counts them."""
    rows = []
    for m in range(3):
        for method, ratio, correct in (("dense", 1.0, (9, 8, 7)), ("mp", 4.0, (7, 6 - m % 2, 4))):
            for c in (0, 1, 2):
                rows.append({"dataset": "mnist", "arch": "lenet5", "method": method, "ratio": ratio,
                             "model": m, "distribution": "nominal", "cls": c, "support": 10,
                             "predicted": 10, "correct": correct[c]})
    frame = pd.DataFrame(rows).astype({"support": "int64", "predicted": "int64", "correct": "int64"})
    an = analyse(frame)
    render._tables_section(an, tmp_path)
    t = pd.read_csv(tmp_path / "tables" / "alpha_ci.csv")
    assert t["undefined I"].tolist() == [3]  # class 1: recall 0.8 = accuracy before, Bn = 0


def test_render_report_passes_the_options_and_refuses_unknown_ones(tmp_path):
    frame = synthetic_results([Cell("cifar10", "resnet56", "mp"), Cell("cifar10", "resnet56", "gp"),
                               Cell("cifar10", "resnet56", "rp")], n_models=3, ratios=(2.0, 20.0))
    render_report(frame, tmp_path, correction="holm", ci_method="bootstrap")
    long = pd.read_csv(tmp_path / "tables" / "pvalues_methods_long.csv")
    assert (long["correction"] == "holm").all()
    page = (tmp_path / "report.html").read_text(encoding="utf-8")
    assert "Holm-corrected" in page and "bootstrap interval" in page
    for bad, allowed in (({"correction": "fdr"}, "bonferroni, holm"),
                         ({"ci_method": "wald"}, "t, bootstrap")):
        with pytest.raises(ValueError, match="must be one of"):
            render_report(frame, tmp_path / "x", **bad)
        with pytest.raises(ValueError, match=allowed):
            render_report(frame, tmp_path / "x", **bad)
        assert not (tmp_path / "x").exists()


def _render_calls(monkeypatch, results, tmp_path) -> list[dict]:
    """``prunescope report`` reads ``results`` and renders nothing: the returned list collects
    the keyword arguments of every render_report call."""
    monkeypatch.setattr(study_pkg, "load_results", lambda study, output=None: results)
    seen: list[dict] = []
    monkeypatch.setattr(report_pkg, "render_report",
                        lambda *a, **kw: seen.append(kw) or tmp_path / "report.html")
    return seen


def test_report_command_options_reach_render_report(tmp_path, monkeypatch):
    frame = synthetic_results(multi_method()[:2], n_models=2, ratios=(2.0,))
    seen = _render_calls(monkeypatch, stub_results(frame, tmp_path, name="opts"), tmp_path)
    runner = CliRunner()
    assert runner.invoke(app, ["report", "s.toml"]).exit_code == 0
    assert runner.invoke(app, ["report", "s.toml", "--correction", "holm", "--ci-method",
                               "bootstrap"]).exit_code == 0
    assert [(kw["correction"], kw["ci_method"]) for kw in seen] == [("bonferroni", "t"),
                                                                  ("holm", "bootstrap")]
    bad = runner.invoke(app, ["report", "s.toml", "--correction", "fdr"])
    assert bad.exit_code != 0 and "--correction 'fdr' is invalid" in bad.output
    assert cli_report.CORRECTIONS == stats.CORRECTIONS
    assert cli_report.CI_METHODS == stats.CI_METHODS
    bad = runner.invoke(app, ["report", "s.toml", "--ci-method", "wald"])
    assert bad.exit_code != 0 and "--ci-method 'wald' is invalid" in bad.output

    def flat(output: str) -> str:  # the error box may wrap the line
        return re.sub(r"[\s│]+", " ", output)

    assert "allowed: one of t, bootstrap" in flat(bad.output)
    assert "allowed: one of bonferroni, holm" in flat(
        runner.invoke(app, ["report", "s.toml", "--correction", "fdr"]).output)
    assert len(seen) == 2  # refused before render_report


def test_every_allowed_option_has_a_caption_name():
    """stats holds the allowed values; the report names each one in its captions."""
    assert set(pvalues.CORRECTION_NAMES) == set(stats.CORRECTIONS)
    assert set(render.CI_NAMES) == set(stats.CI_METHODS)
    assert set(pvalues.FAMILY_SCOPES) == set(pvalues.FAMILY_SIZES) == set(stats.FAMILIES)
    for scopes in pvalues.FAMILY_SCOPES.values():
        assert set(scopes) == set(pvalues.FAMILY_TITLES)


def test_p_values_are_corrected_within_table_columns_by_default(small_frame, tmp_path):
    """SPEC 5 / the paper: p times the number of rows in its column of the table. On CIFAR-10/
    ResNet-56 with 4 methods at 3 ratios the method pairs of one ratio are a family of 6 (the
    old whole-table default: 18), and the captions say which family; `families="table"` keeps
    the whole-table families."""
    an = analyse(small_frame)
    render._tables_section(an, tmp_path / "column")
    render._tables_section(an, tmp_path / "table", families="table")
    col = pd.read_csv(tmp_path / "column" / "tables" / "pvalues_methods_long.csv")
    tab = pd.read_csv(tmp_path / "table" / "tables" / "pvalues_methods_long.csv")
    assert (col["family_size"] == 6).all() and col["family"].nunique() == 3
    assert col["p_corrected"].to_numpy() == pytest.approx(np.minimum(6 * col["p_raw"], 1.0), rel=1e-12)
    assert (tab["family_size"] == 18).all()
    by_ratio = pd.read_csv(tmp_path / "column" / "tables" / "pvalues_ratios_by_method_long.csv")
    assert (by_ratio["family_size"] == 2).all()  # 2 ratio pairs in each method's column
    md = (tmp_path / "column" / "tables" / "pvalues_methods.md").read_text()
    assert "the method pairs at one ratio" in md and "every row of the column" in md
    assert "one family per table" in (tmp_path / "table" / "tables" / "pvalues_methods.md").read_text()


def test_a_comparison_without_p_value_reads_undefined_and_counts(tmp_path):
    """SPEC 5: an undefined row is counted in its column and shown as such, not as an empty
    (not compared) cell."""
    frame = synthetic_results(multi_method()[:3], n_models=4, ratios=(2.0, 10.0), seed=2)
    drop = (frame["method"] == "gp") & (frame["ratio"] == 10.0) & (frame["model"] > 0)
    an = analyse(frame[~drop])
    render._tables_section(an, tmp_path)
    long = pd.read_csv(tmp_path / "tables" / "pvalues_methods_long.csv")
    at10 = long[long["ratio"] == 10.0]
    assert at10["p_raw"].isna().sum() == 2 and (at10["family_size"] == 3).all()
    shown = pd.read_csv(tmp_path / "tables" / "pvalues_methods.csv")
    assert (shown["10"] == pvalues.UNDEFINED_P).sum() == 2
    assert "undefined" in (tmp_path / "tables" / "pvalues_methods.md").read_text()


def test_families_option_reaches_render_report_and_unknown_is_refused(small_frame, tmp_path, monkeypatch):
    with pytest.raises(ValueError, match="families must be one of column, table"):
        render_report(small_frame, tmp_path / "x", families="rows")
    assert not (tmp_path / "x").exists()
    seen = _render_calls(monkeypatch, stub_results(small_frame, tmp_path, name="opts"), tmp_path)
    runner = CliRunner()
    assert runner.invoke(app, ["report", "s.toml"]).exit_code == 0
    assert runner.invoke(app, ["report", "s.toml", "--families", "table"]).exit_code == 0
    assert [kw["families"] for kw in seen] == ["column", "table"]
    bad = runner.invoke(app, ["report", "s.toml", "--families", "rows"])
    assert bad.exit_code != 0 and "--families 'rows' is invalid" in bad.output and len(seen) == 2
