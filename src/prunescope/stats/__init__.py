"""prunescope.stats: CIs, t-tests, multiple-testing corrections and the SPEC 5 test families.
Pure NumPy/SciPy/pandas/statsmodels; never imports torch, and knows no dataset, architecture
or method: the families take the names and orders they need as arguments
(:class:`FamilyOrders`, built from the catalog by :func:`prunescope.analysis.family_orders`).
See docs/metrics.md."""
from prunescope.stats.ci import (CELL_KEYS, CI_COLUMNS, CI_METHODS, ci_label, mean_ci,
                                 proportion_mean_ci, t_interval)
from prunescope.stats.families import (
    FAMILIES,
    FamilyOrders,
    FamilyResult,
    all_families,
    arch_tests,
    dataset_archs,
    dataset_tests,
    method_tests,
    mp_vs_up_tests,
    ratio_tests,
)
from prunescope.stats.tests import (
    ALTERNATIVES,
    CORRECTIONS,
    TEST_COLUMNS,
    correct,
    correct_within,
    ttest,
)

__all__ = [
    "ALTERNATIVES", "CELL_KEYS", "CI_COLUMNS", "CI_METHODS", "CORRECTIONS", "FAMILIES",
    "TEST_COLUMNS", "FamilyOrders", "FamilyResult",
    "all_families", "arch_tests", "ci_label", "correct", "correct_within", "dataset_archs",
    "dataset_tests", "mean_ci", "method_tests", "mp_vs_up_tests", "proportion_mean_ci",
    "ratio_tests", "t_interval", "ttest",
]
