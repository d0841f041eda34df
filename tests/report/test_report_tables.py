"""Table writers: Markdown, LaTeX and HTML escaping and number formatting."""
from __future__ import annotations

import numpy as np
import pandas as pd

from prunescope.report.tables import format_cell, to_html, to_latex, to_markdown, write_table


def _frame() -> pd.DataFrame:
    return pd.DataFrame({"comparison": ["a|b", "x_y & 50%"], "ratio": [1.5625, 2.0],
                         "p": [0.000012, np.nan], "n": [3, 4]})


def test_format_cell():
    assert format_cell(np.nan) == "" and format_cell(None) == ""
    assert format_cell(0.12345) == "0.123" and format_cell(1.2e-5) == "1.2e-05"
    assert format_cell(0.0) == "0.000" and format_cell("<") == "<" and format_cell(7) == "7"


def test_markdown_escapes_pipes_and_keeps_ratios_exact():
    md = to_markdown(_frame()).splitlines()
    assert md[0] == "| comparison | ratio | p | n |" and md[1] == "|---|---|---|---|"
    assert md[2] == r"| a\|b | 1.5625 | 1.2e-05 | 3 |"
    assert md[3] == "| x_y & 50% | 2 |  | 4 |"


def test_latex_escapes_specials():
    tex = to_latex(_frame(), caption="p < 0.01 & more")
    assert r"\caption{p \textless{} 0.01 \& more}" in tex
    assert r"x\_y \& 50\% & 2 &  & 4 \\" in tex
    assert tex.startswith(r"\begin{table}") and tex.rstrip().endswith(r"\end{table}")


def test_html_escapes_and_aligns_text_left():
    page = to_html(pd.DataFrame({"c": ["<b>"], "v": [1.0]}))
    assert '<td class="t">&lt;b&gt;</td><td>1.000</td>' in page


def test_write_table_keeps_full_precision_in_csv(tmp_path):
    md, csv, tex = write_table(_frame(), tmp_path / "t", "Caption")
    back = pd.read_csv(csv)
    assert back["p"].iloc[0] == 0.000012 and back["ratio"].iloc[0] == 1.5625
    assert md.read_text().startswith("Caption\n\n| comparison")
    assert tex.read_text().count(r"\\") == 3
