"""prunescope.analysis: a study's tidy results -> every frame the report shows (DESIGN's flow:
store -> analysis -> report).

Pure functions over pandas frames built from :mod:`prunescope.metrics` and
:mod:`prunescope.stats` (never imports torch or matplotlib): per-model and pooled alphas and
their intervals, the SPEC 5 test families (with the catalog's names and orders,
:func:`family_orders`), prune potential as Lost in Pruning reports it,
excess error, alpha per test distribution, functional agreement, study coverage, and the views
of underrepresented classes (long-tail slopes, balanced-vs-imbalanced tests, PIE shares). The report
(:mod:`prunescope.report`) only lays these frames out and draws them; :mod:`prunescope.audit`
takes its per-model alphas from :func:`model_alphas`. See docs/architecture.md.

Units: accuracies, errors and agreement are fractions in [0, 1]; ``removed_pct`` is a percentage;
ratios are compression ratios t = all params / nonzero params; ``delta`` is in percentage points.
"""
from prunescope.analysis.cells import (AGREEMENT_KEYS, CI_LEVEL, COLLAPSE_FACTOR, DONE_STATUSES,
                                       POTENTIAL_KEYS, VALUE_COLUMNS, Analysis, analyse,
                                       cell_ci, check_choice, check_frame, coverage,
                                       drop_orphans, mean_i, model_alphas, pvalue_families)
from prunescope.analysis.orders import (DATASET_PAIRS, dataset_arch_choices, dataset_archs,
                                        family_orders, level_order)
from prunescope.analysis.mitigation import (MITIGATION_VALUES, Mitigation, ce_only,
                                            constraint_holds, has_objectives, mitigation)
from prunescope.analysis.shift import (Shift, agreement_ci, alpha_by_distribution,
                                       analyse_shift, distributions, potential_summary)
from prunescope.analysis.underrepresented import (UNDER_CELL, imbalance_tests, longtail_slopes,
                                                  pie_accuracy, pie_share)

__all__ = ["AGREEMENT_KEYS", "CI_LEVEL", "COLLAPSE_FACTOR", "DATASET_PAIRS", "DONE_STATUSES",
           "MITIGATION_VALUES", "POTENTIAL_KEYS", "UNDER_CELL", "VALUE_COLUMNS", "Analysis",
           "Mitigation", "Shift", "agreement_ci", "ce_only", "constraint_holds", "has_objectives",
           "mitigation",
           "alpha_by_distribution", "analyse", "analyse_shift", "cell_ci", "check_choice",
           "check_frame", "coverage", "dataset_arch_choices", "dataset_archs", "distributions",
           "drop_orphans", "family_orders", "imbalance_tests", "level_order", "longtail_slopes",
           "mean_i", "model_alphas", "pie_accuracy", "pie_share", "potential_summary",
           "pvalue_families"]
