"""prunescope.report: figures, tables and one self-contained HTML page for a study (SPEC 6).

``render_report(results_frame, out_dir, ...)`` is the entry point; ``prunescope report STUDY``
calls it on a study's stored results. Never imports torch; matplotlib runs on the Agg backend.
"""
from prunescope.analysis import analyse
from prunescope.report.render import factor_groups, render_report
from prunescope.report.style import METHOD_COLORS, method_color

__all__ = ["METHOD_COLORS", "analyse", "factor_groups", "method_color", "render_report"]
