"""The driver with a scripted executor: dependency order, failures, blocking, retry, resume,
and the tidy results frame (issue 5). No training happens here (see test_run_real.py)."""
from __future__ import annotations

import numpy as np
import pytest

from prunescope.metrics.tidy import validate
from prunescope.study import FRAME_COLUMNS, load_results, make_plan, parse_spec, run_study
from prunescope.study.store import JobResult

SPEC = """
name = "d"
models = 2
datasets = ["mnist"]
architectures = ["lenet5"]
methods = ["mp", "up"]
ratios = [2, 4]
distributions = ["nominal", "contrast-1"]
[executor]
pack_size = 3
"""


class ScriptedExecutor:
    """Returns synthetic results; fails the jobs whose id is in ``fail``; two packs in flight."""

    def __init__(self, fail=()):
        self.fail = set(fail)
        self.running = []
        self.submitted = []
        self.done = set()

    def free_slots(self):
        return 2 - len(self.running)

    def submit(self, pack, ctx):
        for j in pack.jobs:
            assert all(d in self.done or d in dict(ctx.parent_artifacts) for d in j.deps)
            for d in j.deps:
                assert ctx.parent(d)["file"].endswith(f"{d}.bin")  # under the artifact root
        assert len({(j.kind, j.arch, j.dataset) for j in pack.jobs}) == 1
        self.running.append(pack)
        self.submitted.append(pack)

    def wait(self):
        pack = self.running.pop(0)
        out = []
        for j in pack.jobs:
            if j.id in self.fail:
                out.append(JobResult(j.id, "failed", error="RuntimeError: scripted failure"))
                continue
            self.done.add(j.id)
            cm = None
            if j.kind == "evaluate":
                rng = np.random.default_rng(j.seed + int(j.ratio) + len(j.distribution))
                cm = rng.integers(0, 50, size=(10, 10))
            out.append(JobResult(j.id, "done", artifacts={"file": f"{j.id}.bin"},
                                 achieved_ratio=j.ratio, confusion=cm,
                                 distribution=j.distribution))
        return [(pack, out)]

    def close(self):
        pass


@pytest.fixture
def spec(tmp_path):
    return parse_spec(SPEC, base_dir=tmp_path)


def test_runs_everything_in_dependency_order(spec):
    ex = ScriptedExecutor()
    summary = run_study(spec, executor=ex)
    plan = make_plan(spec)
    assert summary.total == len(plan.jobs) == summary.ran and summary.failed == 0
    assert max(len(p.jobs) for p in ex.submitted) == 3  # pack_size respected
    res = load_results(spec)
    assert set(res.jobs["status"]) == {"done"}
    # a rerun on a complete store submits nothing
    ex2 = ScriptedExecutor()
    again = run_study(spec, executor=ex2)
    assert again.ran == 0 and again.already_done == again.total and not ex2.submitted


def test_results_frame_is_the_documented_tidy_frame(spec):
    run_study(spec, executor=ScriptedExecutor())
    res = load_results(spec)
    f = res.frame
    assert tuple(f.columns) == FRAME_COLUMNS
    validate(f)  # the metrics layer accepts it as a tidy count frame
    # 2 models x (dense + 2 methods x 2 ratios) x 2 distributions x 10 classes
    assert len(f) == 2 * 5 * 2 * 10
    dense = f[f["method"] == "dense"]
    assert set(dense["ratio"]) == {1.0} and set(dense["achieved_ratio"]) == {1.0}
    pruned = f[f["method"] != "dense"]
    assert (pruned["achieved_ratio"] == pruned["ratio"]).all()
    assert set(f["model"]) == {0, 1} and f["seed"].nunique() == 2
    assert set(f["distribution"]) == {"nominal", "contrast-1"}
    for col in ("cls", "support", "predicted", "correct", "model", "seed"):
        assert f[col].dtype == np.int64
    assert res.spec_text == SPEC and res.out_dir == spec.output


def test_failure_blocks_dependents_and_retry_reruns_them(spec):
    plan = make_plan(spec)
    grads = [j for j in plan.jobs if j.kind == "gradients"]
    target = grads[0]
    summary = run_study(spec, executor=ScriptedExecutor(fail={target.id}))
    assert summary.failed == 1 and summary.errors[target.id].startswith("RuntimeError")
    res = load_results(spec)
    st = res.jobs.set_index("id")["status"]
    # dependents: the UP fine-tunings of that model and their evaluations
    blocked = {j.id for j in plan.jobs if target.id in j.deps}
    blocked |= {j.id for j in plan.jobs if set(j.deps) & blocked}
    assert len(blocked) == 2 + 2 * 2
    assert all(st[i] == "blocked" for i in blocked)
    assert (st == "done").sum() == len(plan.jobs) - 1 - len(blocked)
    # the rest of the study went on: model 1 is complete
    assert (res.frame["model"] == 1).sum() == 5 * 2 * 10
    # a plain rerun keeps the failure; --retry-failed reruns it and its dependents
    ex = ScriptedExecutor()
    assert run_study(spec, executor=ex).ran == 0 and not ex.submitted
    again = run_study(spec, executor=ScriptedExecutor(), retry_failed=True)
    assert again.ran == 1 + len(blocked) and again.failed == 0
    assert set(load_results(spec).jobs["status"]) == {"done"}


def test_unavailable_dataset_fails_its_cells_only(tmp_path, monkeypatch):
    """Workers that read this machine's cache: the driver fetches each dataset once up front;
    one it cannot get fails that dataset's training jobs (the rest of the study runs)."""
    from prunescope.data import FetchError
    from prunescope.study import run as run_mod

    def fake_fetch(name):
        if name == "fashion-mnist":
            raise FetchError("fashion-mnist: every source failed (test)")

    monkeypatch.setattr(run_mod, "fetch", fake_fetch)
    spec = parse_spec(SPEC.replace('datasets = ["mnist"]', 'datasets = ["mnist", "fashion-mnist"]'),
                      base_dir=tmp_path)
    ex = ScriptedExecutor()
    ex.local_data = True
    summary = run_study(spec, executor=ex)
    assert summary.failed == 2
    assert all("dataset fashion-mnist is not available: FetchError" in e
               for e in summary.errors.values())
    submitted = {j.dataset for p in ex.submitted for j in p.jobs}
    assert submitted == {"mnist"}
    res = load_results(spec)
    assert set(res.frame["dataset"]) == {"mnist"}
    fashion = res.jobs[res.jobs["dataset"] == "fashion-mnist"]
    assert set(fashion["status"]) == {"failed", "blocked"}


def test_interrupted_running_jobs_are_redone(spec):
    """Jobs left 'running' by a killed driver are run again; done ones are not."""

    class Interrupting(ScriptedExecutor):
        def wait(self):
            if len(self.done) >= 5:
                raise KeyboardInterrupt
            return super().wait()

    with pytest.raises(KeyboardInterrupt):
        run_study(spec, executor=Interrupting())
    jobs = load_results(spec).jobs
    n_done = int((jobs["status"] == "done").sum())
    assert n_done >= 5 and (jobs["status"] == "running").any()
    ex = ScriptedExecutor()
    summary = run_study(spec, executor=ex)
    assert summary.already_done == n_done
    assert summary.ran == len(jobs) - n_done
    assert set(load_results(spec).jobs["status"]) == {"done"}


def test_rich_display_reports_progress_and_failures(spec):
    import io

    from rich.console import Console

    from prunescope.study.progress import RichDisplay

    plan = make_plan(spec)
    train0 = next(j for j in plan.jobs if j.kind == "train")
    buf = io.StringIO()
    display = RichDisplay(Console(file=buf, width=120, force_terminal=False))
    summary = run_study(spec, executor=ScriptedExecutor(fail={train0.id}), display=display)
    text = buf.getvalue()
    assert "study d" in text and f"{summary.ran}/{summary.ran} jobs" in text
    assert "failed" in text and "scripted failure" in text and train0.id[:8] in text


def test_cuda_without_a_gpu_fails_before_any_work(tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA device")
    spec = parse_spec(SPEC.replace('name = "d"', 'name = "d"\ndevice = "cuda"'),
                      base_dir=tmp_path)
    ex = ScriptedExecutor()
    ex.local_data = True
    with pytest.raises(RuntimeError, match="no CUDA device"):
        run_study(spec, executor=ex)
    assert not ex.submitted


STRUCTURED_SPEC = """
name = "s"
models = 3
[[grid]]
datasets = ["mnist"]
architectures = ["lenet5"]
methods = ["mp"]
ratios = [2]
[[grid]]
datasets = ["mnist"]
architectures = ["lenet5"]
methods = ["l1-filter", "chip"]
ratios = [2, 4]
[executor]
pack_size = 3
"""


def test_structured_jobs_never_share_a_pack(tmp_path, monkeypatch):
    """One rule (``packs.stacks``): the driver makes packs of one of structured jobs while the
    other kinds fill packs of ``pack_size``, and the worker runs a hand-made structured pack of
    several jobs one by one instead of stacking it."""
    from prunescope.study import KINDS, worker
    from prunescope.study.packs import Pack, stacks

    assert [k for k in KINDS if not stacks(k)] == ["structured"]
    spec = parse_spec(STRUCTURED_SPEC, base_dir=tmp_path)
    ex = ScriptedExecutor()
    assert run_study(spec, executor=ex).failed == 0
    sizes: dict[str, set[int]] = {}
    for p in ex.submitted:
        sizes.setdefault(p.kind, set()).add(len(p.jobs))
    assert sizes["structured"] == {1} and sum(p.kind == "structured" for p in ex.submitted) == 12
    assert max(sizes["train"]) == 3 and max(sizes["prune_finetune"]) == 3

    jobs = tuple(j for j in make_plan(spec).jobs if j.kind == "structured")[:2]
    monkeypatch.setattr(worker, "_run_fit_pack", lambda *a: pytest.fail("structured pack stacked"))
    monkeypatch.setattr(worker, "_run_one",
                        lambda job, ctx, arts, progress: JobResult(job.id, "done"))
    out = worker.run_pack(Pack("structured", "mnist", "lenet5", jobs),
                          worker.WorkerContext(artifacts=str(tmp_path / "a")))
    assert [r.job_id for r in out] == [j.id for j in jobs]
