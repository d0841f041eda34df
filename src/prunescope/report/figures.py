"""The report's figures (SPEC 6), each drawn from analysis frames into a matplotlib ``Figure``.

Every function here takes frames already computed by :mod:`prunescope.metrics` /
:mod:`prunescope.stats` (it computes no statistic itself except means and standard errors for
plotting) and returns a ``Figure``; :func:`prunescope.report.style.save_figure` writes it.

Column conventions of the inputs:

* paired points (``metrics.pair_with_dense``): ``ratio``, the factor column, ``method``,
  ``Bn_before``, ``Bn_after`` (dimensionless: fraction of the model's accuracy);
* pooled cells (``metrics.pooled_alpha``): ``ratio``, factor, ``alpha_hat``, ``r2`` (uncentered),
  ``A_bar`` (fraction);
* model alphas (``metrics.model_alpha``): ``ratio``, factor, ``method``, ``alpha``,
  ``accuracy_after`` (fraction);
* cell CIs (``stats.mean_ci``): ``ratio``, factor, ``method``, ``mean``, ``ci_low``, ``ci_high``
  (99 % t interval of E[alpha]), ``label`` (``<``, ``>``, ``?``).
"""
from __future__ import annotations

import textwrap

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.colors import LinearSegmentedColormap
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import FuncFormatter, MaxNLocator
from matplotlib.patches import Patch
from scipy import stats as sps

from prunescope.report.style import (
    MARKERS, method_color, method_label, new_figure, ordered, ratio_label,
)

#: Above this many points in one scatter panel, density is drawn as hexagonal bins instead.
HEXBIN_THRESHOLD = 2000
#: Name of the annotation artist of each scatter panel (its text holds alpha_hat, r2, A_bar).
ANNOTATION_GID = "pooled-fit"

FACTOR_NAMES = {"method": "method", "arch": "architecture", "dataset": "dataset"}


def level_label(factor: str, level: object) -> str:
    """Display name of one level of ``factor``."""
    return method_label(str(level)) if factor == "method" else str(level)


def _level_methods(frame: pd.DataFrame, factor: str) -> dict[object, str]:
    """The pruning method of each level of ``factor`` (the factor itself when it is the method)."""
    if factor == "method":
        return {lv: lv for lv in frame["method"].unique()}
    return {lv: g["method"].iloc[0] for lv, g in frame.groupby(factor, sort=False)}


def _density_cmap(color: str) -> LinearSegmentedColormap:
    return LinearSegmentedColormap.from_list(f"dens-{color}", ["#f4f4f4", color])


#: Scatter-matrix geometry in inches: panel side, margins (labels, title, legend), gaps.
_SC_PANEL, _SC_LEFT, _SC_RIGHT, _SC_TOP, _SC_BOTTOM = 2.2, 1.0, 0.2, 0.45, 0.65
_SC_WSPACE, _SC_HSPACE = 0.55, 0.35


def _square_limits(points: pd.DataFrame) -> tuple[float, float]:
    """Common (low, high) of x = Bn before and y = Bn after over ``points``, padded by 5 %."""
    xy = points[["Bn_before", "Bn_after"]].to_numpy(float)
    xy = xy[np.isfinite(xy)]
    lo, hi = (float(xy.min()), float(xy.max())) if xy.size else (-1.0, 1.0)
    pad = 0.05 * (hi - lo or 1.0)
    return lo - pad, hi + pad


def scatter_matrix(points: pd.DataFrame, pooled: pd.DataFrame, factor: str, title: str) -> Figure:
    """Bn after vs Bn before, one panel per (ratio row, ``factor`` level column) (SPEC 6).

    Args:
        points: paired per-class rows of one fixed combination, shape (models x classes x cells,
            ...), columns ``ratio``, ``factor``, ``method``, ``Bn_before``, ``Bn_after``.
        pooled: one row per (ratio, level) with ``alpha_hat``, ``r2``, ``A_bar``.
        factor: ``method``, ``arch`` or ``dataset``: the column varied across the matrix.
        title: figure title naming the fixed combination.

    Each panel shows every (model, class) point (semi-transparent; hexagonal density bins above
    :data:`HEXBIN_THRESHOLD` points), the through-origin fit ``y = alpha_hat x``, the reference
    ``y = x``, and the text ``alpha_hat, r2, A_bar`` (artist gid :data:`ANNOTATION_GID`).
    """
    ratios = sorted(points["ratio"].unique())
    levels = ordered(factor, points[factor].unique())
    methods = _level_methods(points, factor)
    # a regular grid placed in inches: as legible as constrained layout at a third of the cost
    nr, nc = len(ratios), len(levels)
    width = _SC_LEFT + _SC_RIGHT + nc * _SC_PANEL + (nc - 1) * _SC_WSPACE
    heading = [line for part in (title, "Bn = (recall − accuracy) / accuracy per class "
                                 "(dimensionless); rows: compression ratio t")
               for line in textwrap.wrap(part, width=int(width * 12))]
    top = _SC_TOP + 0.17 * len(heading)
    by_panel = {k: g for k, g in points.groupby(["ratio", factor], sort=False)}
    sizes = [len(g) for g in by_panel.values()]
    handles = [Line2D([], [], color="0.2", lw=1.6, label="fit y = α̂·x (through origin)"),
               Line2D([], [], color="0.45", lw=0.9, ls="--", label="y = x (no change)")]
    if any(n <= HEXBIN_THRESHOLD for n in sizes):
        handles.append(Line2D([], [], color="0.4", marker="o", ls="", ms=4,
                              label="one (model, class)"))
    if any(n > HEXBIN_THRESHOLD for n in sizes):
        handles.append(Patch(color="0.6", label="(model, class) density (log hexbins)"))
    legend_cols = max(1, min(len(handles), int(width // 2.6)))
    bottom = _SC_BOTTOM + 0.2 * -(-len(handles) // legend_cols)
    height = top + bottom + nr * _SC_PANEL + (nr - 1) * _SC_HSPACE
    fig = new_figure(width, height, constrained=False)
    # each panel has its own square limits: levels (datasets) differ in scale by 10x, and one
    # collapsed model (ratio near the reachable maximum) must not flatten the other rows
    axes = fig.subplots(nr, nc, squeeze=False, gridspec_kw={
        "left": _SC_LEFT / width, "right": 1 - _SC_RIGHT / width, "bottom": bottom / height,
        "top": 1 - top / height, "wspace": _SC_WSPACE / _SC_PANEL,
        "hspace": _SC_HSPACE / _SC_PANEL})
    fits = pooled.set_index(["ratio", factor])
    for i, ratio in enumerate(ratios):
        for j, level in enumerate(levels):
            ax = axes[i, j]
            panel = by_panel.get((ratio, level))
            lim = _square_limits(panel) if panel is not None else (-1.0, 1.0)
            color = method_color(methods[level])
            ax.axline((0, 0), slope=1.0, color="0.45", lw=0.9, ls="--", zorder=1)
            ax.axhline(0, color="0.85", lw=0.6, zorder=0)
            ax.axvline(0, color="0.85", lw=0.6, zorder=0)
            if panel is None or (ratio, level) not in fits.index:
                ax.text(0.5, 0.5, "no results", transform=ax.transAxes, ha="center", va="center",
                        color="0.4")
            else:
                x = panel["Bn_before"].to_numpy(float)
                y = panel["Bn_after"].to_numpy(float)
                if len(x) > HEXBIN_THRESHOLD:
                    ax.hexbin(x, y, gridsize=40, extent=(*lim, *lim), mincnt=1, bins="log",
                              cmap=_density_cmap(color), linewidths=0, zorder=2)
                else:
                    alpha = float(np.clip(150.0 / max(len(x), 1), 0.12, 0.8))
                    ax.scatter(x, y, s=7, color=color, alpha=alpha, linewidths=0, zorder=2,
                               rasterized=True)
                fit = fits.loc[(ratio, level)]
                ax.axline((0, 0), slope=float(fit["alpha_hat"]), color=color, lw=1.6, zorder=3)
                ax.text(0.03, 0.97,
                        f"α̂ = {fit['alpha_hat']:.3f}\nr² = {fit['r2']:.3f}\n"
                        f"Ā = {100 * fit['A_bar']:.1f} %",
                        transform=ax.transAxes, ha="left", va="top", fontsize=8, gid=ANNOTATION_GID,
                        bbox={"boxstyle": "round,pad=0.25", "fc": "white", "ec": "0.7", "alpha": 0.9},
                        zorder=4)
            ax.set_xlim(lim)
            ax.set_ylim(lim)
            ax.xaxis.set_major_locator(MaxNLocator(4))
            ax.yaxis.set_major_locator(MaxNLocator(5))
            ax.tick_params(labelsize=7)
            if i == 0:
                ax.set_title(level_label(factor, level), fontsize=10, color=color)
            if i == len(ratios) - 1:
                ax.set_xlabel("Bn before pruning (dense)", fontsize=8)
            if j == 0:
                ax.set_ylabel(f"t = {ratio_label(ratio)}\nBn after pruning", fontsize=8)
    fig.legend(handles=handles, loc="lower center", bbox_to_anchor=(0.5, 0.04 / height),
               ncols=legend_cols, fontsize=8, frameon=False)
    fig.suptitle("\n".join(heading), fontsize=10, y=1 - 0.06 / height, va="top")
    return fig


#: |alpha| beyond which an alpha axis turns symmetric-log (linear within +-ALPHA_LINTHRESH): a
#: collapsed model (accuracy near chance, e.g. LeNet-5 at t = 50) has alpha in the tens or
#: hundreds and would otherwise squash every informative cell onto the line alpha = 1.
ALPHA_SYMLOG_ABOVE, ALPHA_LINTHRESH = 5.0, 2.0


def _alpha_axis(ax, values: np.ndarray, label: str, fontsize: float) -> None:
    """Label an alpha axis and make it symmetric-log when ``values`` reach past
    :data:`ALPHA_SYMLOG_ABOVE` in absolute value (the label then says so)."""
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    if v.size and np.abs(v).max() > ALPHA_SYMLOG_ABOVE:
        ax.set_yscale("symlog", linthresh=ALPHA_LINTHRESH, linscale=1.5)
        ax.yaxis.set_major_formatter(FuncFormatter(lambda y, _: f"{y:g}"))
        label = f"{label}\n(symlog axis: linear within ±{ALPHA_LINTHRESH:g})"
    ax.set_ylabel(label, fontsize=fontsize)


def _ratio_tick(ratio: float, label: str | None) -> str:
    return ratio_label(ratio) if not label else f"{ratio_label(ratio)}\n{label}"


def alpha_boxplots(alphas: pd.DataFrame, ci: pd.DataFrame | None, factor: str, title: str) -> Figure:
    """Boxplots of alpha_t(m) over models, per ratio, one panel per level of ``factor`` (SPEC 6).

    Args:
        alphas: one row per (model, ratio, level): ``ratio``, ``factor``, ``method``, ``alpha``.
        ci: one row per (ratio, level) with ``label`` (``<``/``>``/``?``), or None when CIs are
            not available (single-seed study): ticks then carry no label.
        factor: the column varied across panels.
        title: figure title.

    The x tick of each box is the ratio with the CI label under it; a dashed line marks alpha = 1.
    """
    levels = ordered(factor, alphas[factor].unique())
    methods = _level_methods(alphas, factor)
    labels = {} if ci is None else {(r, lv): lab for r, lv, lab in
                                    ci[["ratio", factor, "label"]].itertuples(index=False)}
    fig = new_figure(1.0 + 2.6 * len(levels), 3.6)
    axes = fig.subplots(1, len(levels), sharey=True, squeeze=False)[0]
    rng = np.random.default_rng(0)
    for ax, level in zip(axes, levels):
        sub = alphas[alphas[factor] == level]
        ratios = sorted(sub["ratio"].unique())
        data = [sub.loc[sub["ratio"] == r, "alpha"].dropna().to_numpy(float) for r in ratios]
        color = method_color(methods[level])
        pos = np.arange(1, len(ratios) + 1)
        ax.boxplot(data, positions=pos, widths=0.6, showfliers=False, patch_artist=True,
                   boxprops={"facecolor": color, "alpha": 0.35, "edgecolor": color},
                   medianprops={"color": color, "lw": 1.6},
                   whiskerprops={"color": color}, capprops={"color": color})
        for p, d in zip(pos, data):
            ax.scatter(p + rng.uniform(-0.18, 0.18, len(d)), d, s=6, color=color, alpha=0.6,
                       linewidths=0, zorder=3)
        ax.axhline(1.0, color="0.3", ls="--", lw=1.0)
        ax.set_xticks(pos, [_ratio_tick(r, labels.get((r, level))) for r in ratios], fontsize=8)
        ax.set_title(level_label(factor, level), fontsize=10, color=color)
        ax.set_xlabel("compression ratio t (all / nonzero params)", fontsize=8)
    _alpha_axis(axes[0], alphas["alpha"].to_numpy(float),
                "α_t(m): per-model slope (dimensionless)", 9)
    fig.suptitle(title, fontsize=11)
    return fig


def ci_plot(ci: pd.DataFrame, factor: str, title: str) -> Figure:
    """99 % confidence intervals of E[alpha] per cell, levels of ``factor`` side by side (SPEC 6).

    Args:
        ci: one row per (ratio, level): ``ratio``, ``factor``, ``method``, ``mean``, ``ci_low``,
            ``ci_high``; rows with NaN bounds (fewer than two models) are drawn as points.
        factor: the column whose levels are dodged within each ratio.
        title: figure title.
    """
    levels = ordered(factor, ci[factor].unique())
    ratios = sorted(ci["ratio"].unique())
    methods = _level_methods(ci, factor)
    fig = new_figure(max(5.0, 1.5 + 0.6 * len(ratios) * max(1, len(levels)) ** 0.5), 3.8)
    ax = fig.subplots()
    width = 0.8 / max(len(levels), 1)
    for k, level in enumerate(levels):
        sub = ci[ci[factor] == level].set_index("ratio")
        color = method_color(methods[level])
        marker = "o" if factor == "method" else MARKERS[k % len(MARKERS)]
        xs, means, lows, highs = [], [], [], []
        for i, r in enumerate(ratios):
            if r in sub.index:
                row = sub.loc[r]
                xs.append(i - 0.4 + width * (k + 0.5))
                means.append(row["mean"])
                lows.append(row["ci_low"])
                highs.append(row["ci_high"])
        means, lows, highs = map(np.asarray, (means, lows, highs))
        err = np.vstack([means - lows, highs - means])
        ax.errorbar(xs, means, yerr=np.where(np.isfinite(err), err, 0.0), fmt=marker, color=color,
                    ms=5, capsize=3, lw=1.3, label=level_label(factor, level))
    ax.axhline(1.0, color="0.3", ls="--", lw=1.0)
    ax.set_xticks(range(len(ratios)), [ratio_label(r) for r in ratios])
    ax.set_xlabel("compression ratio t (all / nonzero params)")
    _alpha_axis(ax, ci[["mean", "ci_low", "ci_high"]].to_numpy(float).ravel(),
                "E[α]: mean slope with 99 % CI", 10)
    ax.legend(title=FACTOR_NAMES.get(factor, factor), fontsize=8, title_fontsize=8,
              loc="best", frameon=False)
    ax.set_title(title, fontsize=10)
    return fig


def _mean_se(values: pd.Series) -> tuple[float, float]:
    v = values.dropna().to_numpy(float)
    if len(v) == 0:
        return np.nan, np.nan
    return float(v.mean()), float(sps.sem(v)) if len(v) > 1 else np.nan


def accuracy_alpha_plot(alphas: pd.DataFrame, dense_acc: pd.DataFrame) -> Figure:
    """Accuracy (left axis) and mean alpha (right axis) vs ratio, one panel per cell group.

    Args:
        alphas: ``dataset, arch, method, ratio, alpha, accuracy_after`` per pruned model.
        dense_acc: ``dataset, arch, accuracy`` per dense model (fraction), drawn at t = 1.

    Means are over models with error bars of one standard error (none with a single model).
    Accuracy is drawn solid with circles, alpha dashed with squares, both in the method's colour.
    """
    groups = [k for k, _ in alphas.groupby(["dataset", "arch", "method"], sort=False)]
    rank = {f: {v: i for i, v in enumerate(ordered(f, alphas[f].unique()))}
            for f in ("dataset", "arch", "method")}
    groups.sort(key=lambda k: (rank["dataset"][k[0]], rank["arch"][k[1]], rank["method"][k[2]]))
    ncols = min(4, len(groups))
    nrows = -(-len(groups) // ncols)
    fig = new_figure(0.6 + 3.6 * ncols, 0.8 + 2.9 * nrows)
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    for ax in axes[len(groups):]:
        ax.set_axis_off()
    for ax, (dataset, arch, method) in zip(axes, groups):
        color = method_color(method)
        sub = alphas[(alphas["dataset"] == dataset) & (alphas["arch"] == arch)
                     & (alphas["method"] == method)]
        dense = dense_acc[(dense_acc["dataset"] == dataset) & (dense_acc["arch"] == arch)]
        ratios = sorted(sub["ratio"].unique())
        acc = [_mean_se(dense["accuracy"])] + [_mean_se(sub.loc[sub["ratio"] == r, "accuracy_after"])
                                               for r in ratios]
        alp = [_mean_se(sub.loc[sub["ratio"] == r, "alpha"]) for r in ratios]
        xs = [1.0, *ratios]
        am, ae = np.array(acc).T
        ax.errorbar(xs, 100 * am, yerr=np.nan_to_num(100 * ae), color=color, marker="o", ms=4,
                    capsize=2, lw=1.4)
        ax.set_xscale("log")
        ax.set_xticks(xs, [ratio_label(x) for x in xs], fontsize=7)
        ax.minorticks_off()
        ax.set_ylabel("accuracy (%)", fontsize=8)
        ax.set_xlabel("compression ratio t", fontsize=8)
        ax.tick_params(labelsize=7)
        ax2 = ax.twinx()
        mm, me = np.array(alp).T if alp else (np.array([]), np.array([]))
        ax2.errorbar(ratios, mm, yerr=np.nan_to_num(me), color=color, marker="s", ms=4,
                     capsize=2, lw=1.2, ls="--")
        ax2.axhline(1.0, color="0.5", lw=0.7, ls=":")
        _alpha_axis(ax2, np.concatenate([mm - np.nan_to_num(me), mm + np.nan_to_num(me)]),
                    "mean α ± SE", 8)
        ax2.tick_params(labelsize=7)
        ax.set_title(f"{dataset} · {arch} · {method_label(method)}", fontsize=9, color=color)
    handles = [Line2D([], [], color="0.3", marker="o", lw=1.4, label="accuracy (left axis)"),
               Line2D([], [], color="0.3", marker="s", ls="--", lw=1.2,
                      label="mean α (right axis)"),
               Line2D([], [], color="0.5", ls=":", lw=0.7, label="α = 1")]
    fig.legend(handles=handles, loc="outside lower center", ncols=3, fontsize=8, frameon=False)
    fig.suptitle("Accuracy and intensification vs compression (mean ± 1 SE over models)",
                 fontsize=11)
    return fig


def prune_potential_plot(potential_ci: pd.DataFrame, distributions: list[str], title: str,
                         delta: float) -> Figure:
    """Prune potential per test distribution, methods side by side: mean with 99 % CI of the
    percentage of parameters removed, 1 - 1/t (left axis), the ratio t on the right axis.

    Args:
        potential_ci: ``report.render.potential_summary`` rows of one (dataset, arch): one
            row per (method, distribution) with ``mean``, ``ci_low``, ``ci_high`` (percent
            removed).
        distributions: x order (the nominal one first).
        title: figure title.
        delta: tolerance of the prune potential in percentage points (0.5 = half a point).
    """
    methods = ordered("method", potential_ci["method"].unique())
    fig_w = max(5.5, 1.5 + 0.42 * len(distributions) * max(1, len(methods)) ** 0.5)
    fig = new_figure(fig_w, 4.2)
    ax = fig.subplots()
    width = 0.8 / max(len(methods), 1)
    pos = {d: i for i, d in enumerate(distributions)}
    for k, method in enumerate(methods):
        sub = potential_ci[potential_ci["method"] == method]
        xs = sub["distribution"].map(pos).to_numpy(float) - 0.4 + width * (k + 0.5)
        mean = sub["mean"].to_numpy(float)
        err = np.vstack([mean - sub["ci_low"].to_numpy(float), sub["ci_high"].to_numpy(float) - mean])
        ax.errorbar(xs, mean, yerr=np.where(np.isfinite(err), err, 0.0), fmt="o",
                    color=method_color(method), ms=5, capsize=3, lw=1.2, label=method_label(method))
    for i in range(1, len(distributions)):
        ax.axvline(i - 0.5, color="0.9", lw=0.8, zorder=0)
    ax.set_ylim(0, 100)
    to_t = lambda pct: 1.0 / np.maximum(1.0 - np.asarray(pct, float) / 100.0, 1e-9)  # noqa: E731
    to_pct = lambda t: 100.0 * (1.0 - 1.0 / np.maximum(np.asarray(t, float), 1e-9))  # noqa: E731
    right = ax.secondary_yaxis("right", functions=(to_t, to_pct))
    right.set_yticks([1, 2, 4, 10, 50], ["1", "2", "4", "10", "50"])
    right.set_ylabel("compression ratio t")
    ax.set_xlim(-0.5, len(distributions) - 0.5)
    ax.set_xticks(range(len(distributions)), distributions, rotation=60, ha="right", fontsize=7)
    ax.set_xlabel("test distribution")
    ax.set_ylabel("prune potential: parameters removed (%)")
    ax.legend(title="method", fontsize=8, title_fontsize=8, frameon=False)
    ax.set_title(textwrap.fill(f"{title}: removed 1 − 1/t at the largest t with error ≤ dense "
                               f"error + {delta:g} pts (mean, 99 % CI; 0 % = only dense)",
                               width=int(fig_w * 13)),
                 fontsize=9)
    return fig


def error_vs_ratio_plot(errors: pd.DataFrame, distributions: list[str], title: str) -> Figure:
    """Mean top-1 error (%) vs compression ratio, one line per distribution, one panel per method.

    Args:
        errors: ``metrics.error_frame`` rows of one (dataset, arch), dense rows included (drawn at
            t = 1 in every panel): ``method, ratio, distribution, error`` (fraction).
        distributions: line order; the first (nominal) is drawn black and thick.
        title: figure title.
    """
    means = errors.groupby(["method", "ratio", "distribution"], sort=True)["error"].mean()
    dense = means.xs("dense", level="method") if "dense" in means.index.get_level_values(0) else None
    methods = [m for m in ordered("method", errors["method"].unique()) if m != "dense"]
    cmap = colormaps["viridis"].resampled(max(len(distributions) - 1, 1))
    fig = new_figure(0.8 + 4.0 * len(methods), 4.6 + 0.16 * len(distributions) / 3)
    axes = fig.subplots(1, max(len(methods), 1), sharey=True, squeeze=False)[0]
    for ax, method in zip(axes, methods):
        sub = means.xs(method, level="method")
        for k, dist in enumerate(distributions):
            if dist not in sub.index.get_level_values("distribution"):
                continue
            curve = sub.xs(dist, level="distribution")
            xs, ys = list(curve.index), list(curve.to_numpy())
            if dense is not None and dist in dense.index.get_level_values("distribution"):
                xs, ys = [1.0, *xs], [float(dense.xs(dist, level="distribution").iloc[0]), *ys]
            style = ({"color": "black", "lw": 2.2, "zorder": 3} if k == 0 else
                     {"color": cmap(k - 1), "lw": 1.0, "alpha": 0.85})
            ax.plot(xs, 100 * np.asarray(ys), marker=".", label=dist, **style)
        ax.set_xscale("log")
        ratios = sorted({1.0, *sub.index.get_level_values("ratio")})
        ax.set_xticks(ratios, [ratio_label(r) for r in ratios], fontsize=7)
        ax.minorticks_off()
        ax.set_xlabel("compression ratio t")
        ax.set_title(method_label(method), color=method_color(method), fontsize=10)
    axes[0].set_ylabel("top-1 error (%)")
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncols=min(6, len(labels)), fontsize=7,
               frameon=False, title="test distribution", title_fontsize=8)
    fig.suptitle(title, fontsize=11)
    return fig


def agreement_plot(ci: pd.DataFrame, panels: list[tuple[str, list[str]]], title: str) -> Figure:
    """Functional agreement with the dense model (%) vs compression ratio, one line per method.

    Args:
        ci: ``stats.mean_ci`` rows of one (dataset, arch) over models: ``method, ratio,
            distribution, n, mean, ci_low, ci_high`` (agreement as a fraction in [0, 1]; the CI
            is NaN for single-model cells and then not drawn).
        panels: ``(panel title, distributions)`` in drawing order; a panel of several
            distributions (a corruption family) draws one line per method and distribution,
            lighter for the earlier (milder) ones.
        title: figure title.

    Every line starts at (1x, 100 %): the dense model agrees with itself.
    """
    methods = ordered("method", ci["method"].unique())
    ncols = min(4, max(len(panels), 1))
    nrows = -(-max(len(panels), 1) // ncols)
    fig = new_figure(0.8 + 3.6 * ncols, 0.6 + 3.2 * nrows)
    axes = fig.subplots(nrows, ncols, sharey=True, squeeze=False).ravel()
    for ax in axes[len(panels):]:
        ax.set_axis_off()
    for ax, (name, dists) in zip(axes, panels):
        shown = [d for d in dists if d in set(ci["distribution"])]
        ratios = {1.0}
        for method in methods:
            for k, dist in enumerate(shown):
                sub = ci[(ci["method"] == method) & (ci["distribution"] == dist)]
                if sub.empty:
                    continue
                sub = sub.sort_values("ratio")
                ratios |= set(sub["ratio"])
                xs = np.r_[1.0, sub["ratio"].to_numpy(dtype=float)]
                ys = 100 * np.r_[1.0, sub["mean"].to_numpy(dtype=float)]
                alpha = 1.0 if len(shown) == 1 else 0.35 + 0.65 * k / (len(shown) - 1)
                color = method_color(method)
                ax.plot(xs, ys, marker=".", color=color, alpha=alpha, lw=1.3,
                        label=method_label(method) if k == len(shown) - 1 else None)
                lo = 100 * np.r_[1.0, sub["ci_low"].to_numpy(dtype=float)]
                hi = 100 * np.r_[1.0, sub["ci_high"].to_numpy(dtype=float)]
                if np.isfinite(lo[1:]).any():
                    ax.fill_between(xs, lo, hi, color=color, alpha=0.15 * alpha, lw=0)
        ax.set_xscale("log")
        rs = sorted(ratios)
        ax.set_xticks(rs, [ratio_label(r) for r in rs], fontsize=7)
        ax.minorticks_off()
        ax.set_xlabel("compression ratio t")
        ax.set_title(name, fontsize=9)
        ax.grid(alpha=0.3)
    for row in range(nrows):
        axes[row * ncols].set_ylabel("agreement with dense (%)")
    handles, labels = axes[0].get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, loc="outside lower center", ncols=min(6, len(labels)),
                   fontsize=8, frameon=False, title="method", title_fontsize=8)
    fig.suptitle(title, fontsize=11)
    return fig
