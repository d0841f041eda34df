"""Packs of G > 1 jobs fitted together by the pack trainer (issue 7) inside a study (issue 5)."""
from __future__ import annotations

import pandas as pd
import pytest
import torch

from prunescope.study import load_results, load_spec, run_study
from .conftest import mnist_available


def test_packs_of_two_train_together(tiny_reference, tiny_spec, tmp_path):
    """`pack_size = 2`: the two models (and each method's fine-tunings) are fitted as one
    stacked network; the results equal solo training up to float rounding (issue 7)."""
    _, _, ref_frame, _ = tiny_reference
    spec = tiny_spec(tmp_path)
    f = tmp_path / "tiny.toml"
    f.write_text(spec.text.replace("threads = 1", "threads = 1\npack_size = 2"))
    spec = load_spec(f)
    summary = run_study(spec)
    assert summary.failed == 0 and summary.ran == 14
    res = load_results(spec)
    fitted = res.jobs[res.jobs["kind"].isin(["train", "prune_finetune"])]
    assert [i["pack_size"] for i in fitted["info"]] == [2] * 6
    frame = res.frame
    keys = ["dataset", "arch", "method", "ratio", "model", "distribution", "cls"]
    pd.testing.assert_frame_equal(frame[keys], ref_frame[keys])
    assert (frame["achieved_ratio"] == ref_frame["achieved_ratio"]).all()
    # rounding differences may flip a handful of the 300 test predictions, no more
    acc = frame.groupby(["model", "method"])["correct"].sum()
    ref = ref_frame.groupby(["model", "method"])["correct"].sum()
    assert (acc - ref).abs().max() <= 6


def test_a_failed_pack_is_retried_by_cause(tiny_spec, tmp_path, monkeypatch):
    """A pack that fails as a whole is retried according to why: out of memory (here: more than
    2 models) -> each half as a pack of its own; diverged models (named by fit_pack) -> those jobs
    fail, the others train as one pack; anything else -> one job at a time. Rerun jobs keep the
    pack's error; the packs get ``[executor.pack_options]``."""
    from prunescope.study import make_plan, worker
    from prunescope.study.packs import Pack
    from prunescope.train import TrainingDiverged
    from prunescope.train.options import device_profile
    from prunescope.train.pack import PackOptions

    if not mnist_available():
        pytest.skip("MNIST is not cached: run `prunescope data fetch mnist`")
    spec = tiny_spec(tmp_path)
    f = tmp_path / "tiny.toml"
    f.write_text(spec.text.replace("models = 2", "models = 5"))
    jobs = tuple(j for j in make_plan(load_spec(f)).jobs if j.kind == "train")
    assert len(jobs) == 5
    culprit = jobs[4].params["seed"]
    calls = []
    real_fit_pack, real_fit = worker.fit_pack, worker.fit
    options = PackOptions(channels_last=True)

    def fit_pack(models, train, val, recipe, seeds, **kw):
        calls.append(len(models))
        assert kw["profile"].pack_options == options
        if len(models) > 2:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (simulated)")
        if culprit in seeds:
            i = list(seeds).index(culprit)
            raise TrainingDiverged(1, 3, float("nan"), where=f"model {i}'s mean training",
                                   models=(i,))
        return real_fit_pack(models, train, val, recipe, seeds, **kw)

    def fit(model, train, val, recipe, seed, **kw):
        assert seed != culprit, "a diverged model is not trained again"
        return real_fit(model, train, val, recipe, seed, **kw)

    monkeypatch.setattr(worker, "fit_pack", fit_pack)
    monkeypatch.setattr(worker, "fit", fit)
    ctx = worker.WorkerContext(artifacts=str(tmp_path / "a"),
                               profile=device_profile("cpu", pack_options=options, threads=1))
    out = worker.run_pack(Pack("train", "mnist", "lenet5", jobs), ctx)
    # 5 (too big) -> 3 (too big) + 2; 3 -> 2 (packed) + 1 (alone); 2 -> culprit fails, 1 alone
    assert calls == [5, 3, 2, 2]
    assert [r.job_id for r in out] == [j.id for j in jobs]
    assert [r.status for r in out] == ["done"] * 4 + ["failed"]
    assert "TrainingDiverged" in out[4].error and "model 1's" in out[4].error
    assert [r.info.get("pack_size", 1) for r in out[:4]] == [2, 2, 1, 1]
    assert "OutOfMemoryError" in out[0].info["pack_error"]
    assert "TrainingDiverged" in out[3].info["pack_error"]

    # any other failure: one job at a time
    calls.clear()

    def broken(models, *a, **kw):
        calls.append(len(models))
        raise RuntimeError("torch.compile failed (simulated)")

    monkeypatch.setattr(worker, "fit_pack", broken)
    out = worker.run_pack(Pack("train", "mnist", "lenet5", jobs[:3]), ctx)
    assert calls == [3] and [r.status for r in out] == ["done"] * 3
    assert all("torch.compile failed" in r.info["pack_error"] for r in out)


def test_a_pack_whose_compilation_fails_trains_uncompiled(tiny_spec, tmp_path, monkeypatch):
    """torch.compile failing (e.g. no working compiler toolchain on a GPU machine) costs the
    compiled speed, not the packing: the pack is retried uncompiled as one pack, and the
    process's later packs skip compiling."""
    from prunescope.study import make_plan, worker
    from prunescope.study.packs import Pack
    from prunescope.train.options import device_profile
    from prunescope.train.pack import PackOptions

    if not mnist_available():
        pytest.skip("MNIST is not cached: run `prunescope data fetch mnist`")
    jobs = tuple(j for j in make_plan(tiny_spec(tmp_path)).jobs if j.kind == "train")
    seen = []
    real_fit_pack = worker.fit_pack

    def fit_pack(models, train, val, recipe, seeds, **kw):
        seen.append((len(models), kw["profile"].pack_options.compile))
        if kw["profile"].pack_options.compile:
            raise torch._dynamo.exc.BackendCompilerFailed(
                lambda: None, RuntimeError("triton: no C compiler (simulated)"), None)
        return real_fit_pack(models, train, val, recipe, seeds, **kw)

    monkeypatch.setattr(worker, "fit_pack", fit_pack)
    monkeypatch.setattr(worker, "_COMPILE_FAILED", set())
    ctx = worker.WorkerContext(artifacts=str(tmp_path / "a"), profile=device_profile(
        "cpu", pack_options=PackOptions(compile=True), threads=1))
    out = worker.run_pack(Pack("train", "mnist", "lenet5", jobs), ctx)
    assert seen == [(2, True), (2, False)]
    assert [r.status for r in out] == ["done", "done"]
    assert [r.info["pack_size"] for r in out] == [2, 2]
    assert all("BackendCompilerFailed" in r.info["pack_error"] for r in out)
    seen.clear()
    worker.run_pack(Pack("train", "mnist", "lenet5", jobs), ctx)  # later packs: no new attempt
    assert seen == [(2, False)]


def test_out_of_memory_is_recognised_by_type_or_message():
    """What the worker (and bench/throughput.py) retry with smaller packs: the allocator's
    OutOfMemoryError, and the errors running out of memory raises while a CUDA graph is being
    captured (an invalidated capture); nothing else."""
    from prunescope.study.worker import out_of_memory

    assert out_of_memory(torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate"))
    assert out_of_memory(RuntimeError("CUDA error: out of memory"))
    assert out_of_memory(RuntimeError("CUDA error: operation not permitted when stream is "
                                      "capturing (cudaErrorStreamCaptureInvalidated): capture "
                                      "invalidated"))
    assert not out_of_memory(RuntimeError("torch.compile failed"))
    assert not out_of_memory(ValueError("masks must hold only 0/1"))
