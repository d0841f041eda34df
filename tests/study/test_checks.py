"""prunescope.study.checks: when results should not be read at face value (issue 18 item 5)."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from prunescope.report import render_report
from prunescope.study.checks import checks

N = 1000  # test images per model, 10 classes of 100


def _results(dense_acc, pruned_acc, *, method="mp", ratio=2.0, achieved=None, level=None,
             dense_hist=None, recipe=True, steps=100, agreement=None):
    """A StudyResults-like object: one dense and one pruned model per entry of the accuracy
    lists (accuracy spread evenly over 10 classes), jobs with histories, optional agreement."""
    rows, jobs, ag = [], [], []
    for m, (da, pa) in enumerate(zip(dense_acc, pruned_acc)):
        for meth, r, acc in (("dense", 1.0, da), (method, ratio, pa)):
            correct = np.full(10, int(round(acc * N / 10)))
            for c in range(10):
                rows.append(dict(dataset="mnist", arch="lenet5", method=meth, ratio=r, model=m,
                                 distribution="nominal", cls=c, achieved_ratio=1.0, seed=m,
                                 support=N // 10, predicted=N // 10, correct=correct[c]))
        hist = dense_hist if dense_hist is not None else [{"val_loss": 0.1, "steps": 500}] * 3
        jobs.append(dict(id=f"t{m}", kind="train", dataset="mnist", arch="lenet5", method="dense",
                         ratio=1.0, level=np.nan, model=m, status="done", achieved_ratio=1.0,
                         info={"history": hist}, params={}))
        jobs.append(dict(id=f"p{m}", kind="lth_level" if level else "prune_finetune",
                         dataset="mnist", arch="lenet5", method=method, ratio=ratio,
                         level=np.nan if level is None else float(level), model=m,
                         status="done", achieved_ratio=achieved or ratio,
                         info={"history": [{"val_loss": 0.2, "steps": steps}]},
                         params={"recipe": {"schedule": [[1, 0.01]]} if recipe else None}))
        if agreement is not None:
            ag.append(dict(dataset="mnist", arch="lenet5", method=method, ratio=ratio, model=m,
                           distribution="nominal", agreement=agreement))
    frame = pd.DataFrame(rows)
    if level is not None:
        frame["level"] = np.where(frame["method"] == method, float(level), np.nan)
    agree = pd.DataFrame(ag) if ag else pd.DataFrame(
        columns=["dataset", "arch", "method", "ratio", "model", "distribution", "agreement"])
    if level is not None and len(agree):
        agree["level"] = float(level)
    return SimpleNamespace(frame=frame, jobs=pd.DataFrame(jobs), agreement=agree)


def test_converged_results_raise_nothing():
    res = _results([0.98, 0.981, 0.979], [0.979, 0.98, 0.978])
    assert checks(res) == []


def test_dense_model_still_improving_at_its_last_epoch_is_under_trained():
    hist = [{"val_loss": v, "steps": 430} for v in (0.30, 0.15, 0.10)]
    found = checks(_results([0.98, 0.98], [0.98, 0.98], dense_hist=hist))
    assert len(found) == 1 and found[0].startswith("Under-trained dense models: 2 of 2")
    assert "0.15 -> 0.1 in epoch 3 of 3" in found[0]
    flat = [{"val_loss": v, "steps": 430} for v in (0.30, 0.1, 0.0995)]  # fell 0.5 %: converged
    assert checks(_results([0.98, 0.98], [0.98, 0.98], dense_hist=flat)) == []


def test_pruned_beating_dense_beyond_the_seed_spread_is_flagged():
    # dense 83 % +- 0.5 over three seeds, pruned 87 %: far beyond the spread
    found = checks(_results([0.83, 0.835, 0.825], [0.87, 0.872, 0.868]))
    assert len(found) == 1 and found[0].startswith("Pruned models beat their dense parents")
    assert "mnist/lenet5 mp ×2 at 87.00 % against 83.00 % dense" in found[0]
    assert "seed-to-seed spread" in found[0]
    # within the spread: nothing
    assert checks(_results([0.83, 0.85, 0.81], [0.834, 0.852, 0.812])) == []


def test_one_model_uses_a_paired_test_on_the_disagreeing_images():
    # 87 vs 83 % with 6 % of predictions differing: 50 wins against 10 losses, p << 0.01
    assert checks(_results([0.83], [0.87], agreement=0.94))[0].startswith("Pruned models beat")
    # 0.3 points better with 20 % disagreeing: 101.5 vs 98.5, not significant
    assert checks(_results([0.83], [0.833], agreement=0.80)) == []
    # no agreement: a two-proportion test (conservative)
    assert "two-proportion test" in checks(_results([0.83], [0.88]))[0]


def test_retraining_too_short_at_mild_pruning_is_flagged():
    """studies/modern.toml's case: LTH level 1 (20 % pruned, x1.25) at 94 % against 98 % dense
    after 100 retraining steps."""
    found = checks(_results([0.98, 0.981, 0.979], [0.94, 0.941, 0.939], method="lth",
                            ratio=1.25, level=1, steps=100))
    assert len(found) == 1 and found[0].startswith("Retraining too short to recover")
    assert "lth ×1.25 (level 1) keeps 80 % of the parameters" in found[0]
    assert "after 100 retraining steps (the dense training took 1500)" in found[0]
    # strong pruning may cost accuracy; not fine-tuned models are not "retrained too short"
    assert checks(_results([0.98, 0.981, 0.979], [0.94, 0.941, 0.939], ratio=10.0)) == []
    assert checks(_results([0.98, 0.981, 0.979], [0.94, 0.941, 0.939], recipe=False)) == []


def test_findings_open_the_report(tmp_path):
    res = _results([0.83, 0.835, 0.825], [0.87, 0.872, 0.868])
    found = checks(res)
    page = render_report(res.frame, tmp_path, notices=found).read_text(encoding="utf-8")
    assert "Pruned models beat their dense parents" in page
    assert page.index("Pruned models beat") < page.index("<h2")


@pytest.mark.parametrize("bad", ["history", "agreement"])
def test_missing_pieces_do_not_break_the_checks(bad):
    res = _results([0.98, 0.98], [0.98, 0.98])
    if bad == "history":
        res.jobs["info"] = [None] * len(res.jobs)
    else:
        res.agreement = res.agreement.iloc[0:0]
    assert checks(res) == []
