"""render_report on synthetic studies: files, embedded HTML, notices, annotated numbers."""
from __future__ import annotations

import base64
import re
import subprocess
import sys
import warnings

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from matplotlib.collections import PathCollection, PolyCollection
from matplotlib.colors import to_hex
from report_synth import Cell, multi_method, paper_grid, synthetic_results

from prunescope import analysis, metrics
from prunescope.report import METHOD_COLORS, analyse, factor_groups, figures, render_report


def _annotations(fig) -> list[dict[str, float]]:
    """Parsed ``alpha_hat, r2, A_bar`` of every scatter panel of ``fig``, in panel order."""
    out = []
    for ax in fig.axes:
        for text in ax.texts:
            if text.get_gid() == figures.ANNOTATION_GID:
                vals = [float(v) for v in re.findall(r"= (-?[\d.]+)", text.get_text())]
                out.append({"alpha_hat": vals[0], "r2": vals[1], "A_bar": vals[2] / 100})
    return out


def test_multi_method_writes_every_figure_as_png_and_pdf(multi_report):
    figs = multi_report.parent / "figures"
    stems = {p.stem for p in figs.iterdir()}
    expected = {"scatter_method-cifar10-resnet56", "boxplot_method-cifar10-resnet56",
                "ci_method-cifar10-resnet56", "accuracy_alpha",
                "prune_potential_cifar10-resnet56", "error_vs_ratio_cifar10-resnet56"}
    assert stems == expected
    wide = pd.read_csv(multi_report.parent / "tables" / "alpha_by_distribution.csv")
    assert list(wide.columns[4:]) == ["nominal", "contrast-5", "gaussian_noise-3"]
    assert len(wide) == 4 * 3
    for stem in expected:
        png, pdf = figs / f"{stem}.png", figs / f"{stem}.pdf"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000
        assert pdf.read_bytes()[:5] == b"%PDF-" and pdf.stat().st_size > 5000


def test_tables_written_in_three_formats(multi_report):
    tables = multi_report.parent / "tables"
    for name in ("dense_accuracy", "recall_variance", "alpha_ci", "pooled_alpha", "coverage",
                 "prune_potential", "excess_error", "pvalues_methods", "alpha_by_distribution"):
        for ext in (".md", ".csv", ".tex"):
            assert (tables / f"{name}{ext}").stat().st_size > 0, f"{name}{ext}"
    ci = pd.read_csv(tables / "alpha_ci.csv")
    assert set(ci["label"]) <= {"<", ">", "?"} and len(ci) == 4 * 3
    assert (ci["99% CI low"] <= ci["mean α"]).all() and (ci["mean α"] <= ci["99% CI high"]).all()
    md = (tables / "alpha_ci.md").read_text()
    assert md.count("\n|") == len(ci) + 2  # header, rule, one line per row
    assert re.search(r"\| cifar10 \| resnet56 \| rp \| 50 \| nominal \| [0-9.]+ \| 4 \|", md)
    assert "\\begin{tabular}" in (tables / "alpha_ci.tex").read_text()


def test_html_embeds_every_figure_and_nothing_external(multi_report):
    page = multi_report.read_text(encoding="utf-8")
    pngs = sorted((multi_report.parent / "figures").glob("*.png"))
    uris = re.findall(r'<img src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    assert len(uris) == len(pngs) == 6
    embedded = {base64.b64decode(u) for u in uris}
    assert all(p.read_bytes() in embedded for p in pngs)
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:|//)""", page, re.I)
    assert "http://" not in page and "https://" not in page
    assert "<script" not in page and "<link" not in page and "url(" not in page


def test_html_states_spec_and_version_and_links_them(multi_report):
    page = multi_report.read_text(encoding="utf-8")
    assert '<section id="spec">' in page and '<section id="provenance">' in page
    assert "a &lt;tag&gt; &amp; an ampersand" in page  # the TOML text, escaped
    assert "prunescope 9.8.7-test" in page
    n_items = page.count("<figure ") + page.count('<div id="tab-')
    assert page.count('from the <a href="#spec">study spec</a>') >= n_items > 10


def test_scatter_annotation_equals_pooled_alpha(multi_frame):
    nominal = multi_frame[multi_frame["distribution"] == "nominal"]
    pooled = metrics.pooled_alpha(metrics.pair_with_dense(metrics.per_class(nominal)))
    an = analyse(multi_frame)
    (group,) = factor_groups(an.alphas[["dataset", "arch", "method"]].drop_duplicates())
    fig = figures.scatter_matrix(group.select(an.paired), group.select(an.pooled), group.factor,
                                 group.title)
    try:
        notes = _annotations(fig)
        ratios = sorted(pooled["ratio"].unique())
        levels = list(group.levels)
        assert len(notes) == len(ratios) * len(levels)
        for k, note in enumerate(notes):  # panels are row-major: ratio rows, method columns
            row = pooled[(pooled["ratio"] == ratios[k // len(levels)])
                         & (pooled["method"] == levels[k % len(levels)])].iloc[0]
            assert note["alpha_hat"] == pytest.approx(row["alpha_hat"], abs=5e-4)
            assert note["r2"] == pytest.approx(row["r2"], abs=5e-4)
            assert note["A_bar"] == pytest.approx(row["A_bar"], abs=5e-4)
    finally:
        plt.close(fig)


def _worked_example(models: int) -> pd.DataFrame:
    """SPEC 2 worked example (R 0.9/0.7 -> 0.7/0.5, alpha = 4/3) for ``models`` identical models."""
    rows = []
    for m in range(models):
        for method, ratio, correct in (("dense", 1.0, (9, 7)), ("mp", 4.0, (7, 5))):
            for c in (0, 1):
                rows.append({"dataset": "mnist", "arch": "lenet5", "method": method,
                             "ratio": ratio, "model": m, "distribution": "nominal", "cls": c,
                             "support": 10, "predicted": 10, "correct": correct[c]})
    return pd.DataFrame(rows).astype({"support": "int64", "predicted": "int64",
                                      "correct": "int64"})


def test_scatter_annotation_of_the_worked_example_is_four_thirds():
    an = analyse(_worked_example(models=3))
    (group,) = factor_groups(an.alphas[["dataset", "arch", "method"]].drop_duplicates())
    fig = figures.scatter_matrix(an.paired, an.pooled, group.factor, group.title)
    try:
        (note,) = _annotations(fig)
    finally:
        plt.close(fig)
    assert note["alpha_hat"] == 1.333 and note["r2"] == 1.0 and note["A_bar"] == 0.6


def test_single_seed_study_renders_without_cis(tmp_path):
    frame = synthetic_results(multi_method()[:2], n_models=1, ratios=(2.0, 20.0))
    page = render_report(frame, tmp_path, spec_text="x = 1").read_text(encoding="utf-8")
    assert "Every cell has a single model (one seed)" in page
    assert "No confidence intervals" in page
    stems = {p.stem for p in (tmp_path / "figures").glob("*.png")}
    assert not any(s.startswith("ci_") for s in stems)
    assert {"scatter_method-cifar10-resnet56", "boxplot_method-cifar10-resnet56"} <= stems
    assert not (tmp_path / "tables" / "alpha_ci.csv").exists()
    assert not list((tmp_path / "tables").glob("pvalues_*"))


def test_partial_study_lists_what_is_missing(multi_frame, tmp_path):
    nominal = multi_frame[multi_frame["distribution"] == "nominal"]
    # model 3 of RP at 50x has not been evaluated yet
    gone = (nominal["method"] == "rp") & (nominal["ratio"] == 50.0) & (nominal["model"] == 3)
    frame = nominal[~gone]
    jobs = pd.DataFrame({
        "kind": ["train", "prune_finetune", "evaluate", "prune_finetune"],
        "dataset": "cifar10", "arch": "resnet56", "method": ["dense", "mp", "rp", "rp"],
        "ratio": [1.0, 2.0, 50.0, 50.0], "model": [0, 0, 3, 3], "seed": [1000, 1000, 1003, 1003],
        "distribution": [None, None, "nominal", None],
        "status": ["done", "done", "pending", "failed"],
    })
    page = render_report(frame, tmp_path, jobs=jobs).read_text(encoding="utf-8")
    assert "The study is not finished: 2 of 4 jobs are not done" in page
    assert "Partial results: 1 of 12 cells have fewer pruned models than dense models" in page
    missing = pd.read_csv(tmp_path / "tables" / "missing_jobs.csv")
    assert sorted(missing["status"]) == ["failed", "pending"]
    cov = pd.read_csv(tmp_path / "tables" / "coverage.csv")
    rp50 = cov[(cov["method"] == "rp") & (cov["ratio"] == 50.0)].iloc[0]
    assert (rp50["models"], rp50["dense models"]) == (3, 4)
    assert "Only the nominal test distribution" in page
    assert "No spec text was given" in page


def test_pruned_rows_without_dense_parent_are_left_out_with_a_notice(multi_frame, tmp_path):
    frame = multi_frame[~((multi_frame["method"] == "dense") & (multi_frame["model"] == 0))]
    page = render_report(frame, tmp_path).read_text(encoding="utf-8")
    assert "pruned rows of 1 model(s) have no evaluated dense parent" in page


def test_empty_and_dense_only_frames_are_clear_errors(multi_frame, tmp_path):
    with pytest.raises(ValueError, match="results frame is empty"):
        render_report(multi_frame.iloc[:0], tmp_path)
    with pytest.raises(ValueError, match="only dense models"):
        render_report(multi_frame[multi_frame["method"] == "dense"], tmp_path)
    with pytest.raises(ValueError, match="lacks column"):
        render_report(multi_frame.drop(columns="correct"), tmp_path)
    with pytest.raises(ValueError, match="no results on the nominal distribution"):
        render_report(multi_frame, tmp_path, nominal="clean")


def test_level_table_for_iterative_methods(tmp_path):
    frame = synthetic_results([Cell("cifar10", "resnet20", "lth")], n_models=3,
                              ratios=(1.25, 1.5625, 1.953125), levels=True,
                              distributions=("nominal", "contrast-5"))
    render_report(frame, tmp_path)
    levels = pd.read_csv(tmp_path / "tables" / "levels.csv")
    assert list(levels["level"]) == [1, 2, 3]
    assert levels["achieved ratio"].is_monotonic_increasing
    assert set(levels["label"]) <= {"<", ">", "?"}
    # one prune-potential curve per distribution over all levels (the level is not a curve key)
    potential = pd.read_csv(tmp_path / "tables" / "prune_potential.csv")
    assert sorted(potential["distribution"]) == ["contrast-5", "nominal"]


def test_level_table_lists_structured_methods_per_ratio(tmp_path):
    frame = synthetic_results([Cell("cifar10", "resnet20", "chip"),
                               Cell("cifar10", "resnet20", "mp")], n_models=3, ratios=(2.0, 4.0))
    render_report(frame, tmp_path)
    levels = pd.read_csv(tmp_path / "tables" / "levels.csv")
    assert list(zip(levels["method"], levels["ratio"])) == [("chip", 2.0), ("chip", 4.0)]
    assert levels["level"].isna().all() and (levels["models"] == 3).all()


def test_factor_groups_of_the_paper_grid():
    cells = pd.DataFrame([(c.dataset, c.arch, c.method) for c in paper_grid()],
                         columns=["dataset", "arch", "method"])
    groups = {g.slug: g for g in factor_groups(cells)}
    assert groups["method-cifar10-resnet56"].levels == ("mp", "up", "gp", "rp")
    assert groups["arch-cifar10-mp"].levels == ("resnet20", "resnet32", "resnet44", "resnet56",
                                                 "resnet110")
    assert groups["dataset-lenet5-mp"].levels == ("mnist", "fashion-mnist")
    assert groups["dataset-resnet56-up"].levels == ("cifar10", "cifar100")
    covered = {tuple(r) for g in groups.values() for r in g.select(cells).to_numpy()}
    assert covered == set(map(tuple, cells.to_numpy()))
    (single,) = factor_groups(cells.iloc[:1])
    assert single.levels == ("mp",) and single.factor == "method"


def test_table_and_figure_orders_are_one():
    """SPEC 6: the p-value tables (analysis.level_order()) and the figures (report.style) list
    architectures, datasets and methods in the same order: the known names in that order, then
    any other name sorted; the dense model first among the methods, and every method of the
    order with its fixed colour and name."""
    from prunescope.analysis import level_order
    from prunescope.report import style
    from prunescope.stats.families import _factorize

    for factor, known in level_order().items():
        levels = [*reversed(known), "zz-new", "aa-new"]
        table = list(_factorize(pd.Series(levels), factor, level_order())[1])
        assert style.ordered(factor, levels) == table == [*known, "aa-new", "zz-new"]
    assert style.ordered("method", ["rp", "new", "dense", "mp"]) == ["dense", "mp", "rp", "new"]
    assert set(style.known_order("method")) <= set(style.METHOD_COLORS) & set(style.METHOD_LABELS)


def test_datasets_side_by_side_each_on_its_architecture():
    """SPEC 6: scatter/box matrices with columns = the varied factor, dataset included: per
    method, MNIST / Fashion-MNIST (LeNet-5) and CIFAR-10 / CIFAR-100 (ResNet-56) in one matrix,
    the pairing of analysis.dataset_archs that the by-dataset test families use (SPEC 5)."""
    cells = pd.DataFrame([(c.dataset, c.arch, c.method) for c in paper_grid()],
                         columns=["dataset", "arch", "method"])
    groups = {g.slug: g for g in factor_groups(cells)}
    grid = groups["dataset-mp"]
    assert grid.levels == ("mnist", "fashion-mnist", "cifar10", "cifar100")
    assert grid.own_arch  # each dataset on its dataset_archs architecture, as selected here:
    assert grid.select(cells)[["dataset", "arch"]].drop_duplicates().to_numpy().tolist() == [
        ["mnist", "lenet5"], ["fashion-mnist", "lenet5"], ["cifar10", "resnet56"],
        ["cifar100", "resnet56"]]
    assert "lenet5" in grid.title and "resnet56" in grid.title
    assert "dataset-up" not in groups  # UP: CIFAR-10/100 on ResNet-56 is dataset-resnet56-up
    order = [g.slug for g in factor_groups(cells) if g.factor == "dataset"]
    assert order[0] == "dataset-mp"
    frame = synthetic_results([Cell("mnist", "lenet5", "mp"), Cell("cifar10", "resnet20", "mp"),
                               Cell("cifar10", "resnet56", "mp")], n_models=3, ratios=(2.0, 10.0))
    an = analyse(frame)
    (group,) = [g for g in factor_groups(an.alphas[["dataset", "arch", "method"]].drop_duplicates())
                if g.own_arch]
    assert group.levels == ("mnist", "cifar10")
    fig = figures.scatter_matrix(group.select(an.paired), group.select(an.pooled), group.factor,
                                 group.title)
    try:
        notes = _annotations(fig)
    finally:
        plt.close(fig)
    pooled = an.pooled[an.pooled["arch"] != "resnet20"].sort_values(["ratio", "dataset"],
                                                                     ascending=[True, False])
    assert [n["alpha_hat"] for n in notes] == pytest.approx(pooled["alpha_hat"].tolist(), abs=5e-4)


def test_dense_panels_switch_to_hexbin_and_method_colours_are_fixed():
    frame = synthetic_results([Cell("cifar100", "resnet56", "up"), Cell("cifar10", "resnet56", "up")],
                              n_models=25, ratios=(4.0,))
    an = analyse(frame)
    (group,) = factor_groups(an.alphas[["dataset", "arch", "method"]].drop_duplicates())
    assert group.factor == "dataset" and group.levels == ("cifar10", "cifar100")
    fig = figures.scatter_matrix(group.select(an.paired), group.select(an.pooled), group.factor,
                                 group.title)
    try:
        small, big = fig.axes[:2]  # 250 points vs 2500 > HEXBIN_THRESHOLD
        assert any(isinstance(c, PathCollection) for c in small.collections)
        assert any(isinstance(c, PolyCollection) for c in big.collections)
        fit_colours = {to_hex(line.get_color()) for ax in fig.axes for line in ax.lines
                       if line.get_linestyle() == "-" and line.get_linewidth() > 1.5}
        assert fit_colours == {METHOD_COLORS["up"].lower()}
    finally:
        plt.close(fig)


def test_report_package_does_not_import_torch():
    code = "import sys, prunescope.report; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_method_colours_cover_the_known_methods():
    assert set(METHOD_COLORS) >= {"dense", "mp", "gp", "up", "rp", "lth", "chip", "l1-filter"}
    assert len(set(METHOD_COLORS.values())) == len(METHOD_COLORS)
    assert np.all([re.fullmatch(r"#[0-9A-Fa-f]{6}", c) for c in METHOD_COLORS.values()])


def test_unbalanced_test_set_becomes_a_notice_not_a_warning(tmp_path):
    frame = synthetic_results(multi_method()[:1], n_models=2, ratios=(4.0,))
    frame.loc[frame["cls"] == 0, "support"] += 50  # class 0 has more test samples
    with warnings.catch_warnings():
        warnings.simplefilter("error", metrics.ImbalanceWarning)
        page = render_report(frame, tmp_path).read_text(encoding="utf-8")
    assert "Unbalanced test set: 4 of 4 evaluations have unequal class supports" not in page
    # issue 18: in a reader's terms, the class sizes it found, no column or function name
    sizes = frame[frame["distribution"] == "nominal"].groupby("cls")["support"].first()
    notice = re.search(r"Unbalanced test set:[^<]*", page).group(0)
    assert f"between {sizes.min():,} and {sizes.max():,} images" in notice
    assert "'balanced'" not in notice and "model_alpha" not in notice and "(..." not in notice


def test_paper_grid_p_value_tables_have_one_family_per_comparison():
    """SPEC 5 tests 1 and 4 on the paper's grid (SPEC 4): MP vs UP appears for ResNet-20/32/44/110
    only in the MP-vs-UP family over every architecture, the method-pair table is CIFAR-10/
    ResNet-56's alone, and consecutive ratios within a dataset are one table per method with
    the datasets (each on its architecture) as columns; rows and columns in the figures' order."""
    frame = synthetic_results(paper_grid(), n_models=3, ratios=(2.0, 10.0))
    fams = analysis.pvalue_families(analyse(frame))  # as the report's tables section
    methods = fams["methods"].long
    assert set(zip(methods["dataset"], methods["arch"])) == {("cifar10", "resnet56")}
    assert (methods["family_size"] == 6).all()  # the paper's column: 6 pairs at one ratio
    table = analysis.pvalue_families(analyse(frame), families="table")["methods"].long
    assert (table["family_size"] == 12).all()  # the whole-table option: 6 pairs x 2 ratios
    mvu = fams["mp_vs_up"].table
    assert list(mvu.loc["cifar10"].index.get_level_values("arch")) == [
        "resnet20", "resnet32", "resnet44", "resnet56", "resnet110"]
    by_dataset = fams["ratios_by_dataset"].table
    assert list(by_dataset.columns) == ["mnist", "fashion-mnist", "cifar10", "cifar100"]
    assert list(by_dataset.index.get_level_values("method").unique()) == ["mp", "up", "gp", "rp"]
    by_arch = fams["ratios_by_arch"].table
    assert list(by_arch.columns) == ["lenet5", "resnet20", "resnet32", "resnet44", "resnet56",
                                     "resnet110"]
