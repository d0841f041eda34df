"""How the report names the p-value tables of SPEC 5: each family's title and test, what one
correction family spans under each ``families`` choice, the captions, and the displayed table
(``undefined`` where no test could run)."""
from __future__ import annotations

import pandas as pd

from prunescope import stats

__all__ = ["CORRECTION_NAMES", "FAMILY_SCOPES", "FAMILY_SIZES", "FAMILY_TITLES", "UNDEFINED_P",
           "pvalue_caption", "pvalue_display"]

#: Names of the multiple-testing corrections (``stats.CORRECTIONS``) in captions.
CORRECTION_NAMES = {"bonferroni": "Bonferroni-corrected", "holm": "Holm-corrected (step-down)"}
#: Title and test of each p-value table (SPEC 5).
FAMILY_TITLES = {
    "ratios_by_arch": ("Consecutive ratios within each architecture",
                       "One-sided paired t-test per model, H_a: E[α] at the smaller ratio < E[α] at "
                       "the next."),
    "ratios_by_dataset": ("Consecutive ratios within each dataset",
                          "One-sided paired t-test, H_a: E[α_t_i] < E[α_t_i+1]; each dataset on "
                          "its own architecture (MNIST, Fashion-MNIST: LeNet-5; CIFAR-10, "
                          "CIFAR-100: ResNet-56)."),
    "ratios_by_method": ("Consecutive ratios within each method",
                         "One-sided paired t-test, H_a: E[α_t_i] < E[α_t_i+1]."),
    "archs": ("Consecutive architecture sizes at fixed ratio",
              "One-sided independent t-test, H_a: the smaller architecture has the larger E[α]."),
    "datasets": ("Dataset pairs at fixed ratio",
                 "One-sided independent t-test, H_a: the simpler dataset has the smaller E[α] "
                 "(MNIST, Fashion-MNIST on LeNet-5; CIFAR-10, CIFAR-100 on ResNet-56)."),
    "methods": ("Method pairs at fixed ratio",
                "Two-sided paired t-test (pairs share the dense model); an architecture with "
                "only MP and UP is in the MP vs UP table alone."),
    "mp_vs_up": ("MP vs UP for every architecture", "Two-sided paired t-test."),
}
#: The family each p-value table's correction runs over, per ``stats.FAMILIES`` rule.
FAMILY_SCOPES = {
    "column": {
        "ratios_by_arch": "one family per column: the consecutive-ratio pairs of one "
                          "architecture (4 in the paper's grid), per dataset, method and "
                          "distribution",
        "ratios_by_dataset": "one family per column: the consecutive-ratio pairs of one dataset "
                             "(4 in the paper's grid), per method and distribution",
        "ratios_by_method": "one family per column: the consecutive-ratio pairs of one method "
                            "(4 in the paper's grid), per dataset, architecture and distribution",
        "archs": "one family per column: the size pairs at one ratio (4 in the paper's grid), "
                 "per dataset, method and distribution",
        "datasets": "one family per column: the dataset pairs at one ratio (3 in the paper's "
                    "grid), per method and distribution",
        "methods": "one family per column: the method pairs at one ratio (6 in the paper's "
                   "grid), per dataset, architecture and distribution",
        "mp_vs_up": "one family per dataset and distribution over all architectures and ratios "
                    "(25 comparisons in the paper's grid)",
    },
    "table": {
        "ratios_by_arch": "one family per table: a dataset, method and distribution over all "
                          "its architectures and ratio pairs",
        "ratios_by_dataset": "one family per table: a method and distribution over all datasets "
                             "and ratio pairs",
        "ratios_by_method": "one family per table: a dataset, architecture and distribution over "
                            "all its methods and ratio pairs",
        "archs": "one family per table: a dataset, method and distribution over all size pairs "
                 "and ratios",
        "datasets": "one family per table: a method and distribution over all dataset pairs and "
                    "ratios",
        "methods": "one family per table: a dataset, architecture and distribution over all its "
                   "method pairs and ratios",
        "mp_vs_up": "one family per dataset and distribution over all architectures and ratios "
                    "(25 comparisons in the paper's grid)",
    },
}
#: How each ``stats.FAMILIES`` rule counts a family's size, in captions.
FAMILY_SIZES = {
    "column": "the family size counts every row of the column, an undefined one included, as "
              "the paper does",
    "table": "the family size counts the comparisons with a p-value",
}
def pvalue_caption(name: str, correction: str, families: str) -> tuple[str, str]:
    """Title and caption of the p-value table of family ``name`` (a key of
    ``stats.all_families``) under ``correction`` and the ``families`` rule."""
    title, test = FAMILY_TITLES.get(name, (name, ""))
    scope = FAMILY_SCOPES[families].get(name, "")
    return title, (f"{test} {CORRECTION_NAMES[correction]} p within {scope}; "
                   f"{FAMILY_SIZES[families]}.").strip()


#: Text of a p-value table cell whose comparison was made but has no p-value.
UNDEFINED_P = "undefined"


def pvalue_display(fam: stats.FamilyResult) -> pd.DataFrame:
    """``fam.table`` with the cells of comparisons that were made but have no p-value (too few
    models, zero variance: see the ``note`` of ``fam.long``) reading :data:`UNDEFINED_P`
    instead of an empty cell (which means: not compared)."""
    table = fam.table
    keys = [*table.index.names, table.columns.name]
    undefined = (fam.long.assign(_u=fam.long["p_corrected"].isna()).set_index(keys)["_u"]
                 .unstack(table.columns.name)
                 .reindex(index=table.index, columns=table.columns))
    mask = undefined.fillna(False).astype(bool)
    if not mask.to_numpy().any():
        return table
    return table.astype(object).mask(mask, UNDEFINED_P)
