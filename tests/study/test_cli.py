"""`prunescope plan | run | status | export` (issue 5), on a store filled by a scripted executor."""
from __future__ import annotations

import numpy as np
import pandas as pd
from typer.testing import CliRunner

from prunescope.cli import app
from prunescope.study import load_spec, make_plan, run_study
from prunescope.study.store import JobResult

SPEC = """
name = "c"
models = 2
datasets = ["mnist"]
architectures = ["lenet5"]
methods = ["mp"]
ratios = [2, 4]
output = "out"
"""

runner = CliRunner()


class Scripted:
    """Finishes every job at once; fails the train job of model 1."""

    def __init__(self, fail):
        self.fail, self.queue, self.clock = fail, [], 1000.0

    def free_slots(self):
        return 1 - len(self.queue)

    def submit(self, pack, ctx):
        self.queue.append(pack)

    def wait(self):
        pack = self.queue.pop()
        res = []
        for j in pack.jobs:
            if j.id == self.fail:
                res.append(JobResult(j.id, "failed", error="TrainingDiverged: loss is nan"))
            else:
                cm = np.array([[3, 1], [0, 4]]) if j.kind == "evaluate" else None
                res.append(JobResult(j.id, "done", achieved_ratio=j.ratio, confusion=cm,
                                     distribution=j.distribution, started=self.clock,
                                     finished=self.clock + 30.0, wall_s=30.0))
                self.clock += 40.0  # 30 s of work, 10 s idle between jobs
        return [(pack, res)]

    def close(self):
        pass


def _study(tmp_path):
    f = tmp_path / "c.toml"
    f.write_text(SPEC)
    return f


def test_plan_prints_counts_and_work(tmp_path):
    f = _study(tmp_path)
    r = runner.invoke(app, ["plan", str(f)])
    assert r.exit_code == 0, r.output
    for phase, n in (("train", 2), ("prune_finetune", 4), ("evaluate", 6)):
        assert any(line.split("│")[1:3] and line.split("│")[1].strip() == phase
                   and line.split("│")[2].strip() == str(n) for line in r.output.splitlines())
    assert not (tmp_path / "out").exists(), "plan must not create anything"


def test_invalid_spec_exits_2_with_the_key(tmp_path):
    f = tmp_path / "bad.toml"
    f.write_text(SPEC.replace("models = 2", "models = -1"))
    for cmd in ("plan", "run", "status", "export"):
        r = runner.invoke(app, [cmd, str(f)])
        assert r.exit_code == 2 and "models" in r.output, (cmd, r.output)


def test_status_lists_failures_and_export_writes_tidy_rows(tmp_path):
    f = _study(tmp_path)
    spec = load_spec(f)
    r = runner.invoke(app, ["status", str(f)])
    assert r.exit_code == 1 and "has not been run" in r.output
    train1 = [j for j in make_plan(spec).jobs if j.kind == "train"][1]
    run_study(spec, executor=Scripted(fail=train1.id))
    r = runner.invoke(app, ["status", str(f)])
    assert r.exit_code == 0, r.output
    assert "TrainingDiverged: loss is nan" in r.output and train1.id[:12] in r.output
    assert "blocked" in r.output
    rows = {line.split("│")[1].strip(): [c.strip() for c in line.split("│")[2:-1]]
            for line in r.output.splitlines() if line.count("│") == 4}
    # time of the done jobs (30 s of work each, started 40 s apart): 1 train job,
    # 2 fine-tunings, 3 evaluations; all 6: 180 s of work from the first start to the last
    # finish 5 * 40 + 30 s; phases without a done job are left out
    assert rows["train"] == ["30.0 s", "30.0 s"]
    assert rows["prune_finetune"][0] == "0:01:00" and rows["evaluate"][0] == "0:01:30"
    assert "rewind" not in rows
    assert rows["total"] == ["0:03:00", "0:03:50"]
    for fmt in ("csv", "parquet"):
        out = tmp_path / f"x.{fmt}"
        r = runner.invoke(app, ["export", str(f), "--format", fmt, "--out", str(out)])
        assert r.exit_code == 0, r.output
        frame = pd.read_csv(out) if fmt == "csv" else pd.read_parquet(out)
        # model 0 only (model 1's training failed): dense + 2 ratios, 2 classes each
        assert len(frame) == 3 * 2 and set(frame["model"]) == {0}
        assert frame["support"].tolist() == [4, 4] * 3
    r = runner.invoke(app, ["export", str(f), "--format", "xlsx"])
    assert r.exit_code == 2 and "parquet or csv" in r.output


def test_run_on_a_complete_store_does_nothing(tmp_path):
    f = _study(tmp_path)
    run_study(load_spec(f), executor=Scripted(fail=None))
    r = runner.invoke(app, ["run", str(f), "--quiet"])
    assert r.exit_code == 0, r.output
    assert "12 already done, 0 run now" in r.output.replace("\n", " ")
