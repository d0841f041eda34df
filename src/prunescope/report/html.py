"""The self-contained ``report.html``: figures embedded as base64 PNG, inline CSS, no scripts.

Nothing on the page refers to the network: it can be opened from disk, offline, in any browser.
Every figure and table links to the study spec (``#spec``) and the prunescope version
(``#provenance``) that produced its numbers.
"""
from __future__ import annotations

import base64
import html
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from matplotlib.figure import Figure

from prunescope.report.style import save_figure
from prunescope.report.tables import to_html, write_table

_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;color:#1b1b1b;
 background:#fafafa;line-height:1.45}
main{max-width:1200px;margin:0 auto;padding:1rem 1.5rem 4rem}
header{background:#1f3a5f;color:#fff;padding:1rem 1.5rem}
header h1{margin:0 0 .3rem;font-size:1.5rem} header p{margin:0;opacity:.9}
header a{color:#cfe3ff}
nav{background:#fff;border:1px solid #ddd;border-radius:6px;padding:.5rem 1rem;margin:1rem 0}
nav ul{margin:.2rem 0;padding-left:1.2rem;columns:2}
section{background:#fff;border:1px solid #e2e2e2;border-radius:6px;padding:.5rem 1.2rem 1rem;
 margin:1rem 0}
h2{border-bottom:2px solid #1f3a5f;padding-bottom:.2rem}
figure{margin:1rem 0;padding:0} figure img{max-width:100%;height:auto;border:1px solid #eee}
figcaption{font-size:.92rem;color:#333;margin-top:.3rem}
.files,.prov{font-size:.8rem;color:#666}
.notice{background:#fff6e0;border-left:4px solid #e69f00;padding:.5rem .8rem;margin:.6rem 0}
.notice.error{background:#fdecea;border-color:#c0392b}
table{border-collapse:collapse;font-size:.82rem;margin:.5rem 0;display:block;overflow-x:auto}
th,td{border:1px solid #ddd;padding:.2rem .45rem;text-align:right;white-space:nowrap}
th{background:#f0f3f7;text-align:center} td.t{text-align:left}
pre{background:#f4f4f4;border:1px solid #ddd;padding:.7rem;overflow-x:auto;font-size:.82rem}
code{font-size:.85em}
"""


@dataclass
class FigureItem:
    """One figure: the PNG embedded in the page, the PDF listed beside it."""

    title: str
    caption: str
    png: Path
    pdf: Path
    anchor: str


@dataclass
class TableItem:
    """One table: shown as HTML, written as Markdown, CSV and LaTeX files."""

    title: str
    caption: str
    frame: pd.DataFrame
    files: tuple[Path, ...]
    anchor: str
    digits: int = 3


@dataclass
class Section:
    """A titled part of the page with an introduction, notices, figures and tables, and
    ``html``: markup built by prunescope itself (every interpolated value escaped), shown after
    the tables (e.g. the PIE thumbnail gallery)."""

    anchor: str
    title: str
    intro: str = ""
    notices: list[str] = field(default_factory=list)
    figures: list[FigureItem] = field(default_factory=list)
    tables: list[TableItem] = field(default_factory=list)
    html: str = ""


def table_item(frame: pd.DataFrame, stem: Path, title: str, caption: str, anchor: str,
               digits: int = 3) -> TableItem:
    """Write ``frame`` as ``<stem>.md|.csv|.tex`` (:func:`write_table`) and describe it for the
    page."""
    files = write_table(frame, stem, f"{title}. {caption}", digits)
    return TableItem(title, caption, frame, files, anchor, digits)


def figure_item(fig: Figure, stem: Path, title: str, caption: str, anchor: str) -> FigureItem:
    """Save ``fig`` as ``<stem>.png|.pdf`` (:func:`save_figure`, which closes it) and describe it
    for the page."""
    png, pdf = save_figure(fig, stem)
    return FigureItem(title, caption, png, pdf, anchor)


def _png_data_uri(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def _provenance_links(version: str) -> str:
    return (f'<span class="prov">Computed by <a href="#provenance">prunescope {html.escape(version)}'
            f'</a> from the <a href="#spec">study spec</a>.</span>')


def _rel(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return path.name


def _figure_html(item: FigureItem, root: Path, version: str) -> str:
    files = f"{_rel(item.png, root)}, {_rel(item.pdf, root)}"
    return (f'<figure id="{item.anchor}"><h3>{html.escape(item.title)}</h3>'
            f'<img src="{_png_data_uri(item.png)}" alt="{html.escape(item.title)}">'
            f"<figcaption>{html.escape(item.caption)} {_provenance_links(version)}"
            f' <span class="files">Files: <code>{html.escape(files)}</code></span>'
            f"</figcaption></figure>")


def _table_html(item: TableItem, root: Path, version: str) -> str:
    files = ", ".join(_rel(p, root) for p in item.files)
    return (f'<div id="{item.anchor}"><h3>{html.escape(item.title)}</h3>'
            f"<p>{html.escape(item.caption)} {_provenance_links(version)}"
            f' <span class="files">Files: <code>{html.escape(files)}</code></span></p>'
            f"{to_html(item.frame, item.digits)}</div>")


def _notice(text: str, kind: str = "") -> str:
    return f'<div class="notice {kind}">{html.escape(text)}</div>'


def build_page(*, study_name: str, version: str, spec_text: str | None, sections: list[Section],
               notices: list[str], root: Path) -> str:
    """The whole HTML document as a string.

    Args:
        study_name: shown in the title.
        version: prunescope version that computed every number on the page.
        spec_text: the study's TOML text, shown verbatim (None: the page says it was not given).
        sections: the page's sections, in order.
        notices: study-wide notices (partial study, single seed, dropped rows), shown on top.
        root: the report folder; file names in captions are relative to it.
    """
    toc = "".join(f'<li><a href="#{s.anchor}">{html.escape(s.title)}</a></li>' for s in sections)
    toc += '<li><a href="#spec">Study spec</a></li><li><a href="#provenance">Provenance</a></li>'
    parts = [
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>prunescope report: {html.escape(study_name)}</title>",
        f"<style>{_CSS}</style></head><body>",
        f"<header><h1>prunescope report: {html.escape(study_name)}</h1>"
        f'<p>Every number on this page was computed by <a href="#provenance">prunescope '
        f'{html.escape(version)}</a> from the <a href="#spec">study spec</a> below.</p></header>',
        "<main>",
        *(_notice(n) for n in notices),
        f"<nav><strong>Contents</strong><ul>{toc}</ul></nav>",
    ]
    for s in sections:
        parts.append(f'<section id="{s.anchor}"><h2>{html.escape(s.title)}</h2>')
        if s.intro:
            parts.append(f"<p>{html.escape(s.intro)}</p>")
        parts += [_notice(n) for n in s.notices]
        parts += [_figure_html(f, root, version) for f in s.figures]
        parts += [_table_html(t, root, version) for t in s.tables]
        if s.html:
            parts.append(s.html)
        parts.append("</section>")
    spec_body = (f"<pre>{html.escape(spec_text)}</pre>" if spec_text is not None else
                 _notice("No spec text was given to render_report (pass spec_text=...): the "
                         "study that produced these numbers cannot be shown."))
    parts += [f'<section id="spec"><h2>Study spec</h2>{spec_body}</section>',
              f'<section id="provenance"><h2>Provenance</h2><p>Produced by prunescope '
              f"<strong>{html.escape(version)}</strong> from the study "
              f"<strong>{html.escape(study_name)}</strong>. Figures are embedded as PNG; the PDF, "
              "Markdown, CSV and LaTeX files named in each caption lie beside this page.</p>"
              "</section>",
              "</main></body></html>"]
    return "\n".join(parts)
