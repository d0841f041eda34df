"""When a study's or an audit's numbers should not be read at face value (docs/audit.md).

:func:`checks` looks at a :class:`~prunescope.study.results.StudyResults` and returns one
sentence per problem it finds, for the report's banner and the audit's result:

* **Under-trained dense models**: a dense model whose validation loss was still falling at its
  last epoch (by more than :data:`STILL_FALLING`, relative, from the best earlier epoch) has not
  converged. Fine-tuning its pruned copies trains them further, so they may beat it and alpha
  mixes the effect of pruning with that of more training.
* **Pruned models beating their dense parents** on the nominal test set by more than the
  seed-to-seed spread: with two or more models per cell, the mean pruned accuracy exceeds the
  mean dense accuracy by more than the standard deviation (ddof 1) of the dense accuracies over
  the models; with one model, the exact one-sided sign (McNemar) test on the test images whose
  predictions differ rejects "no better" at :data:`LEVEL` (the number of those images is
  ``(1 - agreement) x N``, an upper bound on the discordant pairs, so the test is conservative;
  without agreement, a normal test on two independent proportions, also conservative).
* **Retraining too short to recover**: a retrained pruned model (fine-tuned, an LTH level or
  structured) that kept at least half of the parameters (achieved ratio <= :data:`MILD_RATIO`)
  yet lost more than :data:`RECOVERY_POINTS` of accuracy, beyond the spread as above: at such
  mild pruning a retraining that converged recovers the dense accuracy, so the retraining
  (its optimiser steps are named) was too short.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats as st

#: relative fall of the validation loss in the last epoch above which a model was still training
STILL_FALLING = 0.01
#: significance level of the one-model tests (the report's intervals are 99 %)
LEVEL = 0.01
#: achieved compression ratio up to which pruning is mild (at most half the parameters removed)
MILD_RATIO = 2.0
#: accuracy loss (fraction) at mild pruning above which retraining did not recover
RECOVERY_POINTS = 0.01

_MODEL_KINDS = ("train", "source")
_FITTED_KINDS = ("prune_finetune", "lth_level", "structured")
_KEYS = ["dataset", "arch", "method", "ratio", "level", "model"]


def _steps(info: Any) -> int:
    hist = (info or {}).get("history") or []
    return int(sum(e.get("steps", 0) for e in hist))


def _accuracies(frame: pd.DataFrame, nominal: str) -> pd.DataFrame:
    """Nominal accuracy per evaluated model: ``_KEYS`` + ``correct, support, accuracy``."""
    nom = frame[frame["distribution"] == nominal]
    if "level" not in nom.columns:
        nom = nom.assign(level=np.nan)
    nom = nom.assign(level=nom["level"].fillna(-1.0))
    acc = nom.groupby(_KEYS, sort=False)[["correct", "support"]].sum().reset_index()
    acc["accuracy"] = acc["correct"] / acc["support"]
    return acc


def _undertrained(jobs: pd.DataFrame) -> list[str]:
    rows = []
    for j in jobs[jobs["kind"].isin(_MODEL_KINDS) & (jobs["status"] == "done")].itertuples():
        hist = (j.info or {}).get("history") or []
        losses = [float(e["val_loss"]) for e in hist if e.get("val_loss") is not None]
        if len(losses) < 2:
            continue
        before, last = min(losses[:-1]), losses[-1]
        if last < before * (1 - STILL_FALLING):
            rows.append((j.dataset, j.arch, before, last, len(losses)))
    if not rows:
        return []
    n_dense = int((jobs["kind"].isin(_MODEL_KINDS) & (jobs["status"] == "done")).sum())
    cells = sorted({f"{d}/{a}" for d, a, *_ in rows})
    d, a, before, last, n = rows[0]
    fall = np.mean([1 - r[3] / r[2] for r in rows])
    return [f"Under-trained dense model{'s' if n_dense > 1 else ''}: {len(rows)} of {n_dense} "
            f"({', '.join(cells)}) still lowered their validation loss in their last epoch "
            f"(by {100 * fall:.0f} % on average; e.g. {before:.3g} -> {last:.3g} in epoch {n} of "
            f"{n}). Fine-tuning their pruned copies trains them further, so pruned models can "
            "beat them and α mixes pruning with more training: train the dense models longer "
            "(more epochs) before reading these results as the effect of pruning."]


def _paired(acc: pd.DataFrame, agreement: pd.DataFrame | None, nominal: str) -> pd.DataFrame:
    """Pruned-model accuracies joined with their dense parent's (``acc_dense``) and, where known,
    the agreement of their predictions."""
    dense = acc[acc["method"] == "dense"][["dataset", "arch", "model", "accuracy"]]
    pruned = acc[acc["method"] != "dense"].merge(
        dense.rename(columns={"accuracy": "acc_dense"}), on=["dataset", "arch", "model"])
    if agreement is not None and len(agreement):
        ag = agreement[agreement["distribution"] == nominal]
        ag = ag.assign(level=ag["level"].fillna(-1.0) if "level" in ag.columns else -1.0)
        pruned = pruned.merge(ag[_KEYS + ["agreement"]], on=_KEYS, how="left")
    else:
        pruned["agreement"] = np.nan
    return pruned


def _beyond_noise(cell: pd.DataFrame, spread: float, sign: int) -> tuple[bool, str]:
    """Whether the cell's models differ from their dense parents in direction ``sign`` (+1:
    better) beyond the spread (two or more models) or significantly (one); and how it was
    judged."""
    diff = float((cell["accuracy"] - cell["acc_dense"]).mean()) * sign
    if diff <= 0:
        return False, ""
    if len(cell) >= 2 and not math.isnan(spread):
        return diff > spread, f"seed-to-seed spread of the dense accuracy {100 * spread:.2f} points"
    r = cell.iloc[0]
    n = int(r["support"])
    if not math.isnan(r["agreement"]):
        discordant = int(round((1 - r["agreement"]) * n))
        wins = int(round((discordant + diff * n) / 2))
        if discordant == 0:
            return False, ""
        p = st.binomtest(min(wins, discordant), discordant, 0.5, alternative="greater").pvalue
        return p < LEVEL, f"sign test on the {discordant} test images where they disagree, p = {p:.2g}"
    a, b = float(r["accuracy"]), float(r["acc_dense"])
    se = math.sqrt((a * (1 - a) + b * (1 - b)) / n)
    z = diff / se if se > 0 else math.inf
    p = float(st.norm.sf(z))
    return p < LEVEL, f"two-proportion test, p = {p:.2g}"


def _cells(pruned: pd.DataFrame) -> list[tuple[tuple, pd.DataFrame]]:
    return list(pruned.groupby(["dataset", "arch", "method", "ratio", "level"], sort=True))


def _label(key: tuple) -> str:
    d, a, m, r, lvl = key
    return f"{d}/{a} {m} ×{r:g}" + (f" (level {int(lvl)})" if lvl >= 0 else "")


def _beats_dense(pruned: pd.DataFrame, spread: dict[tuple[str, str], float]) -> list[str]:
    hits = []
    for key, cell in _cells(pruned):
        ok, how = _beyond_noise(cell, spread.get(key[:2], math.nan), +1)
        if ok:
            hits.append((key, cell, how))
    if not hits:
        return []
    key, cell, how = max(hits, key=lambda h: float((h[1]["accuracy"] - h[1]["acc_dense"]).mean()))
    return [f"Pruned models beat their dense parents: {len(hits)} cell(s) are more accurate than "
            f"the dense models beyond noise, e.g. {_label(key)} at "
            f"{100 * cell['accuracy'].mean():.2f} % against {100 * cell['acc_dense'].mean():.2f} % "
            f"dense ({how}). Pruning does not add accuracy: the fine-tuning trained an "
            "under-trained dense model further, so the changes shown mix pruning with extra "
            "training. Train the dense model to convergence, or compare against it fine-tuned "
            "as long without pruning."]


def _too_short(pruned: pd.DataFrame, jobs: pd.DataFrame, spread: dict[tuple[str, str], float]
               ) -> list[str]:
    models = jobs[jobs["kind"].isin(_FITTED_KINDS) & (jobs["status"] == "done")].copy()
    models = models[[isinstance(p, dict) and p.get("recipe") is not None for p in models["params"]]]
    if models.empty:
        return []
    models["level"] = models["level"].fillna(-1.0)
    models["steps"] = [_steps(i) for i in models["info"]]
    fitted = pruned.merge(models[_KEYS + ["achieved_ratio", "steps"]], on=_KEYS)
    fitted = fitted[fitted["achieved_ratio"] <= MILD_RATIO + 1e-9]
    dense_steps = {(j.dataset, j.arch): _steps(j.info) for j in
                   jobs[jobs["kind"].isin(_MODEL_KINDS) & (jobs["status"] == "done")].itertuples()}
    hits = []
    for key, cell in _cells(fitted):
        loss = float((cell["acc_dense"] - cell["accuracy"]).mean())
        if loss <= RECOVERY_POINTS:
            continue
        ok, how = _beyond_noise(cell, spread.get(key[:2], math.nan), -1)
        if ok:
            hits.append((key, cell, loss, how))
    out = []
    for key, cell, loss, how in hits:
        steps = int(cell["steps"].median())
        dense = dense_steps.get(key[:2], 0)
        out.append(f"Retraining too short to recover: {_label(key)} keeps "
                   f"{100 / float(cell['achieved_ratio'].mean()):.0f} % of the parameters yet is "
                   f"{100 * loss:.1f} points below its dense parent{'s' if len(cell) > 1 else ''} "
                   f"({how}) after {steps} retraining steps"
                   + (f" (the dense training took {dense})" if dense else "")
                   + ". Mild pruning costs almost nothing once retraining converges: retrain "
                   "longer (more fine-tuning or [lth] retrain epochs) before comparing methods.")
    return out


def checks(results: Any, nominal: str = "nominal") -> list[str]:
    """Sentences naming what the results cannot be taken as (see the module docstring).

    Args:
        results: a :class:`~prunescope.study.results.StudyResults` (``frame``, ``jobs``,
            ``agreement``); an audit's or a study's, finished or not.
        nominal: name of the unshifted test distribution.

    Returns:
        One sentence per finding (under-trained dense models first), ``[]`` when none.
    """
    frame, jobs = results.frame, results.jobs
    out = _undertrained(jobs)
    if frame.empty or not (frame["distribution"] == nominal).any():
        return out
    acc = _accuracies(frame, nominal)
    try:
        agreement = results.agreement
    except (FileNotFoundError, ValueError):
        agreement = None
    pruned = _paired(acc, agreement, nominal)
    dense = acc[acc["method"] == "dense"]
    spread = {k: float(g["accuracy"].std(ddof=1)) if len(g) >= 2 else math.nan
              for k, g in dense.groupby(["dataset", "arch"])}
    return out + _beats_dense(pruned, spread) + _too_short(pruned, jobs, spread)
