"""`prunescope report STUDY`: load_results -> render_report, with clear failures."""
from __future__ import annotations

import pandas as pd
import prunescope.study as study_pkg
from report_synth import multi_method, stub_results, synthetic_results
from typer.testing import CliRunner

from prunescope.cli import app
from prunescope.study.store import StoreMissing


def _results(frame: pd.DataFrame, out_dir, **loaders) -> study_pkg.StudyResults:
    return stub_results(frame, out_dir, kinds=("train", "evaluate"), statuses=("done", "pending"),
                        name="cli-study", **loaders)


def test_report_command_renders_into_the_study_folder(tmp_path, monkeypatch):
    frame = synthetic_results(multi_method()[:2], n_models=3, ratios=(2.0, 20.0))
    seen = {}

    def fake_load(study, output=None):
        seen["args"] = (str(study), output)
        return _results(frame, tmp_path)

    monkeypatch.setattr(study_pkg, "load_results", fake_load)
    res = CliRunner().invoke(app, ["report", "studies/x.toml", "--delta", "1.0"])
    assert res.exit_code == 0, res.output
    assert seen["args"] == ("studies/x.toml", None)
    page = (tmp_path / "report" / "report.html").read_text(encoding="utf-8")
    assert "prunescope report: cli-study" in page
    assert "The study is not finished: 1 of 2 jobs are not done" in page
    assert "(1/2 jobs done)" in res.output


def test_report_command_explains_an_unrun_study_and_an_empty_one(tmp_path, monkeypatch):
    def never_run(study, output=None):  # what load_results raises for a study never run
        raise StoreMissing(f"no study store at {tmp_path}/study.sqlite: the study has not been "
                           "run yet (start it with `prunescope run STUDY`)")

    monkeypatch.setattr(study_pkg, "load_results", never_run)
    res = CliRunner().invoke(app, ["report", "s.toml"])
    assert res.exit_code == 1 and "has not been run yet" in res.output
    assert "prunescope run" in res.output and "Traceback" not in res.output
    assert len(res.output.strip().splitlines()) == 1

    empty = synthetic_results(multi_method()[:1], n_models=1, ratios=(2.0,)).iloc[:0]
    monkeypatch.setattr(study_pkg, "load_results", lambda study, output=None: _results(empty, tmp_path))
    res = CliRunner().invoke(app, ["report", "s.toml", "--out", str(tmp_path / "r")])
    assert res.exit_code == 1 and "results frame is empty" in res.output


def test_report_command_passes_the_agreement_frame(tmp_path, monkeypatch):
    """The study's functional-agreement frame reaches render_report: its figure and table."""
    frame = synthetic_results(multi_method()[:2], n_models=3, ratios=(2.0, 20.0))
    keys = ["dataset", "arch", "method", "ratio", "model", "distribution"]
    ag = frame.loc[frame["method"] != "dense", keys].drop_duplicates().assign(agreement=0.9)
    res_obj = _results(frame, tmp_path, load_agreement=lambda: ag)
    monkeypatch.setattr(study_pkg, "load_results", lambda study, output=None: res_obj)
    res = CliRunner().invoke(app, ["report", "s.toml"])
    assert res.exit_code == 0, res.output
    tab = pd.read_csv(tmp_path / "report" / "tables" / "agreement.csv")
    assert len(tab) == 2 * 2 and (tab["agreement (%)"] == 90.0).all()
    assert list((tmp_path / "report" / "figures").glob("agreement_*.png"))


def test_report_help_names_the_choices():
    """--help lists the allowed values (stats.CORRECTIONS, stats.CI_METHODS) and keeps E(alpha)
    intact (rich markup would swallow a bracketed [alpha])."""
    import re

    res = CliRunner().invoke(app, ["report", "--help"], env={"COLUMNS": "200"})
    assert res.exit_code == 0, res.output
    text = re.sub(r"[\s│]+", " ", res.output)
    assert "one of: bonferroni, holm" in text and "one of: t, bootstrap" in text
    assert "intervals of E(alpha) per cell" in text
