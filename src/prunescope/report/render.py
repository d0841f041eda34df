"""``render_report``: a tidy results frame -> figures, tables and one self-contained report.html.

Every frame comes from :mod:`prunescope.analysis` (over :mod:`prunescope.metrics` and
:mod:`prunescope.stats`); this module only lays them out, names them and draws them (SPEC 6).
"""
from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure

import prunescope
from prunescope import analysis, metrics, stats
from prunescope.analysis import Analysis, Shift, analyse
from prunescope.metrics.underrepresented import Exemplars
from prunescope.report import figures, tables
from prunescope.report.groups import Group, factor_groups
from prunescope.report.html import Section, TableItem, build_page, figure_item, table_item
from prunescope.report.pvalues import (CORRECTION_NAMES, FAMILY_SIZES, UNDEFINED_P,
                                       pvalue_caption, pvalue_display)
from prunescope.report.style import slug
from prunescope.report.mitigation import mitigation_section
from prunescope.report.underrepresented import exemplar_section, longtail_section

#: Names of the interval methods of E[alpha] (``stats.CI_METHODS``) in captions.
CI_NAMES = {"t": "t-interval", "bootstrap": "bootstrap interval (BCa, 9,999 resamples)"}
CAPTIONS = {
    "scatter": "Each point is one class of one model: its normalized recall balance Bn before "
               "pruning (x) against after pruning at the row's ratio (y); the solid line is the "
               "pooled through-origin least-squares fit with slope α̂ (α̂ > 1: the gaps between "
               "classes widen, intensification; α̂ < 1: they shrink), the dashed line y = x is no "
               "change, r² is the uncentered r² of the through-origin fit and Ā the mean accuracy "
               "after pruning.",
    "box": "Each box summarises the per-model slopes α_t(m) over the models of one cell (median, "
           "quartiles, whiskers to 1.5 IQR, dots = models); the mark under each ratio is < or > "
           "when the 99 % CI of E[α] lies below or above 1 and ? when it contains 1.",
    "ci": "Mean per-model slope α with its 99 % {interval} for each cell; an interval entirely "
          "above the dashed line at 1 is significant intensification, entirely below it "
          "significant de-intensification.",
    "acc": "Mean test accuracy (solid, left axis) and mean slope α (dashed, right axis) against "
           "the compression ratio, each with ±1 standard error over models: how accuracy loss and "
           "the widening of class gaps grow together.",
    "potential": "Prune potential as Lost in Pruning reports it: the fraction of parameters "
                 "removed, 1 − 1/t, at the largest tested compression ratio t (the ratio the "
                 "pruned model achieved) at which its error on each test distribution stays "
                 "within δ of its dense parent's error on the same distribution; mean over "
                 "models with 99 % CI, the ratio t on the right axis (0 % = only the dense "
                 "model qualifies): a distribution whose potential is below the nominal one is "
                 "where pruning costs more robustness than test accuracy shows.",
    "agreement": "Functional agreement: the fraction of test images on which the pruned model "
                 "predicts the same class as its dense parent on the same test distribution "
                 "(mean over models with 99 % t-interval; 100 % at 1x by definition): accuracy "
                 "can stay level while the pruned model answers differently, and agreement "
                 "that falls faster under shift than on the nominal set shows a pruned model "
                 "diverging from its parent where robustness matters.",
    "error": "Mean top-1 error against the compression ratio for every test distribution (dense "
             "model at 1x; the nominal test set in black): curves that rise earlier than the "
             "nominal one show where pruning hurts robustness first.",
}


def _add_figure(section: Section, title: str, caption: str, anchor: str, stem: Path,
                draw: Callable[..., Figure], *args: object) -> None:
    """Draw ``draw(*args)`` (a function of :mod:`figures`), save it to ``stem`` (.png, .pdf) and
    list it in ``section``."""
    section.figures.append(figure_item(draw(*args), stem, title, caption, anchor))


def _alpha_sections(an: Analysis, out: Path, groups: list[Group]) -> list[Section]:
    fig_dir = out / "figures"
    scatter = Section("scatter", "Recall balance before vs after pruning (scatter matrices)",
                      intro=CAPTIONS["scatter"])
    box = Section("boxplots", "Per-model slopes α_t(m) (boxplots)", intro=CAPTIONS["box"])
    ci_caption = CAPTIONS["ci"].format(interval=CI_NAMES[an.ci_method])
    cis = Section("ci-plots", "99 % confidence intervals of E[α]", intro=ci_caption)
    if an.ci is None:
        cis.notices.append("No confidence intervals: every cell has a single model (one seed); "
                           "an interval needs at least two independent models.")
    for g in groups:
        _add_figure(scatter, g.title, CAPTIONS["scatter"], f"fig-scatter-{g.slug}",
                    fig_dir / f"scatter_{g.slug}", figures.scatter_matrix, g.select(an.paired),
                    g.select(an.pooled), g.factor, g.title)
        ci = None if an.ci is None else g.select(an.ci)
        _add_figure(box, g.title, CAPTIONS["box"], f"fig-box-{g.slug}",
                    fig_dir / f"boxplot_{g.slug}", figures.alpha_boxplots, g.select(an.alphas),
                    ci, g.factor, g.title)
        if ci is not None and ci["n"].max() >= 2:
            _add_figure(cis, g.title, ci_caption, f"fig-ci-{g.slug}",
                        fig_dir / f"ci_{g.slug}", figures.ci_plot, ci, g.factor, g.title)
    acc = Section("accuracy", "Accuracy and intensification vs compression", intro=CAPTIONS["acc"])
    _add_figure(acc, "All cells", CAPTIONS["acc"], "fig-accuracy-alpha",
                fig_dir / "accuracy_alpha", figures.accuracy_alpha_plot, an.alphas, an.dense_acc)
    return [scatter, box, cis, acc]


def _shift_section(shift: Shift | None, out: Path, nominal: str) -> Section:
    """Prune potential, error, excess error and alpha per test distribution (``shift``: from
    ``analysis.analyse_shift``; None: the study has only the nominal test set)."""
    sec = Section("shift", "Beyond test accuracy (Lost in Pruning views)")
    if shift is None:
        sec.notices.append(f"Only the nominal test distribution ({nominal!r}) was evaluated: add "
                           "distributions (corruptions, noise) to the study's 'distributions' "
                           "to get prune potential and error-vs-ratio per distribution.")
        return sec
    sec.notices += shift.notices
    dists, delta, errors = shift.distributions, shift.delta, shift.errors
    sec.intro = (f"Test distributions: {', '.join(dists)}. Tolerance δ = {delta:g} "
                 "percentage points.")
    fig_dir = out / "figures"
    for (dataset, arch), sub in shift.potential_summary.groupby(["dataset", "arch"], sort=True):
        title = f"{dataset} · {arch}"
        stem = slug(dataset, arch)
        _add_figure(sec, f"Prune potential: {title}", CAPTIONS["potential"],
                    f"fig-potential-{stem}", fig_dir / f"prune_potential_{stem}",
                    figures.prune_potential_plot, sub, dists, title, delta)
        err = errors[(errors["dataset"] == dataset) & (errors["arch"] == arch)]
        _add_figure(sec, f"Error vs ratio: {title}", CAPTIONS["error"], f"fig-error-{stem}",
                    fig_dir / f"error_vs_ratio_{stem}", figures.error_vs_ratio_plot, err, dists,
                    title)
    tdir = out / "tables"
    pot_tab = shift.potential_summary[[
        "dataset", "arch", "method", "distribution", "n", "mean", "ci_low", "ci_high", "t",
        "t_ci_low", "t_ci_high", "mean_t"]].rename(columns={
            "mean": "removed (%)", "ci_low": "99% CI low (%)", "ci_high": "99% CI high (%)",
            "t_ci_low": "t 99% CI low", "t_ci_high": "t 99% CI high", "mean_t": "mean of t"})
    sec.tables.append(table_item(pot_tab, tdir / "prune_potential",
                             "Prune potential per distribution",
                             "Fraction of parameters removed, 1 − 1/t, at the largest tested "
                             "ratio t (achieved by the pruned model) with error within "
                             f"{delta:g} points of the dense model: mean over models with 99 % "
                             "t-interval (as Lost in Pruning reports it); t = 1 / (1 − mean "
                             "removed), the ratio that removes that mean fraction (the harmonic "
                             "mean of the models' t), with the interval mapped the same way; "
                             "mean of t for comparison only (a mean of ratios is dominated by "
                             "large ones: {2, 50} has mean t 26 > 20 of {20, 20}, yet removes "
                             "74 % < 95 %).", "tab-prune-potential", digits=2))
    if not shift.excess.empty:
        keys = ["dataset", "arch", "method", "ratio", "distribution"]
        ex_tab = shift.excess[[*keys, "n", "mean", "ci_low", "ci_high", "label"]].copy()
        for c in ("mean", "ci_low", "ci_high"):
            ex_tab[c] = 100 * ex_tab[c]
        ex_tab = ex_tab.rename(columns={"mean": "excess error (pts)", "ci_low": "99% CI low",
                                        "ci_high": "99% CI high"})
        sec.tables.append(table_item(ex_tab, tdir / "excess_error", "Excess error under shift",
                                 "(pruned − dense error on the shifted distribution) − (pruned − "
                                 "dense error on the nominal test set), percentage points, mean "
                                 "over models with 99 % CI; > means pruning hurts more under "
                                 "shift than on the nominal test set.", "tab-excess-error"))
    sec.tables.append(_alpha_by_distribution(shift.alpha, dists, tdir))
    return sec


#: Up to this many distributions the agreement figure draws one panel per distribution;
#: beyond it, one panel per distribution family (``gaussian_noise-1..5`` -> ``gaussian_noise``).
AGREEMENT_PANELS_MAX = 6


def _distribution_family(dist: str) -> str:
    """``gaussian_noise-3`` -> ``gaussian_noise``, ``noise-0.1`` -> ``noise``, else ``dist``."""
    head, sep, tail = dist.rpartition("-")
    return head if sep and re.fullmatch(r"[0-9.]+", tail) else dist


def _agreement_panels(dists: list[str], nominal: str) -> list[tuple[str, list[str]]]:
    """``(title, distributions)`` panels of the agreement figure, nominal first; a family's
    members in increasing severity (numeric suffix)."""
    if len(dists) <= AGREEMENT_PANELS_MAX:
        return [(d, [d]) for d in dists]
    fams: dict[str, list[str]] = {}
    for d in dists:
        fams.setdefault(_distribution_family(d), []).append(d)

    def severity(d: str) -> float:
        tail = d.rpartition("-")[2]
        try:
            return float(tail)
        except ValueError:
            return 0.0

    order = sorted(fams, key=lambda f: (f != _distribution_family(nominal), f))
    return [(fams[f][0] if len(fams[f]) == 1 else f"{f} (lighter = milder)",
             sorted(fams[f], key=severity)) for f in order]


def _agreement_section(agreement: pd.DataFrame, out: Path, nominal: str,
                       results_frame: pd.DataFrame) -> Section:
    """Figure per (dataset, arch) and table of functional agreement with the dense model
    (intervals inside 0..100 %: ``analysis.agreement_ci``)."""
    ci = analysis.agreement_ci(agreement, results_frame)
    sec = Section("agreement", "Functional agreement with the dense model",
                  intro=CAPTIONS["agreement"])
    if ci is None:
        sec.notices.append("No functional agreement: no evaluation of this study kept its "
                           "per-image predictions (studies run before prunescope stored them); "
                           "rerun the evaluate jobs to get this view.")
        return sec
    keys = ["dataset", "arch", "method", "ratio", "distribution"]
    dists = [d for d in analysis.distributions(ci, nominal) if d in set(ci["distribution"])]
    panels = _agreement_panels(dists, nominal)
    for (dataset, arch), sub in ci.groupby(["dataset", "arch"], sort=True):
        title = f"{dataset} · {arch}"
        stem = slug(dataset, arch)
        _add_figure(sec, f"Functional agreement: {title}", CAPTIONS["agreement"],
                    f"fig-agreement-{stem}", out / "figures" / f"agreement_{stem}",
                    figures.agreement_plot, sub, panels, title)
    tab = ci[[*keys, "n", "mean", "ci_low", "ci_high"]].copy()
    for c in ("mean", "ci_low", "ci_high"):
        tab[c] = 100 * tab[c]
    tab["_dist"] = tab["distribution"].map({d: i for i, d in enumerate(dists)})
    tab = tables.sorted_cells(tab, ["dataset", "arch", "method", "ratio", "_dist"])
    tab = tab.rename(columns={"mean": "agreement (%)", "ci_low": "99% CI low",
                              "ci_high": "99% CI high"}).reset_index(drop=True)
    sec.tables.append(table_item(tab, out / "tables" / "agreement", "Functional agreement",
                             "Mean over models of the percentage of test images on which the "
                             "pruned model predicts the same class as its dense parent, per "
                             "method, ratio and test distribution, with a 99 % interval "
                             "that stays within 0..100 % (t-interval of the mean logit, "
                             "docs/report.md).",
                             "tab-agreement", digits=2))
    return sec


def _alpha_by_distribution(ci: pd.DataFrame, dists: list[str], tdir: Path) -> TableItem:
    """Mean alpha (with its CI label where a cell has >= 2 models) per cell and distribution
    (``ci``: ``analysis.alpha_by_distribution``); the long form to a CSV beside it."""
    keys = ["dataset", "arch", "method", "ratio"]
    ci = ci.copy()
    ci.to_csv(tdir / "alpha_by_distribution_long.csv", index=False)
    ci["cell"] = [f"{m:.3f} {lab}" if n >= 2 else f"{m:.3f}"
                  for m, lab, n in ci[["mean", "label", "n"]].itertuples(index=False)]
    wide = ci.pivot(index=keys, columns="distribution", values="cell")
    wide = tables.sorted_cells(wide[[d for d in dists if d in wide.columns]].reset_index(), keys)
    return table_item(wide.reset_index(drop=True), tdir / "alpha_by_distribution",
                  "Recall distortion per test distribution",
                  "Mean per-model slope α of every cell on each test distribution (Bn before and "
                  "after measured on that distribution), with the 99 % CI label (< below 1, > "
                  "above 1, ? contains 1). Full statistics in alpha_by_distribution_long.csv.",
                  "tab-alpha-by-distribution")


def _tables_section(an: Analysis, out: Path, correction: str = "bonferroni",
                    families: str = "column") -> Section:
    interval = CI_NAMES[an.ci_method]
    sec = Section("tables", "Tables", intro=(
        f"Intervals of E[α]: 99 % {interval} per cell. p-values: {CORRECTION_NAMES[correction]} "
        f"within the family named in each table's caption ({FAMILY_SIZES[families]})."))
    tdir = out / "tables"
    sec.tables.append(table_item(
        tables.dense_accuracy_table(an.alphas), tdir / "dense_accuracy",
        "Mean accuracy before pruning", "Test accuracy (%) of the dense parents of the pruned "
        "models, mean over models, per dataset, architecture and method.", "tab-dense-accuracy",
        digits=2))
    sec.tables.append(table_item(
        tables.recall_variance_table(an.alphas), tdir / "recall_variance",
        "Mean recall variance per ratio", "Variance over classes of the per-class recall "
        "(fractions, ddof 0), mean over models; 1x is the dense parents.", "tab-recall-variance",
        digits=5))
    if an.table11 is not None:
        sec.tables.append(table_item(
            tables.table11_variance_table(an.table11), tdir / "recall_variance_table11",
            "Recall variance as the paper's code computes it", "The paper's Table 11 statistic "
            "(SPEC 8): variance over classes (ddof 1) of correct_c / 1000, mean over models. It "
            "is the recall variance (ddof 1) only where every class holds 1,000 test images "
            "(Fashion-MNIST, CIFAR-10); on MNIST it is about 100 times larger.",
            "tab-recall-variance-table11", digits=5))
    if an.ci is not None:
        sec.tables.append(table_item(
            tables.alpha_ci_table(an.ci, an.pooled, an.cell_keys, analysis.mean_i(an),
                                  an.alphas),
            tdir / "alpha_ci",
            "α per cell with 99 % CI", f"Mean per-model slope with its sd over models, its 99 % "
            f"{interval} and label (< below 1, > above 1, ? contains 1), the mean achieved "
            "compression ratio, the pooled slope α̂ "
            "with its uncentered r², and the mean accuracy Ā after pruning. For comparison, "
            "mean I: the mean over models of each model's unweighted mean of the per-class "
            "ratios I = Bn after / Bn before, its sd over models, and the number of (model, "
            "class) points whose I is undefined (Bn before = 0) and left out of it: classes with "
            "Bn before near 0 give wild ratios, which is why the slope α (the (Bn before)²-"
            "weighted mean of I) is the summary used.", "tab-alpha-ci"))
        # the SPEC 5 families; with a single ratio the ratio families come back empty
        for name, fam in analysis.pvalue_families(an, correction, families).items():
            if fam.table.empty:
                continue
            title, caption = pvalue_caption(name, correction, families)
            sec.tables.append(table_item(pvalue_display(fam), tdir / f"pvalues_{name}",
                                     f"p-values: {title}",
                                     caption + " Rows: compared pairs; columns: ratios or levels; "
                                     f"{UNDEFINED_P}: compared, but no p-value (too few models or "
                                     "zero variance, see the note). Full statistics (n, mean "
                                     "difference, t, df, raw p) in "
                                     f"pvalues_{name}_long.csv.", f"tab-p-{slug(name)}"))
            fam.long.to_csv(tdir / f"pvalues_{name}_long.csv", index=False)
    else:
        sec.notices.append("No α CI table and no p-value tables: every cell has a single model "
                           "(one seed), and intervals and t-tests need at least two.")
    pooled = an.pooled[[*an.cell_keys, "n_models", "n_points", "alpha_hat", "r2", "A_bar"]].copy()
    pooled["A_bar"] = 100 * pooled["A_bar"]
    sec.tables.append(table_item(
        pooled.rename(columns={"alpha_hat": "α̂", "r2": "r²", "A_bar": "Ā (%)"}),
        tdir / "pooled_alpha", "Pooled slope per cell", "Through-origin least-squares slope α̂ "
        "of Bn after on Bn before over all (model, class) points of the cell, its uncentered r² "
        "and the mean accuracy after pruning (the numbers in the scatter panels).",
        "tab-pooled-alpha"))
    if tables.has_level_rows(an.alphas):
        sec.tables.append(table_item(
            tables.level_table(an.alphas, an.ci), tdir / "levels",
            "Accuracy and intensification per level", "Iterative / structured methods: mean "
            "achieved compression ratio, accuracy (%) and slope α per pruning level (LTH) or per "
            "requested ratio (structured methods, no level), with the CI label of α.",
            "tab-levels"))
    return sec


def _coverage(frame: pd.DataFrame, jobs: pd.DataFrame | None, out: Path) -> tuple[Section, list[str]]:
    """What exists and what is missing: models per cell vs dense models, and unfinished jobs."""
    sec = Section("coverage", "Study coverage", intro="Models evaluated per cell (nominal test "
                  "set) against the dense models available for its dataset and architecture.")
    notices: list[str] = []
    cov = tables.sorted_cells(analysis.coverage(frame), ["dataset", "arch", "method", "ratio"]).reset_index(drop=True)
    incomplete = cov[cov["models"] < cov["dense models"]]
    if len(incomplete):
        notices.append(f"Partial results: {len(incomplete)} of {len(cov)} cells have fewer pruned "
                       "models than dense models (see Study coverage); their statistics use the "
                       "models that exist.")
    sec.tables.append(table_item(cov, out / "tables" / "coverage", "Models per cell",
                             "Pruned models evaluated on each cell vs dense models of its "
                             "dataset and architecture.", "tab-coverage", digits=0))
    if jobs is not None:
        if "status" not in jobs.columns:
            raise ValueError(f"jobs frame has no 'status' column (columns: {list(jobs.columns)}); "
                             "pass the jobs frame of prunescope.study.load_results")
        todo = jobs[~jobs["status"].isin(analysis.DONE_STATUSES)]
        by_status = jobs.groupby([c for c in ("kind", "status") if c in jobs], sort=True).size()
        summary = by_status.rename("jobs").reset_index()
        sec.tables.append(table_item(summary, out / "tables" / "jobs", "Jobs by status",
                                 "Number of planned jobs per kind and status.", "tab-jobs",
                                 digits=0))
        if len(todo):
            notices.append(f"The study is not finished: {len(todo)} of {len(jobs)} jobs are not "
                           f"done ({', '.join(f'{k}: {v}' for k, v in todo['status'].value_counts().items())}); "
                           "the report shows the results that exist. Missing jobs are listed under "
                           "Study coverage.")
            cols = [c for c in ("kind", "dataset", "arch", "method", "ratio", "model", "seed",
                                "distribution", "status") if c in todo.columns]
            missing = todo[cols].reset_index(drop=True)
            sec.tables.append(table_item(missing, out / "tables" / "missing_jobs", "Jobs not done",
                                     "Every planned job whose status is not 'done'.",
                                     "tab-missing-jobs", digits=3))
    return sec, notices


def render_report(results_frame: pd.DataFrame, out_dir: str | Path, *, spec_text: str | None = None,
                  study_name: str = "study", version: str | None = None,
                  jobs: pd.DataFrame | None = None, nominal: str = metrics.NOMINAL,
                  delta: float = metrics.DEFAULT_DELTA,
                  agreement: pd.DataFrame | None = None, correction: str = "bonferroni",
                  ci_method: str = "t", families: str = "column",
                  training_splits: pd.DataFrame | None = None,
                  exemplars: Exemplars | None = None, notices: Sequence[str] = (),
                  train_recall: pd.DataFrame | None = None) -> Path:
    """Write every figure (PNG + PDF), table (Markdown, CSV, LaTeX) and ``report.html``.

    Args:
        results_frame: tidy per-class results (docs/architecture.md): one row per (dataset, arch,
            method, ratio, model, distribution, cls) with int64 ``support, predicted, correct``;
            extra columns (``achieved_ratio``, ``seed``, ``level``) are carried along.
        out_dir: folder to write into (created): ``report.html``, ``figures/``, ``tables/``.
        spec_text: the study's TOML text, shown in the page (and linked from every number).
        study_name: name shown in the page title.
        version: prunescope version stated as the producer (default: the installed one).
        jobs: the study's jobs frame with a ``status`` column, to list unfinished jobs.
        nominal: name of the unshifted test distribution.
        delta: prune-potential tolerance in percentage points of error (default 0.5 = half a
            point; ``metrics.check_delta``: 0 or 0.1 to 100, a fraction such as 0.005 is refused).
        agreement: functional agreement with the dense model, one row per pruned evaluation
            with ``dataset, arch, method, ratio, model, distribution`` and ``agreement`` (a
            fraction in [0, 1]; ``prunescope.study.StudyResults.agreement``): adds the
            agreement figures (``figures/agreement_<dataset>_<arch>``) and table
            (``tables/agreement``). ``None``: no agreement section.
        correction: multiple-testing correction of the p-value tables within each family,
            ``"bonferroni"`` (SPEC 5 default) or ``"holm"`` (step-down, never larger).
        families: the correction families (``stats.FAMILIES``): ``"column"`` (SPEC 5 default,
            the paper's: one column of each table, its size counting every row, an undefined
            one included; MP vs UP over all 25 (arch, ratio)) or ``"table"`` (a whole table,
            its size counting the comparisons with a p-value).
        ci_method: intervals of E[α] (CI table, CI plots, the < / > / ? labels of the boxplots,
            level and per-distribution tables): ``"t"`` (SPEC 5 default, 99 % t-interval) or
            ``"bootstrap"`` (99 % BCa bootstrap, 9,999 resamples, seeded). The prune-potential,
            excess-error and agreement intervals stay t-intervals.
        training_splits: the per-class training counts of every dataset label
            (:func:`prunescope.study.results.training_splits`): adds the long-tail section when
            a label has an imbalanced split. ``None``: no long-tail section.
        exemplars: the study's pruning-identified exemplars
            (:func:`prunescope.study.results.load_exemplars`): adds the PIE section, its
            gallery and ``tables/pies.csv``. ``None``: no PIE section.
        notices: sentences shown first in the page's banner, e.g. the findings of
            :func:`prunescope.study.checks.checks` (under-trained models, ...).
        train_recall: ``ceag`` jobs' training-split recalls
            (:func:`prunescope.study.results.train_recalls`) for the Mitigation section's
            "constraints held" table. A frame with an ``objective`` column other than ``ce``
            adds that section, and the sections before it analyse the ``ce`` models only.

    Returns:
        Path of ``report.html``.

    Raises:
        ValueError: empty frame, a frame that is not tidy, no nominal results, no pruned model, or
            an unknown ``correction`` / ``ci_method`` / ``families``.
    """
    analysis.check_choice("correction", correction, stats.CORRECTIONS)
    analysis.check_choice("families", families, stats.FAMILIES)
    delta = metrics.check_delta(delta)
    analysis.check_choice("ci_method", ci_method, stats.CI_METHODS)
    analysis.check_frame(results_frame)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    version = version or prunescope.__version__
    mitigated = mitigation_section(results_frame, out, nominal, correction, train_recall)
    results_frame = analysis.ce_only(results_frame)
    an = analyse(results_frame, nominal, ci_method)
    cells = an.alphas[["dataset", "arch", "method"]].drop_duplicates()
    groups = factor_groups(cells)
    coverage, cov_notices = _coverage(results_frame, jobs, out)
    sections = [*_alpha_sections(an, out, groups),
                _shift_section(analysis.analyse_shift(results_frame, an, nominal, delta), out,
                               nominal),
                _tables_section(an, out, correction, families), coverage]
    if agreement is not None:
        sections.insert(-2, _agreement_section(analysis.ce_only(agreement), out, nominal,
                                               results_frame))
    extra = [longtail_section(an.paired, an.alphas, training_splits, out, correction)
             if training_splits is not None else None,
             exemplar_section(exemplars, an.paired, out) if exemplars is not None else None]
    sections[-2:-2] = [s for s in (*extra, mitigated) if s is not None]
    page = build_page(study_name=study_name, version=version, spec_text=spec_text,
                      sections=sections, notices=[*notices, *cov_notices, *an.notices], root=out)
    path = out / "report.html"
    path.write_text(page, encoding="utf-8")
    return path
