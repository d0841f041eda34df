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

Families (``families=``, :data:`FAMILIES`):

* ``"column"`` (default, the paper's rule: "each p-value ... multiplied by the number of rows in
  its column of the table"): a family is one column of the table -- the consecutive ratio pairs
  of one architecture, dataset or method (4 in the paper's grid), the size pairs at one ratio
  (4), the dataset pairs at one ratio (3), the method pairs at one ratio (6) -- except MP vs UP,
  corrected over all its (architecture, ratio) comparisons at once (25). The family size counts
  every listed comparison of the column, one without a p-value included.
* ``"table"``: a family is a whole table (all rows and columns sharing the fixed keys: 20
  consecutive-ratio pairs, 20 size pairs, 15 dataset pairs, 30 method pairs in the paper's
  grid) and its size counts only the comparisons with a p-value (prunescope's default before
  the paper's rule was adopted).

``family_by`` overrides the grouping of either (the counting rule stays that of ``families``).

Statistics: the values of the two sides of every comparison are merged onto it (paired tests
on ``pair_on``, the model), and t, df and p are :func:`scipy.stats.ttest_rel` /
:func:`scipy.stats.ttest_ind`'s, computed along axis 1 of one comparisons x models matrix per
number of models. Comparisons whose levels are absent are not listed; those with too few models (paired: < 2
pairs; independent: < 2 models on a side) are listed with p = NaN and a note. A paired
comparison whose differences are all equal (an independent one whose two sides are each
constant) has zero variance: all differences 0 (equal means) gives t = 0/0 and p = NaN, as
scipy does, noted ``"zero variance ...: no test"``; a constant nonzero difference gives
t = +/-inf and p = 0 or 1 (scipy's values), with a note saying so.
"""
from __future__ import annotations

import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from itertools import combinations
from typing import Literal

import numpy as np
import pandas as pd
from scipy import stats as sps

from prunescope.choices import FAMILIES  # how p-values group into correction families
from prunescope.stats.ci import CELL_KEYS
from prunescope.stats.tests import TEST_COLUMNS, Correction, correct_within

Families = Literal["column", "table"]
#: ``{factor: its known levels in table order}`` (rows and columns list these first, in this
#: order, then any other level sorted)
Levels = Mapping[str, Sequence[object]]


@dataclass(frozen=True)
class FamilyOrders:
    """The names and orders SPEC 5's families need, given by the caller: this module knows no
    dataset, architecture or method (:func:`prunescope.analysis.family_orders` builds them from
    the catalog and the dataset registry when asked, so a record added later counts).

    Attributes:
        levels: per factor (``dataset``, ``arch``, ``method``), its known levels in the order
            of table rows and columns (the report's figures use the same).
        methods: canonical order of methods in method pairs (side ``a`` first).
        arch_sizes: architectures by increasing size (family 2).
        dataset_pairs: ``(simpler, harder)`` dataset pairs (family 3).
        dataset_archs: per dataset, the architectures it is taken on when datasets are compared,
            in order of preference (:func:`dataset_archs`).
        mp_vs_up: the method pair with a family of its own across architectures (family 4,
            :func:`mp_vs_up_tests`); :func:`method_tests` leaves cells of it alone to it.
        matched: methods that keep another method's count of weights (matched achieved ratios,
            e.g. ``mp-at-up``): a cell of ``mp_vs_up`` and these alone leaves its ``mp_vs_up``
            pair to :func:`mp_vs_up_tests` and tests only the matched pairs.
    """

    levels: Mapping[str, tuple[object, ...]]
    methods: tuple[str, ...]
    arch_sizes: tuple[str, ...]
    dataset_pairs: tuple[tuple[str, str], ...]
    dataset_archs: Mapping[str, tuple[str, ...]]
    mp_vs_up: tuple[str, str]
    matched: tuple[str, ...] = ()


def dataset_archs(frame: pd.DataFrame, choices: Mapping[str, Sequence[str]]) -> dict[str, str]:
    """The architecture each dataset is taken on when datasets are compared in ``frame`` (rows
    with ``dataset`` and ``arch`` columns): its first architecture in ``choices`` (``{dataset:
    architectures in order of preference}``, :attr:`FamilyOrders.dataset_archs`) that has rows
    there (the preferred one when none has), so a study of a second choice alone still compares
    its datasets. ``{dataset: arch}`` for every dataset of ``choices``."""
    present = set(map(tuple, frame[["dataset", "arch"]].drop_duplicates().to_numpy()))
    return {d: next((a for a in options if (d, a) in present), options[0])
            for d, options in choices.items()}


@dataclass(frozen=True)
class FamilyResult:
    """``table``: corrected p per (fixed keys, comparison) x column; ``long``: all statistics."""

    table: pd.DataFrame
    long: pd.DataFrame


def _factorize(values: pd.Series, column: str, levels: Levels | None = None
               ) -> tuple[np.ndarray, pd.Index]:
    """Integer codes and levels of ``values``: sorted, except the factors of ``levels``, whose
    known levels come first in that order (resnet20 before resnet110), so sorting by code gives
    the tables' row and column order."""
    codes, uniques = pd.factorize(values, sort=True, use_na_sentinel=False)
    known = (levels or {}).get(column)
    if not known or len(uniques) < 2:
        return codes, uniques
    rank = {v: i for i, v in enumerate(known)}
    perm = np.array(sorted(range(len(uniques)), key=lambda i: (uniques[i] not in rank,
                                                              rank.get(uniques[i], 0), i)))
    new_code = np.empty(len(perm), dtype=np.int64)
    new_code[perm] = np.arange(len(perm))
    return new_code[codes], uniques.take(perm)


def _fmt(v: object) -> str:
    if isinstance(v, float | np.floating) and float(v).is_integer():
        return str(int(v))
    return str(v)


def _pairs(enc: pd.DataFrame, keys: list[str], factor: str, rank: np.ndarray | None = None,
           listed: Sequence[tuple[int, int]] = ()) -> pd.DataFrame:
    """The comparisons of a family: columns ``keys``, ``a``, ``b`` (factor codes) and ``_rank``
    (the table row order). With ``rank`` (indexed by the factor's code; NaN = not compared):
    consecutive present levels within each ``keys`` group; otherwise the ``listed`` (a, b)
    pairs where both levels are present in a ``keys`` group. A level counts as present with
    any row, even one whose value is NaN (its comparison is listed without a p-value)."""
    present = enc[[*keys, factor]].drop_duplicates()
    if rank is not None:
        present = present.assign(_rank=rank[present[factor].to_numpy()]).dropna(subset=["_rank"])
        present = present.sort_values([*keys, "_rank"], kind="stable")
        nxt = present.groupby(keys, sort=False)[factor].shift(-1)
        out = present.assign(b=nxt).dropna(subset=["b"]).rename(columns={factor: "a"})
        return out.astype({"b": np.int64})[[*keys, "a", "b", "_rank"]].reset_index(drop=True)
    by_level = {code: sub[keys] for code, sub in present.groupby(factor, sort=False)}
    parts = [by_level[a].merge(by_level[b], on=keys).assign(a=a, b=b, _rank=float(i))
             for i, (a, b) in enumerate(listed) if a in by_level and b in by_level]
    if not parts:
        return pd.DataFrame({**{k: pd.Series(dtype=np.int64) for k in (*keys, "a", "b")},
                             "_rank": pd.Series(dtype=np.float64)})
    return pd.concat(parts, ignore_index=True)


def _sizes(*counts: np.ndarray) -> Iterator[tuple[np.ndarray, tuple[int, ...]]]:
    """Comparisons grouped by their numbers of observations (one count array per side, (K,)):
    for each distinct combination with every count >= 2, the comparisons' indices and the
    counts."""
    ok = np.logical_and.reduce([c >= 2 for c in counts])
    combos = np.stack([c[ok] for c in counts], axis=1)
    for combo in np.unique(combos, axis=0):
        idx = np.flatnonzero(ok & np.logical_and.reduce([c == m for c, m in zip(counts, combo)]))
        yield idx, tuple(int(m) for m in combo)


def _matrix(pair: np.ndarray, values: np.ndarray, idx: np.ndarray, n: int) -> np.ndarray:
    """The values of comparisons ``idx`` (each with ``n`` observations) as an (len(idx), n)
    matrix; ``pair`` gives each row's comparison, rows sorted by it."""
    return values[np.isin(pair, idx)].reshape(idx.size, n)


def _tests(enc: pd.DataFrame, pairs: pd.DataFrame, keys: list[str], factor: str, value: str,
           paired: bool, alternative: str, pair_on: Sequence[str], equal_var: bool) -> pd.DataFrame:
    """``pairs`` with the statistics of each comparison: the values of side ``a`` and side ``b``
    are merged onto it (paired: on ``pair_on``, the model), and t, df and p come from
    :func:`scipy.stats.ttest_rel` / :func:`scipy.stats.ttest_ind`, one call per number of
    observations (axis 1 of a comparisons x models matrix)."""
    data = enc.loc[np.isfinite(enc[value].to_numpy(np.float64))]
    k = len(pairs)
    res = pairs.copy()
    comp = pairs.assign(_pair=np.arange(k))
    side_a = data.rename(columns={factor: "a", value: "_va"})
    side_b = data.rename(columns={factor: "b", value: "_vb"})
    t, df, p = np.full(k, np.nan), np.full(k, np.nan), np.full(k, np.nan)
    with warnings.catch_warnings(), np.errstate(divide="ignore", invalid="ignore"):
        # zero variance: scipy warns of catastrophic cancellation and returns t = nan or inf
        warnings.simplefilter("ignore", RuntimeWarning)
        if paired:
            if data.duplicated([*keys, factor, *pair_on]).any():
                raise ValueError(f"two rows share a cell and {list(pair_on)}: paired tests need one "
                                 "value per model in each cell; add the distinguishing key to "
                                 "pair_on or the cell keys")
            rows = (comp[[*keys, "a", "b", "_pair"]]
                    .merge(side_a[[*keys, "a", *pair_on, "_va"]], on=[*keys, "a"])
                    .merge(side_b[[*keys, "b", *pair_on, "_vb"]], on=[*keys, "b", *pair_on])
                    .sort_values(["_pair", *pair_on], kind="stable"))
            pair = rows["_pair"].to_numpy()
            va, vb = rows["_va"].to_numpy(np.float64), rows["_vb"].to_numpy(np.float64)
            n = np.bincount(pair, minlength=k)
            for idx, (m,) in _sizes(n):
                r = sps.ttest_rel(_matrix(pair, va, idx, m), _matrix(pair, vb, idx, m), axis=1,
                                  alternative=alternative)
                t[idx], df[idx], p[idx] = r.statistic, r.df, r.pvalue
            with np.errstate(invalid="ignore"):
                res["mean1"] = np.bincount(pair, weights=va, minlength=k) / n
                res["mean2"] = np.bincount(pair, weights=vb, minlength=k) / n
                res["mean_diff"] = np.bincount(pair, weights=va - vb, minlength=k) / n
            res["n1"] = res["n2"] = n.astype(np.int64)
            res["test"] = "paired"
            few = n < 2
            notes = ["fewer than 2 models paired by " + "+".join(pair_on),
                     "zero variance of differences (all differences 0): no test",
                     "zero variance of differences (constant nonzero difference): t infinite"]
        else:
            sides = []
            for side, frame, v in (("a", side_a, "_va"), ("b", side_b, "_vb")):
                rows = (comp[[*keys, side, "_pair"]].merge(frame[[*keys, side, v]], on=[*keys, side])
                        .sort_values("_pair", kind="stable"))
                pair = rows["_pair"].to_numpy()
                vals = rows[v].to_numpy(np.float64)
                n = np.bincount(pair, minlength=k)
                with np.errstate(invalid="ignore"):
                    mean = np.bincount(pair, weights=vals, minlength=k) / n
                sides.append((pair, vals, n, mean))
            (pa, xa, n1, m1), (pb, xb, n2, m2) = sides
            for idx, (m1_, m2_) in _sizes(n1, n2):
                r = sps.ttest_ind(_matrix(pa, xa, idx, m1_), _matrix(pb, xb, idx, m2_), axis=1,
                                  equal_var=equal_var, alternative=alternative)
                t[idx], df[idx], p[idx] = r.statistic, r.df, r.pvalue
            res["n1"], res["n2"] = n1.astype(np.int64), n2.astype(np.int64)
            res["mean1"], res["mean2"], res["mean_diff"] = m1, m2, m1 - m2
            res["test"] = "independent" if equal_var else "welch"
            few = (n1 < 2) | (n2 < 2)
            notes = ["fewer than 2 models on a side",
                     "zero variance on both sides, equal means: no test",
                     "zero variance on both sides (different means): t infinite"]
    res["t"], res["df"], res["p_raw"] = t, df, p
    res["note"] = np.select([few, np.isnan(t), np.isinf(t)], notes, "")
    res["alternative"] = alternative
    return res


def _family(alphas: pd.DataFrame, *, kind: str, factor: str, column: str, fixed: list[str],
            family_by: Sequence[str] | None, pairs_of: str, order: Sequence[object] | None = None,
            pairs: Sequence[tuple[object, object]] | None = None, value: str, paired: bool,
            alternative: str, pair_on: Sequence[str], equal_var: bool, correction: Correction,
            families: Families, across: Sequence[str] = (),
            extra: pd.DataFrame | None = None, levels: Levels | None = None) -> FamilyResult:
    """One SPEC 5 family. The correction family is ``family_by`` if given, else by ``families``:
    ``"column"`` = the fixed keys and the table column (one column of a table) minus ``across``
    (keys a family spans in both rules: MP vs UP spans the architectures), ``"table"`` = the
    fixed keys minus ``across``."""
    if families not in FAMILIES:
        raise ValueError(f"families must be one of {', '.join(FAMILIES)}; got {families!r}")
    keys = [*fixed, column]
    missing = [c for c in (*keys, factor, value, *(pair_on if paired else ())) if c not in alphas.columns]
    if missing:
        raise ValueError(f"alpha frame lacks column(s) {missing}; build it with prunescope.metrics.model_alpha")
    if family_by is None:
        family_by = [k for k in (keys if families == "column" else fixed) if k not in across]
    fam = list(family_by)
    if not set(fam) <= set(keys):
        raise ValueError(f"family_by {fam} must be a subset of the keys held fixed in one comparison {keys}")
    # integer-code every key once (in table order, ``levels``): merges, groupbys and
    # sorts on int64 codes are cheaper than on strings and sort levels as the tables list them
    cols = list(dict.fromkeys([*keys, factor, *(pair_on if paired else ())]))
    enc = pd.DataFrame({value: alphas[value].to_numpy(np.float64)})
    uniques = {}
    for c in cols:
        enc[c], uniques[c] = _factorize(alphas[c], c, levels)
    levels = uniques[factor]
    if pairs_of == "consecutive":
        if order is None:
            rank = np.arange(len(levels), dtype=np.float64)
        else:
            pos = {v: i for i, v in enumerate(order)}
            rank = np.array([pos.get(v, np.nan) for v in levels], dtype=np.float64)
        pair_frame = _pairs(enc, keys, factor, rank=rank)
    else:
        code = {v: i for i, v in enumerate(levels)}
        pair_frame = _pairs(enc, keys, factor, listed=[(code[a], code[b]) for a, b in (pairs or ())
                                                       if a in code and b in code])
    res = _tests(enc, pair_frame, keys, factor, value, paired, alternative, pair_on, equal_var)
    # sort on the integer codes: levels in ``levels`` order (not alphabetically), ratios numerically
    res = res.sort_values([*fixed, "_rank", column], kind="stable").reset_index(drop=True)
    for c in keys:
        res[c] = uniques[c].take(res[c].to_numpy()).array
    res["a"] = levels.take(res["a"].to_numpy()).array
    res["b"] = levels.take(res["b"].to_numpy()).array
    name = pd.Series(kind, index=res.index)
    for k in fam:
        name = name + "|" + k + "=" + res[k].map(_fmt).astype(str)
    res["family"] = name
    res["kind"] = kind
    res["factor"] = factor
    res["comparison"] = res["a"].map(_fmt).astype(str) + " vs " + res["b"].map(_fmt).astype(str)
    if extra is not None:
        res = res.merge(extra, on=["a", "b"], how="left")  # keeps the order of res
    res = correct_within(res, "family", "p_raw", correction, count_undefined=families == "column")
    extra_cols = [] if extra is None else [c for c in extra.columns if c not in ("a", "b")]
    long = res[["family", "kind", *fixed, column, "comparison", "factor", "a", "b", *extra_cols,
                *TEST_COLUMNS, "correction", "family_size", "p_corrected", "note"]]
    index = [*fixed, "comparison"]
    table = long.set_index([*index, column])["p_corrected"].unstack(column)
    if len(long):
        table = table.reindex(_row_index(long[index].drop_duplicates(), uniques))
        present = set(table.columns)
        table = table.reindex(columns=[v for v in uniques[column] if v in present])
    table.columns.name = column
    return FamilyResult(table=table, long=long)


def _row_index(rows: pd.DataFrame, uniques: dict[str, pd.Index]) -> pd.MultiIndex:
    """MultiIndex of the table rows (already in code order) whose levels keep that order, so the
    index is lexsorted and ``table.loc[fixed_values]`` needs no sort (no PerformanceWarning);
    ``comparison`` levels in order of appearance."""
    levels, codes = [], []
    for c in rows.columns:
        if c in uniques:
            level = pd.Index(uniques[c])
            code = level.get_indexer(rows[c])
            used = np.unique(code)
            level, code = level.take(used), np.searchsorted(used, code)
        else:
            code, level = pd.factorize(rows[c], sort=False, use_na_sentinel=False)
        levels.append(level)
        codes.append(code)
    return pd.MultiIndex(levels=levels, codes=codes, names=list(rows.columns))


def _fixed(cell: Sequence[str], *drop: str) -> list[str]:
    return [k for k in cell if k not in drop]


def ratio_tests(alphas: pd.DataFrame, level: str = "arch", *, value: str = "alpha",
                cell: Sequence[str] = CELL_KEYS, family_by: Sequence[str] | None = None,
                correction: Correction = "bonferroni", pair_on: Sequence[str] = ("model",),
                archs: Mapping[str, str] | None = None, levels: Levels | None = None,
                families: Families = "column") -> FamilyResult:
    """SPEC 5 family 1: consecutive ratios within each level of ``level`` (arch, dataset or method).

    One-sided paired t-test (paired by ``pair_on``, default the model), H_a:
    E[alpha_{t_i}] < E[alpha_{t_{i+1}}] (``a`` = t_i, ``b`` = t_{i+1}, alternative ``"less"``).
    Consecutive = adjacent among the ratios present for that level. Table: rows = ratio pairs
    (per fixed keys = ``cell`` minus ratio and ``level``), columns = levels. Family: with
    ``families="column"`` (default, the paper's) one column, i.e. the ratio pairs of one level
    (4 in the paper's grid); with ``"table"`` all ratio pairs x levels sharing the fixed keys.

    ``level="dataset"`` with ``archs`` (``{dataset: arch}``, e.g. :func:`dataset_archs` of
    ``alphas``, as :func:`all_families` passes it: the paper's LeNet, else LeNet-5, for the
    MNIST-like sets, ResNet-56 for CIFAR): each dataset is taken on its own architecture, rows
    of other architectures are ignored and arch is not a fixed key,
    so one table (one family) per (method, distribution) spans the datasets; ``long`` gets an
    ``arch`` column (the dataset's architecture). ``archs=None``: datasets are compared within
    each architecture (arch a fixed key, one table per architecture). ``levels``: the table
    order of the factors' levels (:attr:`FamilyOrders.levels`; default: sorted).
    """
    fixed = _fixed(cell, "ratio", level)
    by_arch = level == "dataset" and archs is not None and "arch" in fixed and "arch" in alphas
    if by_arch:
        alphas = alphas.loc[alphas["arch"].to_numpy() == alphas["dataset"].map(archs).to_numpy()]
        alphas, fixed = alphas.drop(columns="arch"), _fixed(fixed, "arch")
    res = _family(alphas, kind="ratios", factor="ratio", column=level, fixed=fixed,
                  family_by=family_by, pairs_of="consecutive", value=value, paired=True,
                  alternative="less", pair_on=pair_on, equal_var=True, correction=correction,
                  families=families, levels=levels)
    if not by_arch:
        return res
    long = res.long.copy()
    long.insert(long.columns.get_loc("dataset") + 1, "arch", long["dataset"].map(archs))
    return FamilyResult(table=res.table, long=long)


def arch_tests(alphas: pd.DataFrame, order: Sequence[str], *, value: str = "alpha",
               cell: Sequence[str] = CELL_KEYS, family_by: Sequence[str] | None = None,
               correction: Correction = "bonferroni", equal_var: bool = True,
               levels: Levels | None = None, families: Families = "column") -> FamilyResult:
    """SPEC 5 family 2: consecutive architecture sizes (``order``: the architectures by
    increasing size, :attr:`FamilyOrders.arch_sizes`) at each fixed ratio.

    One-sided independent t-test (Student's; Welch's with ``equal_var=False``), H_a: the smaller
    architecture (``a``) has the larger E[alpha] (alternative ``"greater"``). Architectures absent
    at a ratio are skipped (the next present size is compared). Table: rows = size pairs (per
    dataset, method, distribution), columns = ratios; family: one ratio's size pairs (column,
    default; 4 in the paper's grid) or the whole table (``families="table"``).
    """
    return _family(alphas, kind="archs", factor="arch", column="ratio", fixed=_fixed(cell, "arch", "ratio"),
                   family_by=family_by, pairs_of="consecutive", order=order, value=value, paired=False,
                   alternative="greater", pair_on=(), equal_var=equal_var, correction=correction,
                   families=families, levels=levels)


def dataset_tests(alphas: pd.DataFrame, pairs: Sequence[tuple[str, str]],
                  archs: Mapping[str, str] | None = None, *, value: str = "alpha",
                  cell: Sequence[str] = CELL_KEYS, family_by: Sequence[str] | None = None,
                  correction: Correction = "bonferroni", equal_var: bool = True,
                  levels: Levels | None = None, families: Families = "column") -> FamilyResult:
    """SPEC 5 family 3: dataset pairs (simpler ``a``, harder ``b``) at each fixed ratio.

    One-sided independent t-test, H_a: the simpler dataset has the smaller E[alpha]
    (alternative ``"less"``); ``pairs``: :attr:`FamilyOrders.dataset_pairs`. ``archs`` maps
    each dataset to the architecture used for it (e.g. :func:`dataset_archs` of ``alphas``, as
    :func:`all_families` passes it; rows of other architectures are ignored and the long form
    gets ``arch_a``/``arch_b``); ``archs=None`` compares datasets only within the same
    architecture. Table: rows = dataset pairs (per method, distribution[, arch]), columns = ratios;
    family: one ratio's dataset pairs (column, default; 3 in the paper's grid) or the whole
    table (``families="table"``).
    """
    if archs is None:
        return _family(alphas, kind="datasets", factor="dataset", column="ratio",
                       fixed=_fixed(cell, "dataset", "ratio"), family_by=family_by, pairs_of="listed",
                       pairs=pairs, value=value, paired=False, alternative="less", pair_on=(),
                       equal_var=equal_var, correction=correction, families=families,
                       levels=levels)
    chosen = alphas.loc[alphas["arch"].to_numpy() == alphas["dataset"].map(archs).to_numpy()]
    extra = pd.DataFrame({"a": [a for a, _ in pairs], "b": [b for _, b in pairs],
                          "arch_a": [archs.get(a) for a, _ in pairs], "arch_b": [archs.get(b) for _, b in pairs]})
    return _family(chosen.drop(columns="arch"), kind="datasets", factor="dataset", column="ratio",
                   fixed=_fixed(cell, "dataset", "ratio", "arch"), family_by=family_by, pairs_of="listed",
                   pairs=pairs, value=value, paired=False, alternative="less", pair_on=(),
                   equal_var=equal_var, correction=correction, families=families, extra=extra,
                   levels=levels)


def method_tests(alphas: pd.DataFrame, pairs: Sequence[tuple[str, str]] | None = None, *,
                 value: str = "alpha", cell: Sequence[str] = CELL_KEYS,
                 family_by: Sequence[str] | None = None, correction: Correction = "bonferroni",
                 pair_on: Sequence[str] = ("model",), order: Sequence[str] = (),
                 leave_to_mp_vs_up: tuple[str, str] | None = None, matched: Sequence[str] = (),
                 levels: Levels | None = None, families: Families = "column") -> FamilyResult:
    """SPEC 5 family 4: method pairs at each fixed ratio, two-sided paired t-test (by model: the
    pruned models of one pair share their dense parent).

    ``pairs=None``: every unordered pair of the methods present (``"dense"`` excluded), ordered
    by ``order`` (:attr:`FamilyOrders.methods`) then name. Table: rows = method pairs (per dataset, arch,
    distribution), columns = ratios; family: one ratio's method pairs (column, default; 6 in the
    paper's grid) or the whole table (``families="table"``).

    ``leave_to_mp_vs_up`` (:attr:`FamilyOrders.mp_vs_up`, MP and UP): a (dataset, arch,
    distribution) whose only methods are these two is left out: its one pair is tested in :func:`mp_vs_up_tests`, whose
    family spans every architecture (25 comparisons in the paper's grid, SPEC 5 test 4); a
    5-comparison family of its own would report the same test again with a smaller correction.
    So in the paper's grid only CIFAR-10/ResNet-56 (MP, GP, UP, RP: 6 pairs per ratio) gets a
    table here. ``None`` (default): every (dataset, arch, distribution) with two methods or
    more. ``matched`` methods (MP kept to UP's count) are compared only with the pair's two
    methods, in a family of their own per cell and ratio (MP vs MP@UP, UP vs MP@UP); the other
    methods' pairs are as without them (ResNet-56: the paper's 6 pairs per ratio).
    """
    kw = dict(cell=cell, family_by=family_by, correction=correction, pair_on=pair_on,
              levels=levels, families=families, value=value, order=order)
    if leave_to_mp_vs_up is None:
        return _method_family(alphas, pairs, **kw)
    pruned = alphas.loc[alphas["method"] != "dense"]
    is_matched = pruned["method"].isin(matched)
    results = [_method_family(_without_pair_alone(pruned.loc[~is_matched], cell,
                                                  leave_to_mp_vs_up), pairs, **kw)]
    if pairs is None and is_matched.any():  # the matched pairs, a family of their own
        by = ([pruned[k] for k in _fixed(cell, "method", "ratio") if k in pruned.columns]
              or [pd.Series(0, index=pruned.index)])
        with_matched = is_matched.groupby(by, sort=False, dropna=False).transform("any")
        partners = pruned.loc[with_matched & pruned["method"].isin((*leave_to_mp_vs_up,
                                                                    *matched))]
        matched_family = _method_family(partners, None, leave={frozenset(leave_to_mp_vs_up)},
                                        **kw)
        long = matched_family.long
        long["family"] = long["family"].str.replace("methods|", "matched methods|", n=1,
                                                    regex=False)
        results.append(FamilyResult(matched_family.table, long))
    results = [r for r in results if len(r.long)] or results[:1]
    return FamilyResult(pd.concat([r.table for r in results]),
                        pd.concat([r.long for r in results], ignore_index=True))


def _without_pair_alone(pruned: pd.DataFrame, cell: Sequence[str],
                        pair: tuple[str, str]) -> pd.DataFrame:
    """``pruned`` less the (dataset, arch, distribution) groups whose only methods are
    ``pair`` (their one comparison belongs to :func:`mp_vs_up_tests`)."""
    by = ([pruned[k] for k in _fixed(cell, "method", "ratio") if k in pruned.columns]
          or [pd.Series(0, index=pruned.index)])
    methods = pruned["method"].groupby(by, sort=False, dropna=False)
    only = pruned["method"].isin(pair).groupby(by, sort=False, dropna=False).transform("all")
    return pruned.loc[~(only & (methods.transform("nunique") == 2))]


def _method_family(alphas: pd.DataFrame, pairs: Sequence[tuple[str, str]] | None, *,
                   cell: Sequence[str], family_by: Sequence[str] | None, correction: Correction,
                   pair_on: Sequence[str], levels: Levels | None, families: Families, value: str,
                   order: Sequence[str], leave: set[frozenset[str]] = frozenset()
                   ) -> FamilyResult:
    """:func:`method_tests` on ``alphas`` as given: ``pairs``, or every unordered pair of the
    methods present but those in ``leave``, ordered by ``order`` then name."""
    if pairs is None:
        present = [m for m in pd.unique(alphas["method"]) if m != "dense"]
        order = list(order)
        rank = {m: (order.index(m) if m in order else len(order), str(m)) for m in present}
        pairs = [p for p in combinations(sorted(present, key=rank.__getitem__), 2)
                 if frozenset(p) not in leave]
    return _family(alphas, kind="methods", factor="method", column="ratio", fixed=_fixed(cell, "method", "ratio"),
                   family_by=family_by, pairs_of="listed", pairs=pairs, value=value, paired=True,
                   alternative="two-sided", pair_on=pair_on, equal_var=True, correction=correction,
                   families=families, levels=levels)


def mp_vs_up_tests(alphas: pd.DataFrame, a: str, b: str, *, value: str = "alpha",
                   cell: Sequence[str] = CELL_KEYS, family_by: Sequence[str] | None = None,
                   correction: Correction = "bonferroni", pair_on: Sequence[str] = ("model",),
                   levels: Levels | None = None, families: Families = "column") -> FamilyResult:
    """SPEC 5 family 4, across architectures: ``a`` vs ``b`` (MP vs UP,
    :attr:`FamilyOrders.mp_vs_up`) at every (arch, ratio), two-sided paired t-test by model.

    Table: rows = architectures (per dataset, distribution), columns = ratios. Family, under
    either ``families`` rule: every (arch, ratio) comparison of one (dataset, distribution),
    5 archs x 5 ratios = 25 in the paper's grid (fewer if cells are missing; ``"column"`` counts
    a listed comparison without a p-value, ``"table"`` does not).
    """
    return _family(alphas, kind="mp_vs_up", factor="method", column="ratio",
                   fixed=_fixed(cell, "method", "ratio"), family_by=family_by, pairs_of="listed",
                   pairs=[(a, b)], value=value, paired=True, alternative="two-sided",
                   pair_on=pair_on, equal_var=True, correction=correction, families=families,
                   across=("arch", "ratio"), levels=levels)


def all_families(alphas: pd.DataFrame, orders: FamilyOrders, *, value: str = "alpha",
                 cell: Sequence[str] = CELL_KEYS, correction: Correction = "bonferroni",
                 families: Families = "column") -> dict[str, FamilyResult]:
    """Every SPEC 5 family with default settings (``families`` as in each function) and the
    names and orders of ``orders`` (:func:`prunescope.analysis.family_orders`: the catalog's):
    keys ``ratios_by_arch``, ``ratios_by_dataset``, ``ratios_by_method``, ``archs``,
    ``datasets``, ``methods``, ``mp_vs_up``. The datasets are compared each on its
    :func:`dataset_archs` architecture of ``alphas``."""
    kw = {"value": value, "cell": cell, "correction": correction, "families": families,
          "levels": orders.levels}
    archs = (dataset_archs(alphas, orders.dataset_archs)
             if {"dataset", "arch"} <= set(alphas.columns) else None)
    return {
        "ratios_by_arch": ratio_tests(alphas, "arch", **kw),
        "ratios_by_dataset": ratio_tests(alphas, "dataset", archs=archs, **kw),
        "ratios_by_method": ratio_tests(alphas, "method", **kw),
        "archs": arch_tests(alphas, orders.arch_sizes, **kw),
        "datasets": dataset_tests(alphas, orders.dataset_pairs, archs, **kw),
        "methods": method_tests(alphas, order=orders.methods, leave_to_mp_vs_up=orders.mp_vs_up,
                                matched=orders.matched, **kw),
        "mp_vs_up": mp_vs_up_tests(alphas, *orders.mp_vs_up, **kw),
    }
