"""The report's views of underrepresented classes (docs/underrepresented.md):

* long-tailed training splits: per-class change of normalised recall balance against the
  class's training count (log scale), the per-model slope with its 99% CI per cell, and the
  balanced-vs-imbalanced test family at each ratio;
* pruning-identified exemplars (PIEs, Hooker et al. 2019): count and fraction per cell against
  ratio, per-class share of PIEs against the class's change of recall balance, accuracy on PIEs
  versus the rest, a thumbnail gallery and ``tables/pies.csv``.

The statistics come from :mod:`prunescope.analysis` (``longtail_slopes``, ``imbalance_tests``,
``pie_share``, ``pie_accuracy``); this module lays them out and draws them. Nothing here reads a
store.
"""
from __future__ import annotations

import base64
import html
import io
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.figure import Figure

from prunescope import analysis
from prunescope.metrics.underrepresented import Exemplars
from prunescope.report import tables
from prunescope.report.html import Section, figure_item, table_item
from prunescope.report.style import method_color, method_label, new_figure, ordered, ratio_label

#: cell keys of the frames drawn here
CELL = analysis.UNDER_CELL


# ---- long-tailed training splits --------------------------------------------------------------
def _slope_figure(points: pd.DataFrame, slopes_ci: pd.DataFrame, dataset: str, arch: str
                  ) -> Figure:
    """Rows = ratios, columns = methods: ΔBn per (model, class) against log10 training count,
    with the pooled least-squares line (intercept) and the cell's mean slope and 99% CI."""
    ratios = sorted(points["ratio"].unique())
    methods = ordered("method", points["method"].unique())
    fig = new_figure(2.8 * len(methods) + 0.6, 2.3 * len(ratios) + 0.6)
    axes = fig.subplots(len(ratios), len(methods), squeeze=False, sharex=True, sharey=True)
    for i, r in enumerate(ratios):
        for j, m in enumerate(methods):
            ax = axes[i][j]
            p = points[(points["ratio"] == r) & (points["method"] == m)]
            x, y = p["x"].to_numpy(), p["y"].to_numpy()
            ax.scatter(x, y, s=9, alpha=0.55, color=method_color(m), edgecolors="none")
            ax.axhline(0, color="0.6", lw=0.8, ls="--")
            if len(np.unique(x)) > 1:
                fit = np.polyfit(x, y, 1)
                xs = np.linspace(x.min(), x.max(), 20)
                ax.plot(xs, np.polyval(fit, xs), color="black", lw=1.2)
            ci = slopes_ci[(slopes_ci["ratio"] == r) & (slopes_ci["method"] == m)]
            if len(ci):
                c = ci.iloc[0]
                ax.set_title(f"{method_label(m)} {ratio_label(r)}: slope {c['mean']:.3f} "
                             f"[{c['ci_low']:.3f}, {c['ci_high']:.3f}] {c['label']}", fontsize=8)
            if i == len(ratios) - 1:
                ax.set_xlabel("log10 training images of the class")
            if j == 0:
                ax.set_ylabel("Bn after - Bn before")
    fig.suptitle(f"{dataset} / {arch}: change of normalised recall balance vs class size",
                 fontsize=10)
    return fig


def longtail_section(paired: pd.DataFrame, alphas: pd.DataFrame, splits: pd.DataFrame,
                     out: Path, correction: str = "bonferroni") -> Section | None:
    """The long-tail part of the report, or ``None`` when no cell has an imbalanced split.

    Args:
        paired: :func:`prunescope.metrics.intensification` of the study (nominal and shifted).
        alphas: :func:`prunescope.metrics.model_alpha` of ``paired``.
        splits: :func:`prunescope.study.results.training_splits`.
        out: the report folder.
    """
    if splits.empty or not (splits["imbalance_ratio"] > 1).any():
        return None
    sec = Section("longtail", "Long-tailed training splits", intro=(
        "Models of a long-tailed cell were trained on a class-imbalanced training split (its "
        "label, e.g. lt10, gives the ratio of the largest to the smallest class); every test set "
        "is balanced. Per model, the change of normalised recall balance of each class "
        "(Bn after pruning minus Bn before) is regressed on log10 of the class's training count; "
        "a positive slope means that pruning costs the rare classes more, relative to accuracy, "
        "than the frequent ones. Intervals are 99 % t-intervals over models (label < / > / ? "
        "against 0)."))
    ci, pts = analysis.longtail_slopes(paired, splits)
    ci = tables.sorted_cells(ci, CELL)
    sec.tables.append(table_item(
        ci[CELL + ["n", "mean", "sd", "ci_low", "ci_high", "label"]].rename(
            columns={"mean": "mean slope"}), out / "tables" / "longtail_slopes",
        "Slope of the change of Bn on log10 class size",
        "Per-model least-squares slope (with intercept) of Bn_t - Bn on log10 of the class's "
        "training images; mean, sd and 99 % t-interval over models per cell.", "tab-lt-slopes",
        digits=4))
    for (dataset, arch), grp in pts.groupby(["dataset", "arch"], sort=True):
        cell_ci = ci[(ci["dataset"] == dataset) & (ci["arch"] == arch)
                     & (ci["distribution"] == grp["distribution"].iloc[0])]
        sec.figures.append(figure_item(
            _slope_figure(grp, cell_ci, dataset, arch),
            out / "figures" / f"longtail_{dataset}_{arch}",
            f"Change of recall balance vs class size: {dataset} / {arch}",
            "One point per (model, class); black: least-squares line over all points; titles: "
            "mean per-model slope, its 99 % CI and label.", f"fig-lt-{dataset}-{arch}"))
    tests = analysis.imbalance_tests(alphas, splits, correction)
    if len(tests):
        sec.tables.append(table_item(
            tests, out / "tables" / "longtail_tests",
            "Balanced vs imbalanced training split",
            "One-sided independent t-test per cell, H_a: the models trained on the "
            "imbalanced split have the larger E[α]; one family per ratio column over all its "
            f"rows, {correction.capitalize()}-corrected.", "tab-lt-tests", digits=4))
    return sec


# ---- pruning-identified exemplars ------------------------------------------------------------
def _thumb_uri(img: np.ndarray) -> str:
    """A uint8 (H, W, C) image as a PNG data URI, scaled 2x (nearest)."""
    from PIL import Image

    arr = np.asarray(img, dtype=np.uint8)
    mode = "L" if arr.shape[-1] == 1 else "RGB"
    im = Image.fromarray(arr[..., 0] if mode == "L" else arr, mode)
    im = im.resize((arr.shape[1] * 2, arr.shape[0] * 2), Image.NEAREST)
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _gallery_html(ex: Exemplars) -> str:
    """Thumbnails of the first PIEs of every nominal cell, with true, dense-modal and
    pruned-modal labels (escaped class names)."""
    img = ex.images[ex.images["distribution"] == "nominal"]
    parts = []
    for k, grp in img.groupby(["dataset", "arch", "method", "ratio"], sort=True):
        dataset, arch, method, ratio = k
        names = ex.classes.get(dataset, ())
        name = (lambda c: names[c] if c < len(names) else str(c))
        shown = [r for r in grp.itertuples() if (dataset, r.index) in ex.thumbnails]
        if not shown:
            continue
        cards = "".join(
            f'<figure style="display:inline-block;margin:.3rem;text-align:center;width:7.5rem">'
            f'<img src="{_thumb_uri(ex.thumbnails[(dataset, r.index)])}" alt="test image '
            f'{r.index}" style="width:56px;image-rendering:pixelated">'
            f'<figcaption style="font-size:.72rem">#{r.index}<br>true: {html.escape(name(r.label))}'
            f'<br>dense: {html.escape(name(r.dense_label))}<br>pruned: '
            f'{html.escape(name(r.pruned_label))}</figcaption></figure>' for r in shown)
        parts.append(f"<h3>{html.escape(f'{dataset} / {arch} / {method_label(method)} at ')}"
                     f"{html.escape(ratio_label(ratio))} ({len(grp)} PIEs, first "
                     f"{len(shown)} shown)</h3><div>{cards}</div>")
    return "".join(parts)


def _pie_fraction_figure(summary: pd.DataFrame) -> Figure:
    """PIE fraction against ratio, one panel per (arch, distribution), a line per (dataset,
    method)."""
    panels = list(summary.groupby(["arch", "distribution"], sort=True).groups)
    fig = new_figure(4.2 * len(panels) + 0.5, 3.4)
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    styles = ["-", "--", ":", "-."]
    for ax, (arch, dist) in zip(axes, panels):
        s = summary[(summary["arch"] == arch) & (summary["distribution"] == dist)]
        for di, dataset in enumerate(ordered("dataset", s["dataset"].unique())):
            for m in ordered("method", s["method"].unique()):
                g = s[(s["dataset"] == dataset) & (s["method"] == m)].sort_values("ratio")
                if len(g):
                    ax.plot(g["ratio"], 100 * g["pie_fraction"], marker="o", ms=3,
                            ls=styles[di % len(styles)], color=method_color(m),
                            label=f"{dataset} {method_label(m)}")
        ax.set_xscale("log")
        ax.set_xlabel("compression ratio")
        ax.set_ylabel("PIEs (% of test images)")
        ax.set_title(f"{arch}, {dist}", fontsize=9)
        ax.legend(fontsize=7)
    return fig


def _share_figure(share: pd.DataFrame) -> Figure:
    """Per-class share of PIEs against the class's mean change of recall balance, a panel per
    (dataset, arch, method), colour = ratio."""
    panels = list(share.groupby(["dataset", "arch", "method"], sort=True).groups)
    cols = min(3, len(panels))
    rows = -(-len(panels) // cols)
    fig = new_figure(3.6 * cols + 0.5, 3.0 * rows + 0.4)
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    for ax in axes[len(panels):]:
        ax.set_visible(False)
    ratios = sorted(share["ratio"].unique())
    cmap = colormaps["viridis"]
    for ax, (dataset, arch, method) in zip(axes, panels):
        s = share[(share["dataset"] == dataset) & (share["arch"] == arch)
                  & (share["method"] == method)]
        for k, r in enumerate(ratios):
            g = s[s["ratio"] == r]
            ax.scatter(100 * g["delta_B"], 100 * g["share"], s=14,
                       color=cmap(k / max(1, len(ratios) - 1)), label=ratio_label(r))
        ax.axvline(0, color="0.6", lw=0.8, ls="--")
        ax.set_xlabel("change of recall balance (points)")
        ax.set_ylabel("share of PIEs (%)")
        ax.set_title(f"{dataset} / {arch} / {method_label(method)}", fontsize=9)
        ax.legend(fontsize=7, title="ratio", title_fontsize=7)
    return fig


def exemplar_section(ex: Exemplars, paired: pd.DataFrame, out: Path) -> Section | None:
    """The PIE part of the report, or ``None`` when no cell had predictions to compare.

    Args:
        ex: the study's exemplars (:func:`prunescope.study.results.load_exemplars`).
        paired: :func:`prunescope.metrics.intensification` of the study (for each class's
            change of recall balance B_t - B).
        out: the report folder; ``tables/pies.csv`` gets one row per PIE.
    """
    if ex.summary.empty:
        return None
    sec = Section("pies", "Pruning-identified exemplars (PIEs)", intro=(
        "A test image is a PIE of a cell (Hooker et al. 2019) when the most frequent label over "
        "the cell's pruned models differs from the most frequent label over the dense models "
        "(ties go to the smaller class id). PIEs are the images pruning forgets first; the "
        "tables show how many there are, which classes they come from and how well the dense "
        "and the pruned models classify them."))
    (out / "tables").mkdir(parents=True, exist_ok=True)
    ex.images.to_csv(out / "tables" / "pies.csv", index=False)
    summ = tables.sorted_cells(ex.summary, CELL)
    sec.tables.append(table_item(
        summ, out / "tables" / "pie_counts", "PIEs per cell",
        "n_images test images, n_dense and n_pruned models voting, n_pies PIEs and their "
        "fraction; every PIE's test-set index is in tables/pies.csv.", "tab-pie-counts",
        digits=4))
    sec.figures.append(figure_item(
        _pie_fraction_figure(ex.summary), out / "figures" / "pie_fraction",
        "PIE fraction against compression", "Percentage of test images that are PIEs, per "
        "dataset and method.", "fig-pie-fraction"))
    share, rho = analysis.pie_share(ex, paired)
    sec.tables.append(table_item(
        tables.sorted_cells(rho, CELL), out / "tables" / "pie_share",
        "Are PIEs concentrated in the classes that lose recall?",
        "Spearman rank correlation over classes between the class's share of the cell's "
        "PIEs and its mean change of recall balance (B_t - B, over models); negative: the "
        "classes losing recall hold more PIEs. Also the class with the largest PIE share "
        "and the class losing the most recall balance.", "tab-pie-share", digits=3))
    sec.figures.append(figure_item(
        _share_figure(share[np.isfinite(share["share"])]), out / "figures" / "pie_share",
        "PIE share per class against change of recall balance",
        "One point per class and ratio.", "fig-pie-share"))
    acc = tables.sorted_cells(analysis.pie_accuracy(ex), CELL)
    sec.tables.append(table_item(
        acc, out / "tables" / "pie_accuracy", "Accuracy on PIEs and on the rest",
        "Mean accuracy over the dense models and over the pruned models of each cell, on "
        "the cell's PIEs and on the other test images (fractions).", "tab-pie-acc", digits=3))
    sec.html = _gallery_html(ex)
    return sec
