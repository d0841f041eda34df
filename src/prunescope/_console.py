"""The rich consoles and progress text columns of every command: none of them parses markup.

Whatever prunescope prints holds user text: study names, file paths, TOML values, error
messages quoting them, class names, job ids. Rich would read ``[/]``, ``[[grid]]`` or a job id
``[a3f...]`` in such text as markup (raising ``MarkupError`` or dropping the brackets), so every
console, table and progress column is built here with markup off, and colour is given as
:class:`rich.text.Text` styles (:func:`styled`) instead of markup tags. Build consoles and
text columns only through this module.
"""
from __future__ import annotations

from rich.console import Console
from rich.progress import TextColumn
from rich.text import Text


#: columns of a console that is not a terminal (a log file, a pipe): wide enough that no line of
#: a table, path or message is wrapped (rich would wrap at 80 columns)
LOG_WIDTH = 1000


def console(*, stderr: bool = False) -> Console:
    """A console (stdout, or stderr) that prints every string as written (no markup): the
    terminal's width on a terminal, else :data:`LOG_WIDTH` columns, so that redirected output
    keeps every line (a file path in a message, a table row) whole."""
    c = Console(stderr=stderr, markup=False)
    return c if c.is_terminal else Console(stderr=stderr, markup=False, width=LOG_WIDTH)


def text_column(template: str) -> TextColumn:
    """A progress column showing ``template`` (``"{task.description}"``) filled in, unparsed."""
    return TextColumn(template, markup=False)


def styled(label: str, style: str, rest: str = "") -> Text:
    """``label`` in ``style`` (e.g. ``"red"``) followed by ``rest`` unstyled, both as written."""
    return Text.assemble((label, style), rest)
