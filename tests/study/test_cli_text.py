"""User text reaches the console as written (issue 14 item 6): rich markup is never parsed.

Study names, output folders, TOML values quoted in errors, job ids and error messages can hold
``[...]``; a markup-parsing console raised ``MarkupError`` on ``[/]``, showed ``[[grid]]`` as
``[]`` and dropped job ids that start with a-f (``[ab12...]`` reads as a style tag).
"""
from __future__ import annotations

import ast
import sys
from pathlib import Path

from rich.console import Console
from typer.testing import CliRunner

from prunescope.cli import app
from prunescope.study import load_spec, make_plan, run_study
from prunescope.study.progress import RichDisplay
from prunescope.study.store import JobResult

sys.path.insert(0, str(Path(__file__).parent))
from test_cli import SPEC, Scripted  # noqa: E402

runner = CliRunner()
SRC = Path(__file__).resolve().parents[2] / "src" / "prunescope"
#: text that rich markup would break: a bare closing tag, a style tag, a doubled bracket
NASTY = "o[/]u[bold]t[[grid]]"


def _study(tmp_path, text=SPEC):
    f = tmp_path / "c.toml"
    f.write_text(text)
    return f


def test_consoles_and_text_columns_are_built_only_by_the_markup_free_factory():
    """Every rich Console and progress TextColumn of the package comes from prunescope._console
    (markup off), so no print of user text can be parsed as markup."""
    offenders = []
    for path in SRC.rglob("*.py"):
        if path.name == "_console.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call):
                name = getattr(node.func, "id", None) or getattr(node.func, "attr", None)
                if name in ("Console", "TextColumn"):
                    offenders.append(f"{path.relative_to(SRC)}:{node.lineno} {name}(...)")
    assert not offenders, offenders


def test_plan_prints_an_output_folder_with_brackets_as_written(tmp_path):
    f = _study(tmp_path, SPEC.replace('output = "out"', f'output = "{NASTY}"'))
    r = runner.invoke(app, ["plan", str(f)], env={"COLUMNS": "300"})
    assert r.exit_code == 0, r.output
    # the table title wraps at the table's width: compare without whitespace
    assert str(tmp_path / NASTY) in "".join(r.output.split())


def test_run_summary_prints_an_output_folder_with_brackets_after_the_work(tmp_path):
    """The summary line (printed after every job ran) names the store as written."""
    f = _study(tmp_path, SPEC.replace('output = "out"', f'output = "{NASTY}"'))
    run_study(load_spec(f), executor=Scripted(fail=None))
    r = runner.invoke(app, ["run", str(f), "--quiet"], env={"COLUMNS": "300"})
    assert r.exit_code == 0, r.output
    assert f"Store: {tmp_path / NASTY}/study.sqlite" in r.output


def test_spec_errors_quote_bracketed_values_and_allowed_text_intact(tmp_path):
    for text, expected in (
        (SPEC.replace("models = 2", 'models = "[/]"'), "key 'models' = '[/]' is invalid"),
        (SPEC.replace('name = "c"', 'name = "[bold]x[/]"'), "key 'name' = '[bold]x[/]'"),
        (SPEC.replace('methods = ["mp"]', 'methods = ["[[grid]]"]'),
         "key 'methods[0]' = '[[grid]]' is invalid"),
        # an allowed-text that itself holds [[grid]]
        (SPEC.replace('methods = ["mp"]', 'methods = ["l1-filter"]')
         .replace("ratios = [2, 4]", "ratios = [2, 900]"), "with a [[grid]] entry"),
    ):
        r = runner.invoke(app, ["plan", str(_study(tmp_path, text))], env={"COLUMNS": "1000"})
        assert r.exit_code == 2, r.output
        assert expected in r.output, r.output
        assert len(r.output.strip().splitlines()) == 1, r.output


def test_status_shows_job_ids_that_start_with_a_letter(tmp_path):
    f = _study(tmp_path)
    spec = load_spec(f)
    lettered = [j for j in make_plan(spec).jobs if j.id[0] in "abcdef"]
    assert lettered, "the plan has a job whose id starts with a-f"
    run_study(spec, executor=Scripted(fail=lettered[0].id))
    r = runner.invoke(app, ["status", str(f)], env={"COLUMNS": "300"})
    assert r.exit_code == 0, r.output
    assert f"[{lettered[0].id[:12]}]:" in r.output, r.output


def test_progress_display_prints_failures_and_labels_as_written(tmp_path):
    plan = make_plan(load_spec(_study(tmp_path)))
    console = Console(record=True, width=300, force_terminal=False)
    display = RichDisplay(console)

    class Pack:  # the two attributes RichDisplay reads
        label = "train [/]lenet5"
        jobs = plan.jobs[:1]

    display.start(plan, plan.jobs, lambda j: 1.0)
    display.pack_started(Pack)
    display.pack_finished(Pack, [JobResult(plan.jobs[0].id, "failed", error="bad [/] value\nmore")])
    display.stop()
    text = console.export_text()
    assert "failed train [/]lenet5: bad [/] value" in text


def test_data_list_prints_a_cache_folder_with_brackets_as_written(tmp_path):
    r = runner.invoke(app, ["data", "list", "--data-dir", str(tmp_path / NASTY)],
                      env={"COLUMNS": "300"})
    assert r.exit_code == 0, r.output
    assert str(tmp_path / NASTY) in "".join(r.output.split())
