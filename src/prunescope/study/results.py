"""Reading a study's results: the tidy per-class frame the analysis and the report consume.

``load_results(study_path)`` re-plans the spec (labels such as the model index come from the
plan, not the store) and joins it with the store's rows. Only jobs of the current plan appear.
"""
from __future__ import annotations

import io
import json
import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
import pandas as pd

from prunescope.metrics import functional_agreement
from prunescope.study.artifacts import ArtifactDamaged, read_bytes, redo_hint
from prunescope.study.plan import Plan, make_plan
from prunescope.study.spec import StudySpec, load_spec
from prunescope.study.store import Store

#: columns of :attr:`StudyResults.frame`, in order (docs/architecture.md, "study")
FRAME_COLUMNS = ("dataset", "arch", "method", "ratio", "model", "distribution", "cls",
                 "achieved_ratio", "seed", "support", "predicted", "correct")
#: columns of :attr:`StudyResults.jobs`
JOB_COLUMNS = ("id", "kind", "dataset", "arch", "method", "ratio", "level", "model", "seed",
               "distribution", "status", "error", "attempts", "started", "finished", "wall_s",
               "achieved_ratio", "artifacts", "checksums", "info", "deps", "params")
#: columns of :attr:`StudyResults.agreement` (plus ``level`` in studies with ``lth``)
AGREEMENT_COLUMNS = ("dataset", "arch", "method", "ratio", "model", "distribution",
                     "agreement")


def _no_agreement() -> pd.DataFrame:
    """An empty agreement frame with columns :data:`AGREEMENT_COLUMNS`."""
    return pd.DataFrame({c: [] for c in AGREEMENT_COLUMNS})


@dataclass(frozen=True, eq=False)
class StudyResults:
    """A study's results.

    ``StudyResults(frame, jobs, spec, spec_text, out_dir, load_agreement=...)``: ``agreement``
    is ``load_agreement()``, computed on first access and kept (:func:`load_results` passes a
    loader, so callers that never touch it, such as ``prunescope status`` and ``export``, read
    no predictions artifact); a frame at hand is given as ``load_agreement=lambda: frame``;
    without a loader it is an empty frame with columns :data:`AGREEMENT_COLUMNS`.

    Attributes:
        frame: tidy per-class counts, one row per (dataset, arch, method, ratio, model,
            distribution, cls) of every finished evaluation, columns :data:`FRAME_COLUMNS`:
            ``method`` is ``dense`` with ``ratio`` 1.0 for the unpruned models; ``ratio`` is the
            requested compression ratio (float), ``achieved_ratio`` the one the masks reached
            (1.0 for dense); ``model`` the 0-based model index, ``seed`` its seed; ``cls``
            int64 class id; ``support``/``predicted``/``correct`` int64 counts (row sum, column
            sum and diagonal of the confusion matrix). Studies with ``lth`` get one more
            column, ``level`` (float64: the LTH level 1, 2, ... of ``lth`` rows, NaN for every
            other row); there ``ratio`` is the smallest requested ratio the level is the first
            to reach, or the level's achieved ratio for levels in between
            (:func:`prunescope.study.plan.lth_ratio_labels`).
        jobs: one row per planned job, columns :data:`JOB_COLUMNS` (status ``pending`` for jobs
            not in the store yet; ``artifacts``/``checksums``/``info``/``deps``/``params`` parsed
            from JSON, ``artifacts`` ``{name: path or URL}`` under the study's artifact root,
            ``checksums`` ``{path or URL: sha256}`` of every file the job wrote;
            ``info`` holds ``cpu_s``, ``worker``, ``best_epoch``, ``history``, ``pack_size``...).
        spec: the validated spec; spec_text: the TOML text it came from.
        out_dir: the study's output folder.
        load_agreement: computes ``agreement`` (called once, on its first access).
        agreement: functional agreement with the dense model (SPEC 2), one row per finished
            pruned evaluation, columns :data:`AGREEMENT_COLUMNS` (+ ``level`` as in ``frame``):
            ``agreement`` (float64 in [0, 1]) is the fraction of the N_test test images of
            ``distribution`` on which the pruned model predicts the same class as the dense
            model of the same (dataset, arch, model). Evaluations without a ``predictions``
            artifact (run before predictions were kept), or whose dense partner has none,
            have no row; empty (with these columns) when no evaluation has one. Computed on
            first access when the results came from :func:`load_results`: the warning about
            missing predictions files, and the errors about mismatched ones, come then.
    """

    frame: pd.DataFrame
    jobs: pd.DataFrame
    spec: StudySpec
    spec_text: str
    out_dir: str
    load_agreement: Callable[[], pd.DataFrame] = field(default=_no_agreement, repr=False,
                                                       compare=False)

    @cached_property
    def agreement(self) -> pd.DataFrame:
        """Functional agreement with the dense model (see the class docstring):
        ``load_agreement()`` on first access, then kept."""
        return self.load_agreement()


def load_results(study: str | os.PathLike[str] | StudySpec, output: str | None = None,
                 plan: Plan | None = None) -> StudyResults:
    """Read the results of a study (finished or not).

    The ``agreement`` frame is computed on its first access (it reads every predictions
    artifact), so callers that use only ``frame`` and ``jobs`` read none.

    Args:
        study: the study TOML path, or an already loaded :class:`StudySpec`.
        output: output folder overriding the spec's (as ``prunescope run --output``).
        plan: the study's jobs, default ``make_plan(spec)`` (an audit passes its own).

    Raises:
        FileNotFoundError: the study has never been run (no store in its output folder).
    """
    spec = study if isinstance(study, StudySpec) else load_spec(study, output=output)
    plan = make_plan(spec) if plan is None else plan
    labels = pd.DataFrame({
        "id": [j.id for j in plan.jobs], "kind": [j.kind for j in plan.jobs],
        "dataset": [j.dataset for j in plan.jobs], "arch": [j.arch for j in plan.jobs],
        "method": [j.method for j in plan.jobs],
        "ratio": np.array([j.ratio for j in plan.jobs], dtype=np.float64),
        "model": np.array([j.model for j in plan.jobs], dtype=np.int64),
        "seed": np.array([j.seed for j in plan.jobs], dtype=np.int64),
        "distribution": [j.distribution for j in plan.jobs],
        "level": np.array([np.nan if j.level is None else j.level for j in plan.jobs],
                          dtype=np.float64),
        "parent": [j.params.get("parent") if j.kind == "evaluate" else None for j in plan.jobs],
    })
    with Store(spec.output, readonly=True, artifacts=spec.artifacts) as store:
        rows = store.jobs_frame()
        evals = store.evaluations_frame()
    rows = rows.drop(columns=["kind", "seed"])
    jobs = labels.merge(rows, on="id", how="left")
    jobs["status"] = jobs["status"].fillna("pending")
    jobs["attempts"] = jobs["attempts"].fillna(0).astype(np.int64)
    for col in ("artifacts", "checksums", "info", "deps", "params"):
        jobs[col] = [json.loads(x) if isinstance(x, str) else None for x in jobs[col]]
    with_level = any(j.level is not None for j in plan.jobs)
    frame = _frame(jobs, evals, with_level=with_level)
    return StudyResults(frame=frame, jobs=jobs[list(JOB_COLUMNS)], spec=spec,
                        spec_text=spec.text, out_dir=spec.output,
                        load_agreement=lambda: _agreement(jobs, with_level=with_level,
                                                          study=spec.path))


def _frame(jobs: pd.DataFrame, evals: pd.DataFrame, with_level: bool = False) -> pd.DataFrame:
    """Join evaluation counts with the labels of their evaluate job and its model's ratio
    (and the LTH ``level`` column when ``with_level``)."""
    done = jobs[(jobs["kind"] == "evaluate") & (jobs["status"] == "done")]
    achieved = jobs.set_index("id")["achieved_ratio"]
    keys = done[["id", "dataset", "arch", "method", "ratio", "model", "seed", "level"]].copy()
    keys["achieved_ratio"] = achieved.reindex(done["parent"]).to_numpy(dtype=np.float64)
    out = keys.merge(evals.rename(columns={"job_id": "id"}), on="id", how="inner")
    for col in ("cls", "support", "predicted", "correct", "model", "seed"):
        out[col] = out[col].astype(np.int64)
    cols = list(FRAME_COLUMNS) + (["level"] if with_level else [])
    out = out[cols].sort_values(
        ["dataset", "arch", "method", "ratio", "model", "distribution", "cls"], kind="stable")
    return out.reset_index(drop=True)


def read_predictions(url: str, expected: tuple[str, str] | None = None,
                     study: str | None = None) -> np.ndarray:
    """Predicted classes of one evaluate job, int64 ``(N_test,)`` in test-set order, from its
    ``predictions`` artifact (local path or fsspec URL).

    Raises:
        FileNotFoundError: the file is missing.
        ArtifactDamaged: its content differs from ``expected`` = ``(sha256, job id)``, or it is
            not an integer ``(N,)`` ``.npy`` array (truncated, overwritten); the message names
            the file and the commands that redo the job (``study``: the spec path in them).
    """
    data = read_bytes(url, expected, study)
    try:
        arr = np.load(io.BytesIO(data), allow_pickle=False)
    except (ValueError, EOFError, OSError) as e:
        raise ArtifactDamaged(f"predictions artifact {url} cannot be read ({e})"
                              + (f"; redo its job: {redo_hint(expected[1], study)}"
                                 if expected else "")) from e
    if arr.ndim != 1 or arr.dtype.kind not in "iu":
        raise ArtifactDamaged(f"predictions artifact {url} holds a {arr.dtype} array of shape "
                              f"{arr.shape}, expected integer (N_test,)")
    return arr.astype(np.int64)


def _agreement(jobs: pd.DataFrame, with_level: bool = False, study: str | None = None
               ) -> pd.DataFrame:
    """Functional agreement of every done pruned evaluation with the dense evaluation of the
    same (dataset, arch, model, distribution); see :attr:`StudyResults.agreement`.

    Each predictions file is read once; the pruned predictions sharing one dense partner are
    compared as one ``(k, N_test)`` stack. Files recorded but missing, or damaged (checksum or
    format, :func:`read_predictions`), are skipped with a warning naming them and the command
    that redoes their job (``study``: the spec path in it)."""
    cols = list(AGREEMENT_COLUMNS[:-1]) + (["level"] if with_level else [])
    empty = pd.DataFrame({c: pd.Series(dtype=np.float64 if c in ("ratio", "level", "agreement")
                                       else np.int64 if c == "model" else object)
                          for c in cols + ["agreement"]})
    ev = jobs[(jobs["kind"] == "evaluate") & (jobs["status"] == "done")]
    urls = [a.get("predictions") if isinstance(a, dict) else None for a in ev["artifacts"]]
    ev = ev.assign(url=urls)
    recorded = ev["checksums"] if "checksums" in ev else [None] * len(ev)
    expected = {u: (sums[u], jid) for jid, u, sums in zip(ev["id"], urls, recorded)
                if u is not None and isinstance(sums, dict) and u in sums}
    writer = dict(zip(urls, ev["id"]))
    ev = ev[ev["url"].notna()]
    key = ["dataset", "arch", "model", "distribution"]
    dense = ev[ev["method"] == "dense"]
    if dense.duplicated(key).any():
        raise ValueError("two dense evaluations share one (dataset, arch, model, distribution):"
                         f" {dense.loc[dense.duplicated(key, keep=False), 'id'].tolist()}")
    pairs = ev[ev["method"] != "dense"].merge(
        dense[key + ["url", "id"]].rename(columns={"url": "dense_url", "id": "dense_id"}),
        on=key, how="inner")
    if pairs.empty:
        return empty
    preds: dict[str, np.ndarray | None] = {}
    missing: list[str] = []
    damaged: list[str] = []
    for u in pd.unique(pd.concat([pairs["url"], pairs["dense_url"]])):
        try:
            preds[u] = read_predictions(u, expected.get(u), study)
        except (FileNotFoundError, ArtifactDamaged) as e:
            preds[u] = None
            (missing if isinstance(e, FileNotFoundError) else damaged).append(u)
    for what, bad in (("missing", missing), ("damaged", damaged)):
        if bad:
            # stacklevel: _agreement <- loader <- agreement <- cached_property <- caller
            warnings.warn(
                f"{len(bad)} predictions artifact(s) are {what}, their agreement rows are left "
                f"out: {bad[:3]}{' ...' if len(bad) > 3 else ''}; redo their evaluations: "
                f"`prunescope invalidate {study or 'STUDY.toml'} "
                f"{' '.join(writer[u][:12] for u in bad)}`, then `prunescope run "
                f"{study or 'STUDY.toml'}`", stacklevel=5)
    pairs = pairs[[preds[u] is not None and preds[d] is not None
                   for u, d in zip(pairs["url"], pairs["dense_url"])]]
    agree = pd.Series(np.nan, index=pairs.index, dtype=np.float64)
    for dense_url, grp in pairs.groupby("dense_url", sort=False):
        ref = preds[dense_url]
        stack = [preds[u] for u in grp["url"]]
        bad = [jid for jid, p in zip(grp["id"], stack) if p.shape != ref.shape]
        if bad:
            raise ValueError(f"predictions of evaluate job(s) {bad} do not have the shape "
                             f"{ref.shape} of their dense evaluation "
                             f"{grp['dense_id'].iloc[0]}; the artifacts do not belong together")
        st = np.stack(stack)
        agree[grp.index] = functional_agreement(st, np.broadcast_to(ref, st.shape))
    out = pairs[cols].assign(agreement=agree.to_numpy())
    out["model"] = out["model"].astype(np.int64)
    out = out.sort_values(cols[:6] + (["level"] if with_level else []), kind="stable")
    return out.reset_index(drop=True)


def export_results(results: StudyResults, fmt: str, out: str | os.PathLike[str] | None = None
                   ) -> str:
    """Write ``results.frame`` as ``parquet`` or ``csv``; default path
    ``<output>/results.<fmt>``. Returns the path written."""
    if fmt not in ("parquet", "csv"):
        raise ValueError(f"export format must be 'parquet' or 'csv', got {fmt!r}")
    path = str(out) if out is not None else os.path.join(results.out_dir, f"results.{fmt}")
    if fmt == "parquet":
        results.frame.to_parquet(path, index=False)
    else:
        results.frame.to_csv(path, index=False)
    return path
