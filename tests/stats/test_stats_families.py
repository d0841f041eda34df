"""The SPEC 5 test families on a synthetic per-model alpha frame with known structure.

``prunescope.stats`` knows no dataset, architecture or method: the builders take the names and
orders they need. The functions below call them as ``prunescope.analysis`` does, with the
catalog's (``analysis.family_orders()``, derived on call)."""
import warnings

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps
from statsmodels.stats.multitest import multipletests

from prunescope import stats
from prunescope.analysis import dataset_archs, family_orders

RATIOS = (2.0, 4.0, 10.0, 20.0, 50.0)


def ratio_tests(f, level="arch", *, archs="auto", **kw):
    """Each dataset on its ``dataset_archs`` architecture unless ``archs`` is given."""
    archs = dataset_archs(f) if archs == "auto" else archs
    return stats.ratio_tests(f, level, archs=archs, levels=family_orders().levels, **kw)


def arch_tests(f, **kw):
    o = family_orders()
    return stats.arch_tests(f, o.arch_sizes, levels=o.levels, **kw)


def dataset_tests(f, archs="auto", **kw):
    o = family_orders()
    archs = dataset_archs(f) if archs == "auto" else archs
    return stats.dataset_tests(f, o.dataset_pairs, archs, levels=o.levels, **kw)


def method_tests(f, **kw):
    o = family_orders()
    kw.setdefault("leave_to_mp_vs_up", o.mp_vs_up)
    return stats.method_tests(f, order=o.methods, levels=o.levels, **kw)


def mp_vs_up_tests(f, **kw):
    o = family_orders()
    return stats.mp_vs_up_tests(f, *o.mp_vs_up, levels=o.levels, **kw)


def all_families(f, **kw):
    return stats.all_families(f, family_orders(), **kw)


def study(n_models: int = 6, seed: int = 0) -> pd.DataFrame:
    """alpha = 0.8 + 0.01 t + 0.1 [resnet20] - 0.05 [up] - 0.2 [mnist] + model effect + noise."""
    rng = np.random.default_rng(seed)
    rows = []
    setups = [("cifar10", "resnet20", "mp"), ("cifar10", "resnet20", "up"), ("cifar10", "resnet56", "mp"),
              ("cifar10", "resnet56", "up"), ("mnist", "lenet5", "mp")]
    model_effect = rng.normal(0, 0.05, n_models)
    for dataset, arch, method in setups:
        for t in RATIOS:
            for m in range(n_models):
                alpha = (0.8 + 0.01 * t + 0.1 * (arch == "resnet20") - 0.05 * (method == "up")
                         - 0.2 * (dataset == "mnist") + model_effect[m] + rng.normal(0, 0.02))
                rows.append(dict(dataset=dataset, arch=arch, method=method, ratio=t, model=m,
                                 distribution="nominal", alpha=alpha))
    return pd.DataFrame(rows)


def pick(f: pd.DataFrame, **kw) -> np.ndarray:
    mask = np.ones(len(f), bool)
    for k, v in kw.items():
        mask &= (f[k] == v).to_numpy()
    return f.loc[mask].sort_values("model")["alpha"].to_numpy()


def test_ratio_family_matches_scipy_and_has_table_shape():
    f = study()
    res = ratio_tests(f, "arch", families="table")
    long = res.long[res.long["dataset"] == "cifar10"]
    fam = long[long["method"] == "mp"]
    assert len(fam) == 8 and (fam["family_size"] == 8).all()  # 4 ratio pairs x 2 archs
    row = fam[(fam["arch"] == "resnet56") & (fam["comparison"] == "4 vs 10")].iloc[0]
    a = pick(f, dataset="cifar10", arch="resnet56", method="mp", ratio=4.0)
    b = pick(f, dataset="cifar10", arch="resnet56", method="mp", ratio=10.0)
    ref = sps.ttest_rel(a, b, alternative="less")
    assert row["t"] == pytest.approx(ref.statistic, rel=1e-12)
    assert row["p_raw"] == pytest.approx(ref.pvalue, rel=1e-12)
    assert row["p_corrected"] == pytest.approx(min(8 * ref.pvalue, 1.0), rel=1e-12)
    assert row["n1"] == row["n2"] == 6 and row["df"] == 5 and row["test"] == "paired"
    assert row["mean_diff"] == pytest.approx(a.mean() - b.mean(), abs=1e-14)
    table = res.table.loc[("cifar10", "mp", "nominal")].dropna(axis=1, how="all")
    assert list(table.index) == ["2 vs 4", "4 vs 10", "10 vs 20", "20 vs 50"]
    assert list(table.columns) == ["resnet20", "resnet56"]
    assert table.loc["20 vs 50", "resnet56"] < 0.01  # alpha rises by 0.3 from t = 20 to 50


def test_missing_levels_are_skipped_and_shrink_the_family():
    f = study()
    f = f[~((f["arch"] == "resnet20") & (f["ratio"] == 10.0))]
    fam = ratio_tests(f, "arch", families="table").long.query("dataset == 'cifar10' and method == 'mp'")
    assert fam.loc[fam["arch"] == "resnet20", "comparison"].tolist() == ["2 vs 4", "4 vs 20", "20 vs 50"]
    assert (fam["family_size"] == 7).all()
    per_level = ratio_tests(f, "arch", family_by=["dataset", "method", "distribution", "arch"]).long
    sizes = per_level.query("dataset == 'cifar10' and method == 'mp'").groupby("arch")["family_size"].first()
    assert sizes.to_dict() == {"resnet20": 3, "resnet56": 4}


def test_arch_family_independent_one_sided_and_skips_absent_sizes():
    f = study()
    res = arch_tests(f, families="table")
    fam = res.long.query("dataset == 'cifar10' and method == 'mp'")
    assert fam["comparison"].unique().tolist() == ["resnet20 vs resnet56"]  # 32, 44 absent
    assert len(fam) == 5 and (fam["family_size"] == 5).all()
    row = fam[fam["ratio"] == 20.0].iloc[0]
    a = pick(f, dataset="cifar10", arch="resnet20", method="mp", ratio=20.0)
    b = pick(f, dataset="cifar10", arch="resnet56", method="mp", ratio=20.0)
    ref = sps.ttest_ind(a, b, alternative="greater")
    assert row["t"] == pytest.approx(ref.statistic, rel=1e-12) and row["df"] == 10
    assert row["p_raw"] == pytest.approx(ref.pvalue, rel=1e-12)
    assert row["alternative"] == "greater" and row["test"] == "independent"
    assert list(res.table.columns) == list(RATIOS)


def test_dataset_family_uses_the_dataset_architecture():
    f = study()
    res = dataset_tests(f, families="table")
    fam = res.long
    assert fam["comparison"].unique().tolist() == ["mnist vs cifar10"]  # others absent: skipped
    assert (fam["arch_a"] == "lenet5").all() and (fam["arch_b"] == "resnet56").all()
    assert (fam["method"] == "mp").all() and len(fam) == 5 and (fam["family_size"] == 5).all()
    row = fam[fam["ratio"] == 2.0].iloc[0]
    a = pick(f, dataset="mnist", method="mp", ratio=2.0)
    b = pick(f, dataset="cifar10", arch="resnet56", method="mp", ratio=2.0)
    ref = sps.ttest_ind(a, b, alternative="less")
    assert row["p_raw"] == pytest.approx(ref.pvalue, rel=1e-12)
    assert dataset_tests(f, archs=None).long.empty  # no dataset pair shares an architecture


def test_method_and_mp_vs_up_families_are_two_sided_paired():
    f = study()
    assert method_tests(f).long.empty  # every arch has only MP and UP: left to mp_vs_up_tests
    meth = method_tests(f, leave_to_mp_vs_up=None, families="table").long
    assert meth["comparison"].unique().tolist() == ["mp vs up"]
    row = meth.query("arch == 'resnet20' and ratio == 4.0").iloc[0]
    a = pick(f, dataset="cifar10", arch="resnet20", method="mp", ratio=4.0)
    b = pick(f, dataset="cifar10", arch="resnet20", method="up", ratio=4.0)
    ref = sps.ttest_rel(a, b)
    assert row["t"] == pytest.approx(ref.statistic, rel=1e-12)
    assert row["p_raw"] == pytest.approx(ref.pvalue, rel=1e-12) and row["family_size"] == 5
    mvu = mp_vs_up_tests(f)
    assert (mvu.long["family_size"] == 10).all()  # 2 archs x 5 ratios in one family
    assert mvu.long["p_corrected"].to_numpy() == pytest.approx(np.minimum(mvu.long["p_raw"] * 10, 1), rel=1e-12)
    assert mvu.table.shape == (2, 5)
    holm = mp_vs_up_tests(f, correction="holm").long
    assert (holm["correction"] == "holm").all() and (holm["p_corrected"] <= mvu.long["p_corrected"] + 1e-15).all()


def test_too_few_models_are_noted_and_not_counted():
    f = study()
    f = f[~((f["arch"] == "resnet56") & (f["method"] == "up") & (f["ratio"] == 2.0) & (f["model"] > 0))]
    long = mp_vs_up_tests(f, families="table").long
    bad = long.query("arch == 'resnet56' and ratio == 2.0").iloc[0]
    assert np.isnan(bad["p_raw"]) and np.isnan(bad["p_corrected"]) and bad["note"].startswith("fewer than 2")
    assert np.isnan(bad["t"]) and np.isnan(bad["df"]) and bad["n1"] == 1
    assert (long["family_size"] == 9).all()


def test_all_families_runs_every_family():
    out = all_families(study())
    assert set(out) == {"ratios_by_arch", "ratios_by_dataset", "ratios_by_method", "archs", "datasets",
                        "methods", "mp_vs_up"}
    for res in out.values():
        assert {"n1", "n2", "mean1", "mean2", "mean_diff", "t", "df", "p_raw", "p_corrected", "family",
                "correction"} <= set(res.long.columns)
        assert (res.long["p_corrected"].dropna() <= 1).all()


def test_duplicate_model_in_a_cell_is_an_error_for_paired_tests():
    f = study()
    f = pd.concat([f, f.iloc[[0]]], ignore_index=True)
    with pytest.raises(ValueError, match="one value per model"):
        method_tests(f, leave_to_mp_vs_up=None)
    with pytest.raises(ValueError, match="one value per model"):
        mp_vs_up_tests(f)


def test_nan_alphas_are_left_out_of_the_tests():
    f = study()
    f.loc[(f["arch"] == "resnet20") & (f["method"] == "up") & (f["ratio"] == 2.0) & (f["model"] == 0), "alpha"] = np.nan
    row = mp_vs_up_tests(f).long.query("arch == 'resnet20' and ratio == 2.0").iloc[0]
    a = pick(f, dataset="cifar10", arch="resnet20", method="mp", ratio=2.0)[1:]
    b = pick(f, dataset="cifar10", arch="resnet20", method="up", ratio=2.0)[1:]
    assert row["n1"] == 5 and row["p_raw"] == pytest.approx(sps.ttest_rel(a, b).pvalue, rel=1e-12)


def test_families_with_no_comparison_return_empty_tables():
    """A study with a single ratio has nothing to compare in the ratio family (SPEC 5 test 1):
    the family is empty, not an error; MP vs UP still runs, in its own family (SPEC 5 test 4),
    and not a second time in the method-pair family (only MP and UP are present)."""
    rng = np.random.default_rng(3)
    rows = [{"dataset": "mnist", "arch": "lenet5", "method": m, "ratio": 10.0, "model": i,
             "distribution": "nominal", "alpha": 1.0 + rng.normal(0, 0.1)}
            for m in ("mp", "up") for i in range(5)]
    alphas = pd.DataFrame(rows)
    fams = all_families(alphas)
    sizes = {name: len(f.long) for name, f in fams.items()}
    assert sizes["ratios_by_arch"] == sizes["ratios_by_method"] == sizes["archs"] == 0
    assert sizes["methods"] == 0 and sizes["mp_vs_up"] == 1
    assert len(method_tests(alphas, leave_to_mp_vs_up=None).long) == 1
    assert fams["ratios_by_method"].table.empty


def test_zero_variance_comparisons_are_noted():
    """SPEC 5 (paired tests report n, t, df, raw p): a comparison whose paired differences are
    all equal has zero variance. All differences 0: t = 0/0, p = NaN (as scipy.stats.ttest_rel),
    noted and left out of the family size; a constant nonzero difference: t = inf, scipy's p,
    noted and counted. The same for independent sides that are each constant."""
    f = study()
    mp = (f["arch"] == "resnet20") & (f["method"] == "mp")
    up = (f["arch"] == "resnet20") & (f["method"] == "up")
    at = lambda r: (f["ratio"] == r).to_numpy()  # noqa: E731
    f.loc[up & at(2.0), "alpha"] = f.loc[mp & at(2.0), "alpha"].to_numpy()  # identical: d = 0
    f.loc[mp & at(4.0), "alpha"] = np.arange(6.0)
    f.loc[up & at(4.0), "alpha"] = np.arange(6.0) - 1.0  # d = 1 for every model
    long = mp_vs_up_tests(f, families="table").long.set_index(["arch", "ratio"])
    same, shifted = long.loc[("resnet20", 2.0)], long.loc[("resnet20", 4.0)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # scipy: "catastrophic cancellation"
        ref = sps.ttest_rel(pick(f, arch="resnet20", method="mp", ratio=2.0),
                            pick(f, arch="resnet20", method="up", ratio=2.0))
    assert np.isnan(ref.pvalue) and np.isnan(same["p_raw"]) and np.isnan(same["p_corrected"])
    assert same["note"].startswith("zero variance of differences") and same["n1"] == 6
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        ref = sps.ttest_rel(np.arange(6.0), np.arange(6.0) - 1.0)
    assert shifted["t"] == ref.statistic == np.inf and shifted["p_raw"] == ref.pvalue == 0.0
    assert shifted["note"].startswith("zero variance of differences")
    assert (long["family_size"] == 9).all()  # 10 comparisons, the all-zero one not counted
    assert (long.drop(index=[("resnet20", 2.0), ("resnet20", 4.0)])["note"] == "").all()
    g = study()
    for arch in ("resnet20", "resnet56"):
        g.loc[(g["dataset"] == "cifar10") & (g["arch"] == arch) & (g["method"] == "mp")
              & (g["ratio"] == 10.0), "alpha"] = 1.0
    row = arch_tests(g).long.query("method == 'mp' and ratio == 10.0").iloc[0]
    assert np.isnan(row["p_raw"]) and row["note"].startswith("zero variance on both sides")


def test_tables_order_levels_like_the_figures_not_alphabetically():
    """SPEC 6 p-value tables: architectures by size (resnet20 before resnet110) and datasets from
    simple to hard (mnist before cifar10), as analysis.level_order() and the report's figures order
    them; ratios numerically."""
    rng = np.random.default_rng(5)
    rows = [dict(dataset=d, arch=a, method=m, ratio=t, model=i, distribution="nominal",
                 alpha=1.0 + 0.01 * t + rng.normal(0, 0.05))
            for d, a in [("cifar10", "resnet110"), ("cifar10", "resnet20"), ("cifar10", "resnet56"),
                         ("mnist", "lenet5")]
            for m in ("up", "mp") for t in (20.0, 2.0, 4.0) for i in range(4)]
    f = pd.DataFrame(rows)
    by_arch = ratio_tests(f, "arch").table
    assert list(by_arch.columns) == ["lenet5", "resnet20", "resnet56", "resnet110"]
    assert list(by_arch.index.get_level_values("dataset").unique()) == ["mnist", "cifar10"]
    assert list(by_arch.index.get_level_values("method").unique()) == ["mp", "up"]
    assert list(by_arch.index.get_level_values("comparison").unique()) == ["2 vs 4", "4 vs 20"]
    mvu = mp_vs_up_tests(f).table
    assert list(mvu.index.get_level_values("arch")) == ["lenet5", "resnet20", "resnet56", "resnet110"]
    assert list(mvu.columns) == [2.0, 4.0, 20.0]
    archs = arch_tests(f).long.query("method == 'mp' and ratio == 2.0")
    assert archs["comparison"].tolist() == ["resnet20 vs resnet56", "resnet56 vs resnet110"]
    assert list(ratio_tests(f, "method").table.columns) == ["mp", "up"]
    g = f.assign(method=f["method"].map({"mp": "gp", "up": "up"}))
    assert list(ratio_tests(g, "method").table.columns) == ["up", "gp"]  # the figures' order


def paper_like(n_models: int = 4, seed: int = 7,
               ratios: tuple[float, ...] = (2.0, 4.0, 10.0)) -> pd.DataFrame:
    """The SPEC 4 grid (3 ratios by default): MP everywhere, UP on every ResNet, GP and RP on
    CIFAR-10/ResNet-56 (alpha rising with the ratio, plus noise)."""
    rng = np.random.default_rng(seed)
    setups = [("mnist", "lenet5", "mp"), ("fashion-mnist", "lenet5", "mp")]
    setups += [("cifar10", a, m) for a in ("resnet20", "resnet32", "resnet44", "resnet56", "resnet110")
               for m in ("mp", "up")]
    setups += [("cifar10", "resnet56", "gp"), ("cifar10", "resnet56", "rp"),
               ("cifar100", "resnet56", "mp"), ("cifar100", "resnet56", "up")]
    return pd.DataFrame([dict(dataset=d, arch=a, method=m, ratio=t, model=i, distribution="nominal",
                              alpha=0.9 + 0.01 * t + rng.normal(0, 0.05))
                         for d, a, m in setups for t in ratios for i in range(n_models)])


def test_ratios_within_a_dataset_take_each_dataset_on_its_architecture():
    """SPEC 5 test 1 "within ... a dataset": one family per method over the datasets, each on
    DATASET_ARCHS (LeNet-5 for MNIST/Fashion, ResNet-56 for CIFAR-10/100, SPEC 4), not one
    per architecture (which repeated the by-architecture tables for ResNet-20/32/44/110)."""
    f = paper_like()
    res = ratio_tests(f, "dataset", families="table")
    long = res.long
    sizes = long.groupby("family")["family_size"].first().to_dict()
    assert sizes == {"ratios|method=mp|distribution=nominal": 8,  # 4 datasets x 2 ratio pairs
                     "ratios|method=up|distribution=nominal": 4,
                     "ratios|method=gp|distribution=nominal": 2,
                     "ratios|method=rp|distribution=nominal": 2}
    assert list(long.columns[:6]) == ["family", "kind", "method", "distribution", "dataset", "arch"]
    assert long.set_index("dataset")["arch"].to_dict() == {
        "mnist": "lenet5", "fashion-mnist": "lenet5", "cifar10": "resnet56", "cifar100": "resnet56"}
    table = res.table.loc[("mp", "nominal")]
    assert list(table.columns) == ["mnist", "fashion-mnist", "cifar10", "cifar100"]
    assert list(table.index) == ["2 vs 4", "4 vs 10"]
    row = long.query("method == 'mp' and dataset == 'cifar10' and comparison == '4 vs 10'").iloc[0]
    ref = sps.ttest_rel(pick(f, dataset="cifar10", arch="resnet56", method="mp", ratio=4.0),
                        pick(f, dataset="cifar10", arch="resnet56", method="mp", ratio=10.0),
                        alternative="less")
    assert row["p_raw"] == pytest.approx(ref.pvalue, rel=1e-12)
    assert row["p_corrected"] == pytest.approx(min(8 * ref.pvalue, 1.0), rel=1e-12)
    per_arch = ratio_tests(f, "dataset", archs=None, families="table").long
    assert per_arch["family"].nunique() == 13 and "arch" in per_arch.columns


def test_method_pairs_only_where_more_than_mp_and_up_are_compared():
    """SPEC 5 test 4: method pairs at fixed ratio, and MP vs UP for every architecture with a
    25-comparison family. An architecture with only MP and UP is in that family alone (not in a
    5-comparison method family of its own, which was the same test with a smaller correction);
    CIFAR-10/ResNet-56 with MP, GP, UP, RP gets 6 pairs x ratios, corrected together."""
    f = paper_like()
    meth = method_tests(f, families="table").long
    assert meth["family"].unique().tolist() == ["methods|dataset=cifar10|arch=resnet56|distribution=nominal"]
    assert (meth["family_size"] == 18).all()  # 6 pairs x 3 ratios
    assert meth["comparison"].unique().tolist() == ["mp vs gp", "mp vs up", "mp vs rp", "gp vs up",
                                                    "gp vs rp", "up vs rp"]
    mvu = mp_vs_up_tests(f, families="table").long
    assert mvu.groupby("dataset")["family_size"].first().to_dict() == {"cifar10": 15, "cifar100": 3}
    row = meth.query("comparison == 'mp vs up' and ratio == 4.0").iloc[0]
    twin = mvu.query("dataset == 'cifar10' and arch == 'resnet56' and ratio == 4.0").iloc[0]
    assert row["p_raw"] == twin["p_raw"]
    assert row["p_corrected"] == pytest.approx(min(18 * row["p_raw"], 1.0), rel=1e-12)
    # a pair other than MP/UP stays, even with only two methods
    g = f[~f["method"].isin(["up", "rp"]) & (f["arch"] == "resnet56") & (f["dataset"] == "cifar10")]
    assert method_tests(g).long["comparison"].unique().tolist() == ["mp vs gp"]
    assert method_tests(f, leave_to_mp_vs_up=None, families="table").long["family"].nunique() == 6


PAPER_RATIOS = (2.0, 4.0, 10.0, 20.0, 50.0)


def _assert_bonferroni(long: pd.DataFrame, size: int) -> None:
    assert (long["family_size"] == size).all()
    np.testing.assert_allclose(long["p_corrected"], np.minimum(size * long["p_raw"], 1.0), rtol=1e-12)


def test_default_families_are_the_columns_of_the_papers_tables():
    """SPEC 5, the paper: "Each p-value ... has been multiplied by the number of rows in its
    column of the table". On the paper's grid with 5 ratios: consecutive ratios within one
    architecture, dataset or method 4, size pairs at one ratio 4, dataset pairs at one ratio 3,
    method pairs at one ratio 6, MP vs UP over all 25 (arch, ratio). The old whole-table
    families (families="table") give 20, 16 (x4 here), 15, 30 instead."""
    f = paper_like(ratios=PAPER_RATIOS)
    by_arch = ratio_tests(f, "arch").long.query("dataset == 'cifar10' and method == 'mp'")
    assert by_arch.groupby("arch").size().to_dict() == dict.fromkeys(
        ["resnet20", "resnet32", "resnet44", "resnet56", "resnet110"], 4)
    _assert_bonferroni(by_arch, 4)
    assert by_arch["family"].nunique() == 5  # one family per column (architecture)
    by_dataset = ratio_tests(f, "dataset").long.query("method == 'mp'")
    _assert_bonferroni(by_dataset, 4)
    _assert_bonferroni(ratio_tests(f, "method").long.query("dataset == 'cifar10' and arch == 'resnet56'"), 4)
    archs = arch_tests(f).long.query("method == 'mp'")
    assert archs.groupby("ratio").size().to_dict() == dict.fromkeys(PAPER_RATIOS, 4)
    _assert_bonferroni(archs, 4)
    datasets = dataset_tests(f).long.query("method == 'mp'")
    assert datasets.groupby("ratio").size().to_dict() == dict.fromkeys(PAPER_RATIOS, 3)
    _assert_bonferroni(datasets, 3)
    methods = method_tests(f).long
    assert methods.groupby("ratio").size().to_dict() == dict.fromkeys(PAPER_RATIOS, 6)
    _assert_bonferroni(methods, 6)
    mvu = mp_vs_up_tests(f).long.query("dataset == 'cifar10'")
    assert len(mvu) == 25 and mvu["family"].nunique() == 1
    _assert_bonferroni(mvu, 25)
    # the whole-table option keeps the old families
    table = {name: fam.long for name, fam in all_families(f, families="table").items()}
    assert table["ratios_by_arch"].query("dataset == 'cifar10' and method == 'mp'")["family_size"].unique().tolist() == [20]
    assert table["archs"].query("method == 'mp'")["family_size"].unique().tolist() == [20]
    assert table["datasets"].query("method == 'mp'")["family_size"].unique().tolist() == [15]
    assert table["methods"]["family_size"].unique().tolist() == [30]
    assert table["mp_vs_up"].query("dataset == 'cifar10'")["family_size"].unique().tolist() == [25]


def test_column_family_counts_a_row_without_p_value():
    """SPEC 5: "the family size counts every row of the column, an undefined one included": a
    comparison with too few models stays a row of its column (p NaN, with a note) and the
    others of that column are multiplied by the full row count; the table option counts only
    comparisons with a p-value. Holm treats the undefined row like p = 1 (it ranks last)."""
    f = paper_like(ratios=PAPER_RATIOS)
    one_model = (f["dataset"] == "cifar10") & (f["arch"] == "resnet44") & (f["ratio"] == 10.0) & (f["model"] > 0)
    f = f[~one_model]
    archs = arch_tests(f).long.query("method == 'mp' and ratio == 10.0")
    undefined = archs[archs["p_raw"].isna()]
    assert undefined["comparison"].tolist() == ["resnet32 vs resnet44", "resnet44 vs resnet56"]
    assert undefined["note"].str.startswith("fewer than 2").all() and undefined["p_corrected"].isna().all()
    defined = archs[archs["p_raw"].notna()]
    assert (archs["family_size"] == 4).all() and len(defined) == 2
    np.testing.assert_allclose(defined["p_corrected"], np.minimum(4 * defined["p_raw"], 1.0), rtol=1e-12)
    old = arch_tests(f, families="table").long.query("method == 'mp' and ratio == 10.0")
    assert (old["family_size"] == 18).all()  # 20 comparisons, 2 without a p-value
    mvu = mp_vs_up_tests(f).long.query("dataset == 'cifar10'")
    assert mvu["p_raw"].isna().sum() == 1
    _assert_bonferroni(mvu.dropna(subset=["p_raw"]), 25)
    assert (mp_vs_up_tests(f, families="table").long.query("dataset == 'cifar10'")["family_size"] == 24).all()
    holm = mp_vs_up_tests(f, correction="holm").long.query("dataset == 'cifar10'")
    p = holm["p_raw"].fillna(1.0).to_numpy()
    ref = multipletests(p, method="holm")[1]
    np.testing.assert_allclose(holm["p_corrected"].dropna(), ref[holm["p_raw"].notna().to_numpy()], rtol=1e-12)


def test_unknown_families_rule_is_refused():
    with pytest.raises(ValueError, match="families must be one of column, table"):
        arch_tests(study(), families="row")


def test_datasets_are_compared_on_the_papers_lenet_when_a_study_has_it():
    """Issue 13: the paper's LeNet is ShrinkBench's (``lenet5-shrinkbench``); a study with both
    LeNets (docs/reproduction.md's: the classic one at ratio 50 only) takes the MNIST-like sets
    on the paper's, a study of the classic LeNet-5 alone on that one."""
    rng = np.random.default_rng(3)
    rows = [dict(dataset=d, arch=a, method="mp", ratio=t, model=i, distribution="nominal",
                 alpha=0.9 + 0.01 * t + rng.normal(0, 0.05))
            for d, a, ratios in (("mnist", "lenet5-shrinkbench", (2.0, 4.0, 10.0)),
                                 ("mnist", "lenet5", (10.0,)),
                                 ("cifar10", "resnet56", (2.0, 4.0, 10.0)))
            for t in ratios for i in range(4)]
    both = pd.DataFrame(rows)
    assert dataset_archs(both)["mnist"] == "lenet5-shrinkbench"
    long = ratio_tests(both, "dataset").long
    assert set(long.query("dataset == 'mnist'")["arch"]) == {"lenet5-shrinkbench"}
    assert len(long.query("dataset == 'mnist'")) == 2  # 2 vs 4, 4 vs 10 on the paper's LeNet
    assert set(dataset_tests(both).long["arch_a"]) == {"lenet5-shrinkbench"}
    classic = both[both["arch"] != "lenet5-shrinkbench"]
    assert dataset_archs(classic)["mnist"] == "lenet5"
    assert set(dataset_tests(classic).long["arch_a"]) == {"lenet5"}


def test_the_families_take_their_names_and_orders_as_arguments():
    """stats holds no list of names: the orders given are the ones used, so a caller with other
    names (or a record added to the catalog later) gets its own order."""
    f = study()
    sizes = stats.arch_tests(f, ("resnet56", "resnet20"), families="table").long
    assert set(sizes["comparison"]) == {"resnet56 vs resnet20"}
    assert stats.arch_tests(f, ("resnet20", "resnet56")).long["comparison"].iloc[0] == \
        "resnet20 vs resnet56"
    unordered = stats.ratio_tests(f, "arch").table  # no levels given: sorted
    assert list(unordered.columns) == ["lenet5", "resnet20", "resnet56"]
    reordered = stats.ratio_tests(f, "arch", levels={"arch": ("resnet56", "resnet20")}).table
    assert list(reordered.columns) == ["resnet56", "resnet20", "lenet5"]
    pairs = stats.method_tests(f, order=("up", "mp")).long
    assert set(pairs["comparison"]) == {"up vs mp"}
    assert stats.method_tests(f, leave_to_mp_vs_up=("mp", "up")).long.empty
    assert stats.dataset_archs(f, {"mnist": ("x", "lenet5"), "cifar10": ("resnet56",)}) == \
        {"mnist": "lenet5", "cifar10": "resnet56"}
    orders = family_orders()
    assert isinstance(orders, stats.FamilyOrders) and orders.mp_vs_up == ("mp", "up")
    assert stats.all_families(f, orders).keys() == all_families(f).keys()


def test_matched_cells_leave_mp_vs_up_to_its_own_family():
    """A cell of MP, UP and MP kept to UP's count tests the two matched pairs only; MP vs UP
    stays in the across-architecture family; other cells are as without matched methods."""
    rng = np.random.default_rng(0)
    rows = [dict(dataset="c", arch=arch, method=m, ratio=r, distribution="nominal", model=i,
                 alpha=rng.normal(1, .1))
            for arch, meths in (("r20", ("mp", "up")), ("r32", ("mp", "up", "mp-at-up")),
                                ("r56", ("mp", "gp", "up", "rp", "mp-at-up")))
            for m in meths for r in (20.0, 50.0) for i in range(5)]
    a = pd.DataFrame(rows)
    order = ("mp", "gp", "up", "rp", "mp-at-up")
    got = stats.method_tests(a, order=order, leave_to_mp_vs_up=("mp", "up"),
                             matched=("mp-at-up",))
    table = got.table.reset_index()
    assert set(table["arch"]) == {"r32", "r56"}
    assert family_orders().matched == ("mp-at-up",)
    assert list(table.loc[table["arch"] == "r32", "comparison"]) == ["mp vs mp-at-up",
                                                                      "up vs mp-at-up"]
    r56 = a[(a["arch"] == "r56") & (a["method"] != "mp-at-up")]
    plain = stats.method_tests(r56, order=order, leave_to_mp_vs_up=("mp", "up"))
    rows = got.table.loc[("c", "r56")]
    pd.testing.assert_frame_equal(rows.iloc[:6], plain.table.loc[("c", "r56")])  # the paper's 6
    assert list(rows.index.get_level_values("comparison")[6:]) == ["mp vs mp-at-up",
                                                                   "up vs mp-at-up"]
    sizes = got.long.groupby("family")["family_size"].first()
    assert sizes[sizes.index.str.startswith("matched methods|")].eq(2).all()
    assert sizes[sizes.index.str.startswith("methods|dataset=c|arch=r56")].eq(6).all()
