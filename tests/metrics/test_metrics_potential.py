"""Prune potential, excess error and functional agreement (SPEC 2, Lost in Pruning)."""
import numpy as np
import pandas as pd
import pytest

from prunescope.metrics import (
    error_frame,
    excess_error,
    from_confusion,
    functional_agreement,
    prune_potential,
)

RATIOS = [2.0, 4.0, 10.0, 20.0, 50.0]


def curve(dense: float, pruned: list[float], model: int = 0, distribution: str = "nominal",
          method: str = "mp") -> pd.DataFrame:
    rows = [dict(dataset="d", arch="a", method="dense", ratio=1.0, model=model,
                 distribution=distribution, error=dense)]
    rows += [dict(dataset="d", arch="a", method=method, ratio=t, model=model,
                  distribution=distribution, error=e) for t, e in zip(RATIOS, pruned)]
    return pd.DataFrame(rows)


def test_error_frame_from_counts():
    t = from_confusion(np.array([[8, 2], [1, 9]]), dataset="d", arch="a", method="mp", ratio=2, model=0)
    e = error_frame(t)
    assert len(e) == 1 and e["error"].iloc[0] == pytest.approx(3 / 20) and e["n_samples"].iloc[0] == 20


@pytest.mark.parametrize("pruned, potential, status, n_within", [
    ([0.12, 0.13, 0.15, 0.2, 0.3], 1.0, "none", 0),          # none within 0.5 points of 0.10
    ([0.10, 0.101, 0.103, 0.104, 0.105], 50.0, "all", 5),    # all within (0.105 is exactly at the edge)
    ([0.099, 0.102, 0.1049, 0.11, 0.2], 10.0, "some", 3),    # middle case
    ([0.099, 0.2, 0.104, 0.3, 0.4], 10.0, "some", 2),        # the largest qualifying ratio counts
])
def test_prune_potential_known_answers(pruned, potential, status, n_within):
    out = prune_potential(curve(0.10, pruned))
    assert len(out) == 1
    row = out.iloc[0]
    assert row["potential"] == potential and row["status"] == status and row["n_within"] == n_within
    assert row["n_ratios"] == 5 and row["delta"] == 0.5 and row["dense_error"] == 0.10  # points
    assert row["removed_pct"] == pytest.approx(100 * (1 - 1 / potential), rel=1e-15)
    assert row["potential_requested"] == potential  # no achieved_ratio column: the requested one
    assert "ratio" not in out.columns


def test_prune_potential_delta_is_in_points_and_per_distribution():
    errors = pd.concat([curve(0.10, [0.11, 0.115, 0.12, 0.14, 0.15]),
                        curve(0.30, [0.30, 0.31, 0.40, 0.5, 0.6], distribution="gauss-5")])
    out = prune_potential(errors, delta=2.0).set_index("distribution")
    assert out.loc["nominal", "potential"] == 10.0
    assert out.loc["gauss-5", "potential"] == 4.0
    with pytest.raises(ValueError, match="delta"):
        prune_potential(errors, delta=-0.1)


def test_prune_potential_needs_dense_parent():
    e = curve(0.1, [0.1] * 5)
    with pytest.raises(ValueError, match="no dense parent"):
        prune_potential(e[e["method"] != "dense"])


def test_excess_error_definition():
    errors = pd.concat([curve(0.10, [0.11, 0.12, 0.13, 0.14, 0.15]),
                        curve(0.30, [0.33, 0.36, 0.40, 0.45, 0.60], distribution="shot-3")])
    out = excess_error(errors)
    assert (out["distribution"] == "shot-3").all() and len(out) == 5
    expected = (np.array([0.33, 0.36, 0.40, 0.45, 0.60]) - 0.30) - (np.array([0.11, 0.12, 0.13, 0.14, 0.15]) - 0.10)
    np.testing.assert_allclose(out.sort_values("ratio")["excess_error"], expected, atol=1e-15)


def test_functional_agreement():
    a = np.array([0, 1, 2, 3, 4, 5, 6, 7])
    b = np.array([0, 1, 2, 0, 4, 5, 0, 7])
    assert functional_agreement(a, b) == 0.75
    np.testing.assert_array_equal(functional_agreement(np.stack([a, b]), np.stack([a, a])), [1.0, 0.75])
    with pytest.raises(ValueError, match="equal non-empty shapes"):
        functional_agreement(a, b[:3])


def test_prune_potential_curve_ignores_position_columns():
    """achieved_ratio and level vary along one curve: they must not split it into points."""
    errors = curve(0.10, [0.099, 0.102, 0.1049, 0.11, 0.2])
    errors["achieved_ratio"] = errors["ratio"] * 1.0001
    errors["level"] = np.arange(len(errors))
    out = prune_potential(errors)
    assert len(out) == 1
    assert out["potential_requested"].iloc[0] == 10.0 and out["n_ratios"].iloc[0] == 5
    assert out["potential"].iloc[0] == 10.001  # the achieved ratio (SPEC 2)


@pytest.mark.parametrize("delta, hint", [(0.005, "pass delta=0.5"), (0.02, "pass delta=2"),
                                         (0.099, "looks like a fraction"), (-0.5, ">= 0"),
                                         (float("nan"), ">= 0"), (150.0, "above 100"),
                                         ("half", "a number")])
def test_prune_potential_refuses_a_delta_that_is_no_tolerance_in_points(delta, hint):
    """delta is in percentage points: delta=0.5 is half a point (Lost in Pruning's default);
    a value below 0.1 points looks like a fraction passed by mistake (0.005 for half a point,
    which used to mean that), a negative one or one above 100 points is no tolerance."""
    with pytest.raises(ValueError, match="delta") as err:
        prune_potential(curve(0.10, [0.1] * 5), delta=delta)
    assert hint in str(err.value)


def test_prune_potential_accepts_zero_and_points():
    errors = curve(0.10, [0.10, 0.1009, 0.101, 0.13, 0.2])
    assert prune_potential(errors, delta=0).iloc[0]["potential"] == 2.0
    assert prune_potential(errors, delta=0.1).iloc[0]["potential"] == 10.0  # 0.101 <= 0.10 + 0.001
    assert prune_potential(errors, delta=0.1).iloc[0]["delta"] == 0.1


def test_prune_potential_uses_the_achieved_ratio():
    """SPEC 2: prune potential at the ratio the pruned model achieved (structured methods miss
    the request by up to 2 %), the requested one beside it."""
    errors = curve(0.10, [0.10, 0.101, 0.102, 0.2, 0.3])
    errors["achieved_ratio"] = errors["ratio"].map({1.0: 1.0, 2.0: 1.98, 4.0: 3.93, 10.0: 9.81,
                                                    20.0: 19.7, 50.0: 49.2})
    row = prune_potential(errors).iloc[0]
    assert row["potential"] == 9.81 and row["potential_requested"] == 10.0
    assert row["removed_pct"] == pytest.approx(100 * (1 - 1 / 9.81), rel=1e-15)


def test_removed_fraction_does_not_reverse_the_comparison_a_mean_ratio_does():
    """The issue's example: potentials {2, 50} vs {20, 20}. Mean t: 26 > 20; removed
    fraction: 74 % < 95 %, the order Lost in Pruning reports (SPEC 2)."""
    within = [0.10] * 5
    a = pd.concat([curve(0.10, [0.10, 0.2, 0.2, 0.2, 0.2], model=0, distribution="a"),
                   curve(0.10, within, model=1, distribution="a")])  # potentials 2 and 50
    b = pd.concat([curve(0.10, [0.10, 0.10, 0.10, 0.10, 0.2], model=m, distribution="b")
                   for m in (0, 1)])  # potentials 20 and 20
    out = prune_potential(pd.concat([a, b])).groupby("distribution")[["potential", "removed_pct"]].mean()
    assert out.loc["a", "potential"] == 26.0 and out.loc["b", "potential"] == 20.0
    assert out.loc["a", "removed_pct"] == pytest.approx(74.0) and out.loc["b", "removed_pct"] == pytest.approx(95.0)
    assert out.loc["a", "removed_pct"] < out.loc["b", "removed_pct"]
