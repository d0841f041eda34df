"""prunescope.analysis: the frames the report lays out, computed once, without torch or
matplotlib (DESIGN: store -> analysis -> report)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "report"))
from report_synth import multi_method, synthetic_results  # noqa: E402

from prunescope import analysis, metrics, stats  # noqa: E402


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    return synthetic_results(multi_method()[:2], n_models=3, ratios=(2.0, 10.0),
                             distributions=("nominal", "contrast-5"), seed=5)


def test_model_alphas_is_the_metrics_pipeline(frame):
    """The one alpha computation of the report and the audit: per_class -> pair_with_dense ->
    model_alpha, every distribution of the frame, extra columns riding along."""
    paired, alphas = analysis.model_alphas(frame)
    ref = metrics.intensification(frame, "recall")
    pd.testing.assert_frame_equal(paired, ref)
    pd.testing.assert_frame_equal(alphas, metrics.model_alpha(ref))
    assert set(alphas["distribution"]) == {"nominal", "contrast-5"}
    assert "achieved_ratio" in alphas.columns


def test_analyse_and_its_families_are_the_nominal_alphas(frame):
    an = analysis.analyse(frame)
    _, alphas = analysis.model_alphas(frame[frame["distribution"] == "nominal"])
    pd.testing.assert_frame_equal(an.alphas, alphas)
    fams = analysis.pvalue_families(an, families="table")
    ref = stats.all_families(alphas, analysis.family_orders(), families="table")
    for name in ref:
        pd.testing.assert_frame_equal(fams[name].long, ref[name].long)
    single = analysis.analyse(frame[frame["model"] == 0])
    assert single.ci is None and analysis.pvalue_families(single) == {}


def test_shift_views_use_the_achieved_ratio_and_nominal_only_has_none(frame):
    an = analysis.analyse(frame)
    assert analysis.analyse_shift(frame[frame["distribution"] == "nominal"], an) is None
    shift = analysis.analyse_shift(frame, an, delta=0.5)
    assert shift.distributions == ["nominal", "contrast-5"] and shift.delta == 0.5
    pot = metrics.prune_potential(metrics.error_frame(frame))
    pd.testing.assert_frame_equal(shift.potential, pot)
    assert (shift.potential["potential"] != shift.potential["potential_requested"]).any()
    summary = shift.potential_summary.set_index(["method", "distribution"])
    by_hand = pot.groupby(["method", "distribution"])["removed_pct"].mean()
    assert summary["mean"].to_numpy() == pytest.approx(by_hand.loc[summary.index].to_numpy(), rel=1e-12)
    assert "achieved_ratio" not in shift.errors.columns  # error curves at the requested ratio
    assert set(shift.alpha["distribution"]) == {"nominal", "contrast-5"}
    with pytest.raises(ValueError, match="looks like a fraction"):
        analysis.analyse_shift(frame, an, delta=0.005)


def test_agreement_ci_validates_and_bounds():
    rows = pd.DataFrame({"dataset": "d", "arch": "a", "method": "mp", "ratio": 2.0,
                         "model": [0, 1, 2], "distribution": "nominal", "agreement": [0.9, 0.95, 1.0]})
    dense = pd.DataFrame({"dataset": "d", "arch": "a", "method": "dense", "model": [0, 1, 2],
                          "distribution": "nominal", "support": 1000})  # 1000 test images each
    ci = analysis.agreement_ci(rows, dense)
    assert ci["mean"].iloc[0] == pytest.approx(0.95) and ci["n"].iloc[0] == 3
    assert 0 < ci["ci_low"].iloc[0] < 0.95 < ci["ci_high"].iloc[0] <= 1  # bounded (issue 18)
    assert analysis.agreement_ci(rows.assign(agreement=np.nan), dense) is None
    with pytest.raises(ValueError, match="fraction in"):
        analysis.agreement_ci(rows.assign(agreement=[0.9, 95.0, 1.0]), dense)
    with pytest.raises(ValueError, match="lacks column"):
        analysis.agreement_ci(rows.drop(columns="model"), dense)
    with pytest.raises(ValueError, match="without an evaluated dense model"):
        analysis.agreement_ci(rows, dense[dense["model"] != 2])


def test_analysis_imports_neither_torch_nor_matplotlib():
    code = ("import sys, prunescope.analysis; "
            "bad = [m for m in ('torch', 'matplotlib') if m in sys.modules]; assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_imbalance_tests_are_one_sided_t_tests_corrected_per_ratio_column():
    """analysis.imbalance_tests (docs/underrepresented.md): per cell, H_a 'the long-tailed models
    have the larger E[alpha]' by Student's independent t-test (scipy), Bonferroni over every row
    of one ratio column (here the lt10 and lt100 rows of ratio 4)."""
    import scipy.stats as sps

    from prunescope.analysis import imbalance_tests

    rng = np.random.default_rng(3)
    draws = {"mnist": 1.0, "mnist-lt10": 1.2, "mnist-lt100": 1.5}
    rows = [dict(dataset=d, arch="lenet5", method="mp", ratio=r, distribution="nominal",
                 model=m, alpha=mu + 0.1 * rng.standard_normal())
            for d, mu in draws.items() for r in (4.0, 20.0) for m in range(5)]
    alphas = pd.DataFrame(rows)
    splits = pd.DataFrame(dict(dataset=list(draws), base_dataset="mnist",
                               imbalance_ratio=[1.0, 10.0, 100.0]))
    out = imbalance_tests(alphas, splits)
    assert len(out) == 4 and set(out["dataset"]) == {"mnist"}
    for r in out.itertuples():
        label = r.comparison.split(" vs ")[0]
        imb = alphas.loc[(alphas.dataset == label) & (alphas.ratio == r.ratio), "alpha"]
        bal = alphas.loc[(alphas.dataset == "mnist") & (alphas.ratio == r.ratio), "alpha"]
        ref = sps.ttest_ind(imb, bal, alternative="greater")
        assert r.t == pytest.approx(ref.statistic) and r.p_raw == pytest.approx(ref.pvalue)
        assert r.p_corrected == pytest.approx(min(1.0, 2 * ref.pvalue))  # 2 rows per column
        assert r.mean_diff == pytest.approx(imb.mean() - bal.mean())
    assert out.groupby("family").size().tolist() == [2, 2]
