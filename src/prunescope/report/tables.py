"""Report tables: writers for Markdown, CSV and LaTeX, and the shaping of analysis frames.

The writers need no optional dependency (no ``tabulate``, no ``jinja2``). CSV keeps full
precision; Markdown, LaTeX and HTML show numbers rounded by :func:`format_cell`.
"""
from __future__ import annotations

import html
import math
from pathlib import Path

import numpy as np
import pandas as pd

from prunescope.metrics import DENSE_METHOD
from prunescope.catalog import methods as registry
from prunescope.report.style import ordered, ratio_label

_LATEX_SPECIAL = {"&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{",
                  "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
                  "\\": r"\textbackslash{}", "<": r"\textless{}", ">": r"\textgreater{}"}


def format_cell(value: object, digits: int = 3) -> str:
    """Text of one table cell: floats with ``digits`` significant decimals, NaN as an empty cell."""
    if value is None:
        return ""
    if isinstance(value, (float, np.floating)):
        if math.isnan(value):
            return ""
        if value != 0 and abs(value) < 10 ** -digits:
            return f"{value:.1e}"
        return f"{value:.{digits}f}"
    return str(value)


def _label(column: object) -> str:
    """Column label as text: float labels (ratios of a pivoted table) without a trailing .0."""
    return f"{column:g}" if isinstance(column, (float, np.floating)) else str(column)


def _flat(frame: pd.DataFrame) -> pd.DataFrame:
    """The frame with its index as ordinary columns and column labels as strings."""
    out = frame.reset_index() if not isinstance(frame.index, pd.RangeIndex) else frame.copy()
    out.columns = [" ".join(map(_label, c)) if isinstance(c, tuple) else _label(c)
                   for c in out.columns]
    return out


#: Columns shown with as many digits as they need (ratios such as 1.5625, counts).
_EXACT_COLUMNS = frozenset({"ratio", "level", "n", "models", "dense models", "n_models",
                            "n_points", "jobs", "model", "seed", "undefined I"})


def _rows(frame: pd.DataFrame, digits: int) -> tuple[list[str], list[list[str]]]:
    flat = _flat(frame)
    exact = [c in _EXACT_COLUMNS for c in flat.columns]
    return list(flat.columns), [
        [format_cell(v, digits) if not ex or not isinstance(v, (float, np.floating))
         or math.isnan(v) else f"{v:g}" for v, ex in zip(row, exact)]
        for row in flat.itertuples(index=False)]


def to_markdown(frame: pd.DataFrame, digits: int = 3) -> str:
    """GitHub-flavoured Markdown table of ``frame`` (index written as leading columns)."""
    header, rows = _rows(frame, digits)
    esc = [[c.replace("|", r"\|") for c in r] for r in [header, *rows]]
    lines = ["| " + " | ".join(esc[0]) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in esc[1:]]
    return "\n".join(lines) + "\n"


def _latex_escape(text: str) -> str:
    return "".join(_LATEX_SPECIAL.get(ch, ch) for ch in text)


def to_latex(frame: pd.DataFrame, caption: str, digits: int = 3) -> str:
    """A LaTeX ``table`` environment (booktabs rules) of ``frame`` with ``caption``."""
    header, rows = _rows(frame, digits)
    spec = "l" * len(header)
    body = [" & ".join(_latex_escape(c) for c in header) + r" \\", r"\midrule"]
    body += [" & ".join(_latex_escape(c) for c in r) + r" \\" for r in rows]
    return "\n".join([r"\begin{table}[ht]", r"\centering", f"\\caption{{{_latex_escape(caption)}}}",
                      f"\\begin{{tabular}}{{{spec}}}", r"\toprule", *body, r"\bottomrule",
                      r"\end{tabular}", r"\end{table}"]) + "\n"


def to_html(frame: pd.DataFrame, digits: int = 3) -> str:
    """An HTML ``<table>`` of ``frame`` (escaped; text cells get class ``t``, left-aligned by the
    page's CSS, numbers stay right-aligned)."""
    header, rows = _rows(frame, digits)
    numeric = [pd.api.types.is_numeric_dtype(t) and not pd.api.types.is_bool_dtype(t)
               for t in _flat(frame).dtypes]
    head = "".join(f"<th>{html.escape(c)}</th>" for c in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" if num else
                                    f'<td class="t">{html.escape(c)}</td>'
                                    for c, num in zip(r, numeric)) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def write_table(frame: pd.DataFrame, stem: Path, caption: str, digits: int = 3
                ) -> tuple[Path, Path, Path]:
    """Write ``frame`` as ``<stem>.md``, ``<stem>.csv`` (full precision) and ``<stem>.tex``."""
    stem.parent.mkdir(parents=True, exist_ok=True)
    md, csv, tex = (stem.with_suffix(s) for s in (".md", ".csv", ".tex"))
    md.write_text(f"{caption}\n\n{to_markdown(frame, digits)}", encoding="utf-8")
    _flat(frame).to_csv(csv, index=False)
    tex.write_text(to_latex(frame, caption, digits), encoding="utf-8")
    return md, csv, tex


def sorted_cells(frame: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """``frame`` with rows in canonical dataset/arch/method order, then by the other keys."""
    out = frame.copy()
    for k in ("dataset", "arch", "method"):
        if k in keys:
            rank = {v: i for i, v in enumerate(ordered(k, out[k].unique()))}
            out[f"_{k}"] = out[k].map(rank)
    sort = [f"_{k}" if f"_{k}" in out else k for k in keys]
    return out.sort_values(sort).drop(columns=[c for c in out if c.startswith("_")])


def dense_accuracy_table(alphas: pd.DataFrame) -> pd.DataFrame:
    """Mean accuracy before pruning (%) per (dataset, arch, method), over the pruned models' parents.

    Args:
        alphas: ``metrics.model_alpha`` output (``accuracy_before`` a fraction, one row per
            pruned evaluation; each dense parent counted once per method).

    Returns:
        Columns ``dataset, arch, method, models, accuracy before (%)``.
    """
    parents = alphas.drop_duplicates(["dataset", "arch", "method", "model"])
    out = (parents.groupby(["dataset", "arch", "method"], sort=False)
           .agg(models=("model", "nunique"), acc=("accuracy_before", "mean")).reset_index())
    out["acc"] = 100 * out["acc"]
    out = out.rename(columns={"acc": "accuracy before (%)"})
    return sorted_cells(out, ["dataset", "arch", "method"]).reset_index(drop=True)


def recall_variance_table(alphas: pd.DataFrame) -> pd.DataFrame:
    """Mean over models of the recall variance over classes, per cell group (rows) and ratio (cols).

    Args:
        alphas: ``metrics.model_alpha`` output (``var_before``/``var_after``: variance of the
            per-class recall fractions, ddof 0).

    Returns:
        Rows ``(dataset, arch, method)``; columns ``1x (dense)`` (the parents' variance) and one
        per ratio (``2x``, ...), values in recall-fraction squared.
    """
    keys = ["dataset", "arch", "method"]
    after = alphas.groupby([*keys, "ratio"], sort=False)["var_after"].mean().unstack("ratio")
    after = after[sorted(after.columns)]
    after.columns = [ratio_label(r) for r in after.columns]
    dense = (alphas.drop_duplicates([*keys, "model"]).groupby(keys, sort=False)["var_before"].mean()
             .rename("1x (dense)"))
    out = pd.concat([dense, after], axis=1).reset_index()
    return sorted_cells(out, keys).reset_index(drop=True)


def table11_variance_table(table11: pd.DataFrame) -> pd.DataFrame:
    """The paper's Table 11 "recall variance" as its code computes it (SPEC 8), laid out as
    :func:`recall_variance_table`: mean over models of the variance (ddof 1) over classes of
    correct_c / 1000.

    Args:
        table11: ``metrics.correct_share_variance`` output (dense rows: ``method == "dense"``).

    Returns:
        Rows ``(dataset, arch, method)`` of the pruned methods; columns ``1x (dense)`` (the
        dense models of the dataset and arch) and one per ratio.
    """
    frame = table11[table11["level"].isna()] if "level" in table11 else table11
    is_dense = frame["method"] == DENSE_METHOD
    keys = ["dataset", "arch", "method"]
    after = (frame[~is_dense].groupby([*keys, "ratio"], sort=False)["table11_var"].mean()
             .unstack("ratio"))
    after = after[sorted(after.columns)]
    after.columns = [ratio_label(r) for r in after.columns]
    dense = (frame[is_dense].groupby(["dataset", "arch"], sort=False)["table11_var"].mean()
             .rename("1x (dense)").reset_index())
    out = dense.merge(after.reset_index(), on=["dataset", "arch"])
    return sorted_cells(out[[*keys, "1x (dense)", *after.columns]], keys).reset_index(drop=True)


def alpha_ci_table(ci: pd.DataFrame, pooled: pd.DataFrame, keys: list[str],
                   mean_i: pd.DataFrame | None = None,
                   alphas: pd.DataFrame | None = None) -> pd.DataFrame:
    """Per cell: models, mean alpha with its sd, 99 % CI and label, the pooled fit, and (with
    ``mean_i``) the per-model mean of I beside it.

    Args:
        ci: ``stats.mean_ci`` output: one row per cell with ``n, mean, sd, ci_low, ci_high, label``.
        pooled: ``metrics.pooled_alpha`` output (``alpha_hat, r2, A_bar``).
        keys: cell key columns shared by both frames (``dataset, arch, method, ratio`` ...).
        mean_i: per cell ``mean_I`` (mean over models of ``model_alpha``'s per-model
            ``mean_I``), ``sd_mean_I`` (its sd over models) and ``n_undefined_I`` (points with
            undefined I), or None.
        alphas: ``model_alpha`` rows with ``achieved_ratio``: adds ``achieved ratio``, its mean
            per cell (methods compared at one stated ratio may reach different ones).

    Returns:
        Columns ``*keys, n, mean α, sd α, 99% CI low, 99% CI high, label, α̂, r², Ā (%)`` [+
        ``mean I, sd mean I, undefined I``].
    """
    out = ci[[*keys, "n", "mean", "sd", "ci_low", "ci_high", "label"]].merge(
        pooled[[*keys, "alpha_hat", "r2", "A_bar"]], on=keys, how="left")
    if alphas is not None and "achieved_ratio" in alphas:
        achieved = (alphas.groupby(keys, sort=False, dropna=False)["achieved_ratio"].mean()
                    .rename("achieved ratio").reset_index())
        out = out.merge(achieved, on=keys, how="left")
        out.insert(len(keys), "achieved ratio", out.pop("achieved ratio"))
    out["A_bar"] = 100 * out["A_bar"]
    if mean_i is not None:
        out = out.merge(mean_i[[*keys, "mean_I", "sd_mean_I", "n_undefined_I"]], on=keys, how="left")
    out = out.rename(columns={"mean": "mean α", "sd": "sd α", "ci_low": "99% CI low",
                              "ci_high": "99% CI high", "alpha_hat": "α̂", "r2": "r²",
                              "A_bar": "Ā (%)", "mean_I": "mean I", "sd_mean_I": "sd mean I",
                              "n_undefined_I": "undefined I"})
    return sorted_cells(out, keys).reset_index(drop=True)


def has_level_rows(alphas: pd.DataFrame) -> bool:
    """Whether :func:`level_table` has rows: an iterative method with a ``level`` or a
    structured method (no levels: one row per requested ratio) is present."""
    leveled = "level" in alphas and bool(alphas["level"].notna().any())
    return leveled or bool(alphas["method"].isin(registry.names("structured")).any())


def level_table(alphas: pd.DataFrame, ci: pd.DataFrame | None) -> pd.DataFrame:
    """Accuracy and intensification per level of iterative/structured methods (SPEC 6).

    Args:
        alphas: ``metrics.model_alpha`` output, with a ``level`` column for iterative methods
            (and ``achieved_ratio`` when the study recorded it).
        ci: CI rows with ``label`` per cell (``level`` when the frame had one), or None (single
            seed).

    Returns:
        One row per (dataset, arch, method, level, ratio): rows with a ``level`` (LTH) and rows of
        structured methods (``level`` NaN, one row per requested ``ratio``), with ``models``,
        ``achieved ratio`` (mean), ``accuracy (%)`` (mean), ``mean α``, ``label``.
    """
    keys = ["dataset", "arch", "method", "level", "ratio"]
    a = alphas if "level" in alphas else alphas.assign(level=np.nan)
    rows = a[a["level"].notna() | a["method"].isin(registry.names("structured"))]
    agg = {"models": ("model", "nunique"), "accuracy (%)": ("accuracy_after", "mean"),
           "mean α": ("alpha", "mean")}
    ratio_col = "achieved_ratio" if "achieved_ratio" in rows else "ratio"
    agg["achieved ratio"] = (ratio_col, "mean")
    out = rows.groupby(keys, sort=False, dropna=False).agg(**agg).reset_index()
    out["accuracy (%)"] = 100 * out["accuracy (%)"]
    if ci is not None and "ratio" in ci:
        c = ci if "level" in ci else ci.assign(level=np.nan)
        out = out.merge(c[keys + ["label"]].drop_duplicates(keys), on=keys, how="left")
    out = out[[*keys, "models", "achieved ratio", "accuracy (%)", "mean α",
               *(["label"] if "label" in out else [])]]
    return sorted_cells(out, keys).reset_index(drop=True)
