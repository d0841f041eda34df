"""A real tiny study on real MNIST end to end (issue 5; SPEC 3 exact ratios and masks held)."""
from __future__ import annotations

import time

import numpy as np
import pytest

from prunescope.study import load_results, load_spec, make_plan, run_study
from prunescope.train import load_checkpoint


def test_tiny_study_end_to_end(tiny_reference):
    spec, summary, frame, digests = tiny_reference
    plan = make_plan(spec)
    assert summary.ran == len(plan.jobs) == 14 and summary.failed == 0
    # 2 models x (dense + MP + GP) x 10 classes, counts over the 300-image stratified subset
    assert len(frame) == 2 * 3 * 10
    per_model = frame.groupby(["model", "method"])["support"].sum()
    assert (per_model == 300).all()
    acc = frame.groupby(["model", "method"]).apply(lambda g: g["correct"].sum() / 300)
    assert (acc > 0.2).all(), f"15 SGD steps should beat chance (0.1) on MNIST: {acc}"
    pruned = frame[frame["method"] != "dense"]
    assert np.allclose(pruned["achieved_ratio"], 4.0, rtol=1e-3)
    # the pruned checkpoints hold exactly the recorded fraction of zero weights
    res = load_results(spec)
    row = res.jobs[(res.jobs["kind"] == "prune_finetune")].iloc[0]
    model, meta, masks = load_checkpoint(row["artifacts"]["weights"])
    n_all = sum(p.numel() for p in model.parameters())
    n_nonzero = n_all - sum(int((~m).sum()) for m in masks.values())
    assert n_all / n_nonzero == pytest.approx(row["achieved_ratio"])
    for name, m in masks.items():
        assert (dict(model.named_parameters())[name][~m] == 0).all()
    assert meta["parent_weight_decay"] == 5e-4
    # a rerun on the complete store does nothing, quickly
    t0 = time.perf_counter()
    again = run_study(spec)
    assert again.ran == 0 and time.perf_counter() - t0 < 5.0


def test_diverging_training_is_recorded_and_blocks_its_dependents(tiny_spec, tmp_path):
    """A real NaN loss (lr 1e12) fails the train jobs with TrainingDiverged; every job that
    needs a dense model is blocked, nothing crashes."""
    spec = tiny_spec(tmp_path)
    text = spec.text.replace("schedule = [[1, 0.05]]", "schedule = [[1, 1e12]]")
    (tmp_path / "tiny.toml").write_text(text)
    spec = load_spec(tmp_path / "tiny.toml")
    summary = run_study(spec)
    assert summary.failed == 2 and summary.blocked == 12
    assert all("TrainingDiverged" in e for e in summary.errors.values())
    jobs = load_results(spec).jobs
    assert set(jobs.loc[jobs["kind"] == "train", "status"]) == {"failed"}
    assert set(jobs.loc[jobs["kind"] != "train", "status"]) == {"blocked"}
