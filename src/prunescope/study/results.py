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
from prunescope.metrics.underrepresented import Exemplars
from prunescope.study.artifacts import ArtifactDamaged, read_bytes, redo_hint
from prunescope.study.plan import Plan, make_plan
from prunescope.study.spec import StudySpec, load_spec
from prunescope.study.store import Store

#: columns of :attr:`StudyResults.frame`, in order (docs/architecture.md, "study")
FRAME_COLUMNS = ("dataset", "arch", "method", "ratio", "model", "distribution", "cls",
                 "achieved_ratio", "seed", "support", "predicted", "correct", "objective")
#: columns of :attr:`StudyResults.jobs`
JOB_COLUMNS = ("id", "kind", "dataset", "arch", "method", "ratio", "level", "model", "seed",
               "distribution", "status", "error", "attempts", "started", "finished", "wall_s",
               "achieved_ratio", "artifacts", "checksums", "info", "deps", "params",
               "objective")
#: columns of :attr:`StudyResults.agreement` (plus ``level`` in studies with ``lth``)
AGREEMENT_COLUMNS = ("dataset", "arch", "method", "ratio", "model", "distribution",
                     "objective", "agreement")


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
    ``training_splits`` and ``exemplars`` are loaded the same way (``load_training_splits``,
    ``load_exemplars``; without a loader both are ``None`` and the report leaves out their
    sections).

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
            model of the same (dataset, arch, model); ``objective`` is the pruned model's
            fine-tuning objective (``ce`` by default). Evaluations without a ``predictions``
            artifact (run before predictions were kept), or whose dense partner has none,
            have no row; empty (with these columns) when no evaluation has one. Computed on
            first access when the results came from :func:`load_results`: the warning about
            missing predictions files, and the errors about mismatched ones, come then.
        load_training_splits, load_exemplars: compute ``training_splits`` and ``exemplars``
            (each called once, on its first access).
        training_splits: :func:`training_splits` of the spec (per-class training counts of
            every dataset label), or ``None``.
        exemplars: :func:`load_exemplars` of the study (its pruning-identified exemplars, read
            from the predictions artifacts on first access), or ``None``.
    """

    frame: pd.DataFrame
    jobs: pd.DataFrame
    spec: StudySpec
    spec_text: str
    out_dir: str
    load_agreement: Callable[[], pd.DataFrame] = field(default=_no_agreement, repr=False,
                                                       compare=False)
    load_training_splits: Callable[[], pd.DataFrame | None] = field(
        default=lambda: None, repr=False, compare=False)
    load_exemplars: Callable[[], Exemplars | None] = field(default=lambda: None, repr=False,
                                                           compare=False)

    @cached_property
    def agreement(self) -> pd.DataFrame:
        """Functional agreement with the dense model (see the class docstring):
        ``load_agreement()`` on first access, then kept."""
        return self.load_agreement()

    @cached_property
    def training_splits(self) -> pd.DataFrame | None:
        """Per-class training counts of every dataset label: ``load_training_splits()`` on first
        access, then kept."""
        return self.load_training_splits()

    @cached_property
    def exemplars(self) -> Exemplars | None:
        """The study's pruning-identified exemplars: ``load_exemplars()`` on first access, then
        kept."""
        return self.load_exemplars()


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
        "dataset": [j.dataset if j.imbalance is None else f"{j.dataset}-{j.imbalance}"
                    for j in plan.jobs],
        "arch": [j.arch for j in plan.jobs],
        "method": [j.method for j in plan.jobs],
        "ratio": np.array([j.ratio for j in plan.jobs], dtype=np.float64),
        "model": np.array([j.model for j in plan.jobs], dtype=np.int64),
        "seed": np.array([j.seed for j in plan.jobs], dtype=np.int64),
        "distribution": [j.distribution for j in plan.jobs],
        "level": np.array([np.nan if j.level is None else j.level for j in plan.jobs],
                          dtype=np.float64),
        "parent": [j.params.get("parent") if j.kind == "evaluate" else None for j in plan.jobs],
        "objective": [j.objective for j in plan.jobs],
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
                                                          study=spec.path),
                        load_training_splits=lambda: training_splits(spec),
                        load_exemplars=lambda: _exemplars(jobs, spec))


def _frame(jobs: pd.DataFrame, evals: pd.DataFrame, with_level: bool = False) -> pd.DataFrame:
    """Join evaluation counts with the labels of their evaluate job and its model's ratio
    (and the LTH ``level`` column when ``with_level``)."""
    done = jobs[(jobs["kind"] == "evaluate") & (jobs["status"] == "done")]
    achieved = jobs.set_index("id")["achieved_ratio"]
    keys = done[["id", "dataset", "arch", "method", "ratio", "model", "seed", "level",
                 "objective"]].copy()
    keys["achieved_ratio"] = achieved.reindex(done["parent"]).to_numpy(dtype=np.float64)
    out = keys.merge(evals.rename(columns={"job_id": "id"}), on="id", how="inner")
    for col in ("cls", "support", "predicted", "correct", "model", "seed"):
        out[col] = out[col].astype(np.int64)
    cols = list(FRAME_COLUMNS) + (["level"] if with_level else [])
    out = out[cols].sort_values(
        ["dataset", "arch", "method", "ratio", "objective", "model", "distribution", "cls"],
        kind="stable")
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


def _done_evaluations(jobs: pd.DataFrame) -> pd.DataFrame:
    """The done evaluate jobs that recorded a predictions artifact, with its path as ``url``
    and ``expected``: ``(sha256, job id)`` recorded for it (``None`` for stores of prunescope
    0.1, which recorded none)."""
    ev = jobs[(jobs["kind"] == "evaluate") & (jobs["status"] == "done")]
    urls = [a.get("predictions") if isinstance(a, dict) else None for a in ev["artifacts"]]
    recorded = ev["checksums"] if "checksums" in ev else [None] * len(ev)
    expected = [(sums[u], jid) if u is not None and isinstance(sums, dict) and u in sums
                else None for jid, u, sums in zip(ev["id"], urls, recorded)]
    ev = ev.assign(url=urls, expected=expected)
    return ev[ev["url"].notna()]


def _read_checked(ev: pd.DataFrame, urls, study: str | None, bad: dict[str, list[str]]
                  ) -> dict[str, np.ndarray | None]:
    """``{url: predictions or None}`` of the predictions files ``urls`` of evaluations ``ev``
    (:func:`_done_evaluations`), each checked against its recorded sha256
    (:func:`read_predictions`); a missing or damaged file is ``None`` and appended to
    ``bad["missing"]`` or ``bad["damaged"]``."""
    expected = dict(zip(ev["url"], ev["expected"]))
    preds: dict[str, np.ndarray | None] = {}
    for u in urls:
        try:
            preds[u] = read_predictions(u, expected.get(u), study)
        except (FileNotFoundError, ArtifactDamaged) as e:
            preds[u] = None
            bad.setdefault("missing" if isinstance(e, FileNotFoundError) else "damaged", []).append(u)
    return preds


def _warn_unreadable(ev: pd.DataFrame, bad: dict[str, list[str]], study: str | None,
                     consequence: str, stacklevel: int) -> None:
    """One warning per kind of :func:`_read_checked`'s ``bad`` files: how many, ``consequence``,
    the first files and the command that redoes their evaluations."""
    writer = dict(zip(ev["url"], ev["id"]))
    for what, urls in sorted(bad.items(), reverse=True):
        warnings.warn(
            f"{len(urls)} predictions artifact(s) are {what}, {consequence}: "
            f"{urls[:3]}{' ...' if len(urls) > 3 else ''}; redo their evaluations: "
            f"`prunescope invalidate {study or 'STUDY.toml'} "
            f"{' '.join(writer[u][:12] for u in urls)}`, then `prunescope run "
            f"{study or 'STUDY.toml'}`", stacklevel=stacklevel + 1)


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
    ev = _done_evaluations(jobs)
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
    bad: dict[str, list[str]] = {}
    preds = _read_checked(ev, pd.unique(pd.concat([pairs["url"], pairs["dense_url"]])), study, bad)
    # stacklevel: _agreement <- loader <- agreement <- cached_property <- caller
    _warn_unreadable(ev, bad, study, "their agreement rows are left out", stacklevel=5)
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
    out = out.sort_values(cols[:7] + (["level"] if with_level else []), kind="stable")
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


def training_splits(spec: StudySpec) -> pd.DataFrame:
    """The training split of every cell's models, per class.

    Returns:
        One row per (dataset label, class): ``dataset`` (the results' label, e.g.
        ``fashion-mnist-lt10``), ``base_dataset`` (the registry name), ``profile``
        (``balanced``, ``exponential`` or ``step``), ``imbalance_ratio`` (1.0 when balanced),
        ``cls`` and ``train_count`` (images of the class in the training split, validation
        hold-out included: the counts that enter the train jobs' ids).
    """
    from prunescope.data import expected

    rows = []
    for cell in {c.label: c for c in spec.cells}.values():
        imb = cell.imbalance
        counts = imb.counts(cell.dataset) if imb else expected(cell.dataset).counts["train"]
        for cls, n in enumerate(counts):
            rows.append((cell.label, cell.dataset, imb.profile if imb else "balanced",
                         imb.ratio if imb else 1.0, cls, int(n)))
    return pd.DataFrame(rows, columns=["dataset", "base_dataset", "profile", "imbalance_ratio",
                                       "cls", "train_count"]).astype(
        {"imbalance_ratio": np.float64, "cls": np.int64, "train_count": np.int64})


def load_exemplars(results: StudyResults, gallery: int = 12,
                   test_sets: dict[str, tuple[np.ndarray, np.ndarray, tuple[str, ...]]] | None
                   = None) -> Exemplars:
    """PIEs of every pruned cell of ``results`` from the stored predictions (Hooker et al. 2019:
    the modal label over the cell's pruned models differs from the modal label over the dense
    models; :func:`prunescope.metrics.underrepresented.pie_mask`). With one model per cell (an
    audit) these are the test images whose prediction pruning changes.

    Models whose predictions artifact is absent, missing or damaged (its recorded sha256,
    :func:`read_predictions`) are left out of their cell with a warning naming the files and
    the command that redoes them; a cell without a model left is left out. ``gallery``: how
    many PIE thumbnails to keep per nominal cell (the first by test-set index). ``test_sets``:
    ``{dataset label: (x uint8 NHWC, y int64, class names)}`` for data that are not a registry
    dataset (an audited user model's own test set, in the order it was evaluated); the others
    are read from the registry (``test_subset`` applied as the evaluations did).
    """
    return _exemplars(results.jobs, results.spec, gallery, test_sets)


def _exemplars(jobs: pd.DataFrame, spec: StudySpec, gallery: int = 12,
               test_sets: dict[str, tuple[np.ndarray, np.ndarray, tuple[str, ...]]] | None = None
               ) -> Exemplars:
    """:func:`load_exemplars` of a study's ``jobs`` frame and spec."""
    from prunescope.data import info, load, train_val_indices
    from prunescope.metrics.underrepresented import accuracy_on, pie_class_share, pie_mask

    done = jobs[(jobs["kind"] == "evaluate") & (jobs["status"] == "done")]
    ev = _done_evaluations(jobs)
    missing = len(done) - len(ev)
    bad: dict[str, list[str]] = {}
    base_of = {c.label: c.dataset for c in spec.cells}
    key = ["dataset", "arch", "distribution"]
    cells = ["dataset", "arch", "method", "ratio", "distribution"]
    summary, per_class, acc_rows, images = [], [], [], []
    thumbs: dict[tuple[str, int], np.ndarray] = {}
    classes: dict[str, tuple[str, ...]] = {}
    labels: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
    for (dataset, arch, dist), grp in ev.groupby(key, sort=True):
        base = base_of.get(dataset, dataset)
        if dataset not in labels and test_sets and dataset in test_sets:
            x_user, y_user, names = test_sets[dataset]
            y_user = np.asarray(y_user, dtype=np.int64)
            labels[dataset] = (y_user, np.arange(len(y_user)), np.asarray(x_user))
            classes[dataset] = tuple(names)
        if dataset not in labels:
            test = load(base, "test")
            idx = np.arange(len(test.y))
            if spec.test_subset is not None and spec.test_subset < len(test.y):
                _, idx = train_val_indices(test.y, spec.test_subset, seed=spec.split_seed)
            labels[dataset] = (test.y[idx].astype(np.int64), idx, test.x)
            classes[dataset] = tuple(info(base).classes)
        y, idx, x_all = labels[dataset]
        n_classes = len(classes[dataset])

        def stack(frame: pd.DataFrame) -> tuple[np.ndarray, list[int]]:
            read = _read_checked(ev, frame["url"], spec.path, bad)
            preds, models = [], []
            for url, model in zip(frame["url"], frame["model"]):
                p = read[url]
                if p is not None and p.shape == y.shape:
                    preds.append(p)
                    models.append(int(model))
            return (np.stack(preds) if preds else np.empty((0, len(y)), np.int64)), models

        dense, dense_models = stack(grp[grp["method"] == "dense"])
        if not len(dense):
            continue
        for (method, ratio), cg in grp[grp["method"] != "dense"].groupby(["method", "ratio"],
                                                                           sort=True):
            pruned, pruned_models = stack(cg)
            if not len(pruned):
                continue
            is_pie, d_mode, p_mode = pie_mask(dense, pruned, n_classes)
            cell = dict(dataset=dataset, arch=arch, method=method, ratio=float(ratio),
                        distribution=dist)
            n_pies = int(is_pie.sum())
            summary.append(cell | dict(n_images=len(y), n_dense=len(dense),
                                       n_pruned=len(pruned), n_pies=n_pies,
                                       pie_fraction=n_pies / len(y)))
            share = pie_class_share(is_pie, y, n_classes)
            per_class.extend(cell | dict(cls=c, n_pies=int(np.sum(is_pie & (y == c))),
                                         share=float(share[c])) for c in range(n_classes))
            for group, preds, models in (("dense", dense, dense_models),
                                         ("pruned", pruned, pruned_models)):
                a_pie, a_rest = accuracy_on(preds, y, is_pie), accuracy_on(preds, y, ~is_pie)
                acc_rows.extend(cell | dict(model=m, group=group, acc_pie=float(ap),
                                            acc_rest=float(ar))
                                for m, ap, ar in zip(models, a_pie, a_rest))
            where = np.flatnonzero(is_pie)
            images.extend(cell | dict(index=int(idx[i]), label=int(y[i]),
                                      dense_label=int(d_mode[i]), pruned_label=int(p_mode[i]))
                          for i in where)
            if dist == "nominal":
                for i in where[:gallery]:
                    thumbs[(dataset, int(idx[i]))] = x_all[idx[i]]
    # stacklevel: _exemplars <- load_exemplars or the loader <- caller
    _warn_unreadable(ev, bad, spec.path, "their models are left out of the PIE tables",
                     stacklevel=3)
    if missing:
        warnings.warn(f"{missing} evaluation(s) have no predictions artifact; their cells' PIEs "
                      "use the other models only", stacklevel=2)
    cols_img = cells + ["index", "label", "dense_label", "pruned_label"]
    return Exemplars(
        summary=pd.DataFrame(summary, columns=cells + ["n_images", "n_dense", "n_pruned",
                                                       "n_pies", "pie_fraction"]),
        per_class=pd.DataFrame(per_class, columns=cells + ["cls", "n_pies", "share"]),
        accuracy=pd.DataFrame(acc_rows, columns=cells + ["model", "group", "acc_pie",
                                                         "acc_rest"]),
        images=pd.DataFrame(images, columns=cols_img),
        thumbnails=thumbs, classes=classes)


def train_recalls(results: StudyResults) -> pd.DataFrame | None:
    """The training-split recalls ``ceag`` jobs record (``info["train_recall"]``), as a paired
    frame for :func:`prunescope.analysis.mitigation`: one row per (pruned model, class) with
    ``dataset, arch, method, ratio, model, objective, cls``, ``value_before`` (the dense
    parent's recall), ``value_after`` (the fine-tuned model's), ``accuracy_before``,
    ``accuracy_after`` (fractions) and the job's ``tolerance``; ``None`` when no job has them."""
    jobs = results.jobs
    done = jobs[(jobs["kind"] == "prune_finetune") & (jobs["status"] == "done")]
    rows = []
    for j in done.itertuples():
        rec = (j.info or {}).get("train_recall")
        if not rec:
            continue
        tol = dict((j.params or {}).get("objective_options") or ()).get("tolerance", np.nan)
        for c, (before, after) in enumerate(zip(rec["dense"], rec["pruned"])):
            rows.append({"dataset": j.dataset, "arch": j.arch, "method": j.method,
                         "ratio": float(j.ratio), "model": int(j.model),
                         "objective": j.objective, "cls": c, "value_before": before,
                         "value_after": after, "accuracy_before": rec["dense_accuracy"],
                         "accuracy_after": rec["accuracy"], "tolerance": float(tol)})
    return pd.DataFrame(rows) if rows else None
