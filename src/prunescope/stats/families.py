"""The test families of SPEC 5, one function each, from a per-model alpha frame.

Input: one row per pruned model, e.g. :func:`prunescope.metrics.model_alpha` output, with the
cell keys (dataset, arch, method, ratio, distribution), ``model`` and the value (``alpha``).
Rows with a non-finite value are left out (they are counted by ``n_nan`` in
:func:`prunescope.stats.mean_ci`).

Every function returns a :class:`FamilyResult`:

* ``long`` -- one row per comparison: ``family`` (its name), ``kind``, the fixed keys, the table
  column key (``ratio``, or the level factor for :func:`ratio_tests`), ``comparison`` (``"a vs
  b"``), ``factor``, ``a``, ``b``, then ``test, alternative, n1, n2, mean1, mean2, mean_diff, t,
  df, p_raw`` (H_a stated for mean1 - mean2, where side 1 is ``a``), ``correction``,
  ``family_size``, ``p_corrected`` and ``note`` (why a comparison has no p-value);
* ``table`` -- corrected p-values shaped like the table they feed: rows = fixed keys +
  ``comparison`` (in test order), columns = ratios (or levels). All tables of one function share
  this frame, so its columns are the union over them; one table is
  ``result.table.loc[fixed_values].dropna(axis=1, how="all")``.

Family size = the number of comparisons actually made in the family (finite p-values);
comparisons whose levels are absent are not listed, those with too few models (paired: < 2
pairs; independent: < 2 models on a side) are listed with a note and do not count.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import combinations

import numpy as np
import pandas as pd

from prunescope.stats.ci import CELL_KEYS
from prunescope.stats.tests import (
    TEST_COLUMNS,
    Correction,
    correct_within,
    independent_from_moments,
    paired_from_moments,
)

#: Architecture sizes in increasing order (SPEC 5 family 2).
ARCH_ORDER: tuple[str, ...] = ("resnet20", "resnet32", "resnet44", "resnet56", "resnet110")
#: Dataset pairs (simpler, harder) of SPEC 5 family 3.
DATASET_PAIRS: tuple[tuple[str, str], ...] = (
    ("mnist", "cifar10"), ("fashion-mnist", "cifar10"), ("cifar10", "cifar100"),
)
#: Architecture used for each dataset when datasets are compared (SPEC 4: the MNIST-like sets
#: have LeNet-5 only; ResNet-56 is the default architecture when the dataset varies).
DATASET_ARCHS: dict[str, str] = {
    "mnist": "lenet5", "fashion-mnist": "lenet5", "cifar10": "resnet56", "cifar100": "resnet56",
}
#: Canonical order of pruning methods in method pairs.
METHOD_ORDER: tuple[str, ...] = ("mp", "gp", "up", "rp")


@dataclass(frozen=True)
class FamilyResult:
    """``table``: corrected p per (fixed keys, comparison) x column; ``long``: all statistics."""

    table: pd.DataFrame
    long: pd.DataFrame


def _fmt(v: object) -> str:
    if isinstance(v, float | np.floating) and float(v).is_integer():
        return str(int(v))
    return str(v)


def _consecutive_pairs(enc: pd.DataFrame, keys: list[str], factor: str, rank: np.ndarray) -> pd.DataFrame:
    """Pairs of consecutive present values of ``factor`` within each ``keys`` group, in the order
    of ``rank`` (indexed by the factor's code; NaN = not compared)."""
    present = enc[[*keys, factor]].drop_duplicates()
    present = present.assign(_rank=rank[present[factor].to_numpy()]).dropna(subset=["_rank"])
    present = present.sort_values([*keys, "_rank"], kind="stable")
    present["b"] = present.groupby(keys, sort=False)[factor].shift(-1)
    pairs = present.dropna(subset=["b"]).rename(columns={factor: "a"})
    pairs["b"] = pairs["b"].astype(np.int64)
    return pairs[[*keys, "a", "b", "_rank"]]


def _listed_pairs(enc: pd.DataFrame, keys: list[str], factor: str,
                  pairs: Sequence[tuple[int, int]]) -> pd.DataFrame:
    """The listed (a, b) code pairs where both values are present within a ``keys`` group."""
    present = enc[[*keys, factor]].drop_duplicates()
    parts = [pd.DataFrame(columns=[*keys, "a", "b", "_rank"], dtype=np.int64)]
    for rank, (a, b) in enumerate(pairs):
        left = present.loc[present[factor] == a, keys]
        right = present.loc[present[factor] == b, keys]
        parts.append(left.merge(right, on=keys, how="inner").assign(a=a, b=b, _rank=rank))
    return pd.concat(parts, ignore_index=True)


def _side(alphas: pd.DataFrame, factor: str, value: str, side: str) -> pd.DataFrame:
    return alphas.rename(columns={factor: side, value: f"v_{side}"})


def _run(alphas: pd.DataFrame, pairs: pd.DataFrame, keys: list[str], factor: str, value: str,
         paired: bool, alternative: str, pair_on: Sequence[str], equal_var: bool) -> pd.DataFrame:
    """Statistics per row of ``pairs`` (columns keys, a, b, _rank)."""
    gk = [*keys, "a", "b"]
    data = alphas.loc[np.isfinite(alphas[value].to_numpy(np.float64))]
    if paired:
        cols = [*keys, factor, *pair_on, value]
        s1 = pairs[gk].merge(_side(data[cols], factor, value, "a"), on=[*keys, "a"])
        s2 = pairs[gk].merge(_side(data[cols], factor, value, "b"), on=[*keys, "b"])
        m = s1.merge(s2, on=[*gk, *pair_on], how="inner")
        m["d"] = m["v_a"] - m["v_b"]
        agg = m.groupby(gk, sort=False, dropna=False).agg(
            n1=("d", "size"), mean1=("v_a", "mean"), mean2=("v_b", "mean"),
            mean_diff=("d", "mean"), var_d=("d", "var")).reset_index()
        res = pairs.merge(agg, on=gk, how="left")
        res["n1"] = res["n1"].fillna(0).astype(np.int64)
        res["n2"] = res["n1"]
        res["t"], res["df"], res["p_raw"] = paired_from_moments(
            res["n1"].to_numpy(), res["mean_diff"].to_numpy(np.float64),
            res["var_d"].to_numpy(np.float64), alternative)
        res["test"] = "paired"
        res["note"] = np.where(res["n1"] < 2, "fewer than 2 models paired by " + "+".join(pair_on), "")
    else:
        st = data.groupby([*keys, factor], sort=False, dropna=False)[value].agg(["size", "mean", "var"]).reset_index()
        res = pairs.merge(st.rename(columns={factor: "a", "size": "n1", "mean": "mean1", "var": "var1"}),
                          on=[*keys, "a"], how="left")
        res = res.merge(st.rename(columns={factor: "b", "size": "n2", "mean": "mean2", "var": "var2"}),
                        on=[*keys, "b"], how="left")
        res["n1"] = res["n1"].fillna(0).astype(np.int64)
        res["n2"] = res["n2"].fillna(0).astype(np.int64)
        res["mean_diff"] = res["mean1"] - res["mean2"]
        res["t"], res["df"], res["p_raw"] = independent_from_moments(
            res["n1"].to_numpy(), res["mean1"].to_numpy(np.float64), res["var1"].to_numpy(np.float64),
            res["n2"].to_numpy(), res["mean2"].to_numpy(np.float64), res["var2"].to_numpy(np.float64),
            alternative, equal_var)
        res["test"] = "independent" if equal_var else "welch"
        res["note"] = np.where((res["n1"] < 2) | (res["n2"] < 2), "fewer than 2 models on a side", "")
    res["alternative"] = alternative
    return res


def _family(alphas: pd.DataFrame, *, kind: str, factor: str, column: str, fixed: list[str],
            family_by: Sequence[str] | None, pairs_of: str, order: Sequence[object] | None = None,
            pairs: Sequence[tuple[object, object]] | None = None, value: str, paired: bool,
            alternative: str, pair_on: Sequence[str], equal_var: bool, correction: Correction,
            extra: pd.DataFrame | None = None) -> FamilyResult:
    keys = [*fixed, column]
    missing = [c for c in (*keys, factor, value, *(pair_on if paired else ())) if c not in alphas.columns]
    if missing:
        raise ValueError(f"alpha frame lacks column(s) {missing}; build it with prunescope.metrics.model_alpha")
    # integer-code every key once: merges and groupbys on int64 are far cheaper than on strings
    cols = list(dict.fromkeys([*keys, factor, *(pair_on if paired else ())]))
    enc = pd.DataFrame({value: alphas[value].to_numpy(np.float64)})
    uniques = {}
    for c in cols:
        enc[c], uniques[c] = pd.factorize(alphas[c], sort=True, use_na_sentinel=False)
    levels = uniques[factor]
    if pairs_of == "consecutive":
        if order is None:
            rank = np.arange(len(levels), dtype=np.float64)
        else:
            pos = {v: i for i, v in enumerate(order)}
            rank = np.array([pos.get(v, np.nan) for v in levels], dtype=np.float64)
        pair_frame = _consecutive_pairs(enc, keys, factor, rank)
    else:
        code = {v: i for i, v in enumerate(levels)}
        coded = [(code[a], code[b]) for a, b in (pairs or ()) if a in code and b in code]
        pair_frame = _listed_pairs(enc, keys, factor, coded)
    res = _run(enc, pair_frame, keys, factor, value, paired, alternative, pair_on, equal_var)
    for c in keys:
        res[c] = uniques[c].take(res[c].to_numpy()).array
    res["a"] = levels.take(res["a"].to_numpy()).array
    res["b"] = levels.take(res["b"].to_numpy()).array
    fam = list(fixed if family_by is None else family_by)
    name = pd.Series(kind, index=res.index)
    for k in fam:
        name = name + "|" + k + "=" + res[k].map(_fmt)
    res["family"] = name
    res["kind"] = kind
    res["factor"] = factor
    res["comparison"] = res["a"].map(_fmt) + " vs " + res["b"].map(_fmt)
    if extra is not None:
        res = res.merge(extra, on=["a", "b"], how="left")
    res = res.sort_values([*fixed, "_rank", column], kind="stable").reset_index(drop=True)
    res = correct_within(res, "family", "p_raw", correction)
    extra_cols = [] if extra is None else [c for c in extra.columns if c not in ("a", "b")]
    long = res[["family", "kind", *fixed, column, "comparison", "factor", "a", "b", *extra_cols,
                *TEST_COLUMNS, "correction", "family_size", "p_corrected", "note"]]
    index = [*fixed, "comparison"]
    table = long.set_index([*index, column])["p_corrected"].unstack(column)
    if len(long):
        table = table.reindex(pd.MultiIndex.from_frame(long[index].drop_duplicates()))
    table.columns.name = column
    return FamilyResult(table=table, long=long)


def _fixed(cell: Sequence[str], *drop: str) -> list[str]:
    return [k for k in cell if k not in drop]


def ratio_tests(alphas: pd.DataFrame, level: str = "arch", *, value: str = "alpha",
                cell: Sequence[str] = CELL_KEYS, family_by: Sequence[str] | None = None,
                correction: Correction = "bonferroni", pair_on: Sequence[str] = ("model",)) -> FamilyResult:
    """SPEC 5 family 1: consecutive ratios within each level of ``level`` (arch, dataset or method).

    One-sided paired t-test (paired by ``pair_on``, default the model), H_a:
    E[alpha_{t_i}] < E[alpha_{t_{i+1}}] (``a`` = t_i, ``b`` = t_{i+1}, alternative ``"less"``).
    Consecutive = adjacent among the ratios present for that level. Table: rows = ratio pairs
    (per fixed keys = ``cell`` minus ratio and ``level``), columns = levels. Family (default):
    one table, i.e. all ratio pairs x levels sharing the fixed keys; pass
    ``family_by=[*fixed, level]`` to correct within each level separately.
    """
    return _family(alphas, kind="ratios", factor="ratio", column=level, fixed=_fixed(cell, "ratio", level),
                   family_by=family_by, pairs_of="consecutive", value=value, paired=True,
                   alternative="less", pair_on=pair_on, equal_var=True, correction=correction)


def arch_tests(alphas: pd.DataFrame, order: Sequence[str] = ARCH_ORDER, *, value: str = "alpha",
               cell: Sequence[str] = CELL_KEYS, family_by: Sequence[str] | None = None,
               correction: Correction = "bonferroni", equal_var: bool = True) -> FamilyResult:
    """SPEC 5 family 2: consecutive architecture sizes (``order``) at each fixed ratio.

    One-sided independent t-test (Student's; Welch's with ``equal_var=False``), H_a: the smaller
    architecture (``a``) has the larger E[alpha] (alternative ``"greater"``). Architectures absent
    at a ratio are skipped (the next present size is compared). Table: rows = size pairs (per
    dataset, method, distribution), columns = ratios; family (default) = that table.
    """
    return _family(alphas, kind="archs", factor="arch", column="ratio", fixed=_fixed(cell, "arch", "ratio"),
                   family_by=family_by, pairs_of="consecutive", order=order, value=value, paired=False,
                   alternative="greater", pair_on=(), equal_var=equal_var, correction=correction)


def dataset_tests(alphas: pd.DataFrame, pairs: Sequence[tuple[str, str]] = DATASET_PAIRS,
                  archs: dict[str, str] | None = DATASET_ARCHS, *, value: str = "alpha",
                  cell: Sequence[str] = CELL_KEYS, family_by: Sequence[str] | None = None,
                  correction: Correction = "bonferroni", equal_var: bool = True) -> FamilyResult:
    """SPEC 5 family 3: dataset pairs (simpler ``a``, harder ``b``) at each fixed ratio.

    One-sided independent t-test, H_a: the simpler dataset has the smaller E[alpha]
    (alternative ``"less"``). ``archs`` maps each dataset to the architecture used for it
    (default :data:`DATASET_ARCHS`; rows of other architectures are ignored and the long form
    gets ``arch_a``/``arch_b``); ``archs=None`` compares datasets only within the same
    architecture. Table: rows = dataset pairs (per method, distribution[, arch]), columns = ratios.
    """
    if archs is None:
        return _family(alphas, kind="datasets", factor="dataset", column="ratio",
                       fixed=_fixed(cell, "dataset", "ratio"), family_by=family_by, pairs_of="listed",
                       pairs=pairs, value=value, paired=False, alternative="less", pair_on=(),
                       equal_var=equal_var, correction=correction)
    chosen = alphas.loc[alphas["arch"].to_numpy() == alphas["dataset"].map(archs).to_numpy()]
    extra = pd.DataFrame({"a": [a for a, _ in pairs], "b": [b for _, b in pairs],
                          "arch_a": [archs.get(a) for a, _ in pairs], "arch_b": [archs.get(b) for _, b in pairs]})
    return _family(chosen.drop(columns="arch"), kind="datasets", factor="dataset", column="ratio",
                   fixed=_fixed(cell, "dataset", "ratio", "arch"), family_by=family_by, pairs_of="listed",
                   pairs=pairs, value=value, paired=False, alternative="less", pair_on=(),
                   equal_var=equal_var, correction=correction, extra=extra)


def method_tests(alphas: pd.DataFrame, pairs: Sequence[tuple[str, str]] | None = None, *,
                 value: str = "alpha", cell: Sequence[str] = CELL_KEYS,
                 family_by: Sequence[str] | None = None, correction: Correction = "bonferroni",
                 pair_on: Sequence[str] = ("model",)) -> FamilyResult:
    """SPEC 5 family 4: method pairs at each fixed ratio, two-sided paired t-test (by model: the
    pruned models of one pair share their dense parent).

    ``pairs=None``: every unordered pair of the methods present (``"dense"`` excluded), ordered
    by :data:`METHOD_ORDER` then name. Table: rows = method pairs (per dataset, arch,
    distribution), columns = ratios; family (default) = that table.
    """
    if pairs is None:
        present = [m for m in pd.unique(alphas["method"]) if m != "dense"]
        rank = {m: (METHOD_ORDER.index(m) if m in METHOD_ORDER else len(METHOD_ORDER), str(m)) for m in present}
        pairs = list(combinations(sorted(present, key=rank.__getitem__), 2))
    return _family(alphas, kind="methods", factor="method", column="ratio", fixed=_fixed(cell, "method", "ratio"),
                   family_by=family_by, pairs_of="listed", pairs=pairs, value=value, paired=True,
                   alternative="two-sided", pair_on=pair_on, equal_var=True, correction=correction)


def mp_vs_up_tests(alphas: pd.DataFrame, a: str = "mp", b: str = "up", *, value: str = "alpha",
                   cell: Sequence[str] = CELL_KEYS, family_by: Sequence[str] | None = None,
                   correction: Correction = "bonferroni", pair_on: Sequence[str] = ("model",)) -> FamilyResult:
    """SPEC 5 family 4, across architectures: ``a`` vs ``b`` (MP vs UP) at every (arch, ratio),
    two-sided paired t-test by model.

    Table: rows = architectures (per dataset, distribution), columns = ratios. Family (default) =
    every (arch, ratio) comparison of one (dataset, distribution): 5 archs x 5 ratios = 25 in
    the paper's grid (fewer if cells are missing).
    """
    fixed = _fixed(cell, "method", "ratio")
    fam = [k for k in fixed if k != "arch"] if family_by is None else list(family_by)
    return _family(alphas, kind="mp_vs_up", factor="method", column="ratio", fixed=fixed,
                   family_by=fam, pairs_of="listed", pairs=[(a, b)], value=value, paired=True,
                   alternative="two-sided", pair_on=pair_on, equal_var=True, correction=correction)


def all_families(alphas: pd.DataFrame, *, value: str = "alpha", cell: Sequence[str] = CELL_KEYS,
                 correction: Correction = "bonferroni") -> dict[str, FamilyResult]:
    """Every SPEC 5 family with default settings: keys ``ratios_by_arch``, ``ratios_by_dataset``,
    ``ratios_by_method``, ``archs``, ``datasets``, ``methods``, ``mp_vs_up``."""
    kw = {"value": value, "cell": cell, "correction": correction}
    return {
        "ratios_by_arch": ratio_tests(alphas, "arch", **kw),
        "ratios_by_dataset": ratio_tests(alphas, "dataset", **kw),
        "ratios_by_method": ratio_tests(alphas, "method", **kw),
        "archs": arch_tests(alphas, **kw),
        "datasets": dataset_tests(alphas, **kw),
        "methods": method_tests(alphas, **kw),
        "mp_vs_up": mp_vs_up_tests(alphas, **kw),
    }
