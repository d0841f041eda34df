"""Shared look of every report figure: one fixed colour per method, level orders, file output.

Matplotlib is switched to the non-interactive Agg backend on import of this module, so figures can
be drawn on machines without a display.
"""
from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after selecting the backend)
from matplotlib.figure import Figure  # noqa: E402

from prunescope.analysis.orders import level_order  # noqa: E402
from prunescope.catalog.methods import REGISTRY  # noqa: E402

#: Fixed colour per pruning method, the same in every figure (:mod:`prunescope.catalog.methods`).
METHOD_COLORS: dict[str, str] = {"dense": "#000000", **{m.name: m.colour for m in REGISTRY}}
#: Colours handed out, in order, to methods not in :data:`METHOD_COLORS`.
_EXTRA_COLORS = ("#882255", "#117733", "#332288", "#AA4499", "#44AA99", "#999933")

#: Display names.
METHOD_LABELS: dict[str, str] = {"dense": "dense", **{m.name: m.label for m in REGISTRY}}
#: Markers that tell levels of a non-method factor apart inside one method colour.
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*", "<", ">")

PNG_DPI = 110


def method_color(method: str) -> str:
    """Hex colour of ``method``: fixed for known methods, stable (name-hashed) for others."""
    if method in METHOD_COLORS:
        return METHOD_COLORS[method]
    return _EXTRA_COLORS[sum(method.encode()) % len(_EXTRA_COLORS)]


def method_label(method: str) -> str:
    """Human-readable name of ``method`` (``mp`` -> ``MP``)."""
    return METHOD_LABELS.get(method, method)


def known_order(factor: str) -> tuple[str, ...]:
    """The known levels of ``factor`` in the report's order: the p-value tables' order
    (:func:`prunescope.analysis.level_order`, read from the catalog when asked), the dense
    model first among the methods; ``()`` for another factor."""
    known = level_order().get(factor, ())
    return ("dense", *known) if factor == "method" else known


def ordered(factor: str, levels: Iterable[object]) -> list:
    """``levels`` of ``factor`` in the report's canonical order (known names first, then sorted)."""
    known = known_order(factor)
    levels = list(dict.fromkeys(levels))
    first = [k for k in known if k in levels]
    rest = sorted((v for v in levels if v not in known), key=lambda v: (str(type(v)), v))
    return first + rest


def ratio_label(ratio: float) -> str:
    """Compact label of a compression ratio: ``2.0`` -> ``2x``, ``2.5`` -> ``2.5x``."""
    return f"{ratio:g}x"


def new_figure(width: float, height: float, constrained: bool = True) -> Figure:
    """A figure of ``width`` x ``height`` inches, with constrained layout (no overlapping labels)
    unless ``constrained`` is False (the caller then places every axes itself)."""
    return plt.figure(figsize=(width, height), layout="constrained" if constrained else None)


def save_figure(fig: Figure, stem: Path) -> tuple[Path, Path]:
    """Write ``fig`` to ``<stem>.png`` (``PNG_DPI`` dots per inch) and ``<stem>.pdf``; close it.

    Returns the two paths (PNG, PDF).
    """
    stem.parent.mkdir(parents=True, exist_ok=True)
    png, pdf = stem.with_suffix(".png"), stem.with_suffix(".pdf")
    try:
        fig.savefig(png, dpi=PNG_DPI)
        if fig.get_layout_engine() is not None:
            # the layout is solved in figure-relative units: reuse it for the PDF, do not redo it
            fig.set_layout_engine("none")
        fig.savefig(pdf)
    finally:
        plt.close(fig)
    return png, pdf


def slug(*parts: object) -> str:
    """A file-name stem of ``parts``: every run of characters other than letters, digits and
    dots (the joining ones included) as one ``-``, lower case (``("Method", "mp@2")`` ->
    ``method-mp-2``)."""
    return re.sub(r"[^A-Za-z0-9.]+", "-", "_".join(str(p) for p in parts)).strip("-").lower()
