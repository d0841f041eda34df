"""End to end: confusion matrices with a planted intensification -> alpha -> CIs and tests."""
import numpy as np
import pandas as pd

from prunescope.metrics import from_confusions, intensification, model_alpha, pooled_alpha
from prunescope.stats import mean_ci, ratio_tests

GAIN = {2.0: 0.6, 4.0: 1.0, 10.0: 1.6}  # recall gaps scaled by this factor at each ratio


def planted_study(n_models: int = 8, n_classes: int = 10, per_class: int = 200, seed: int = 1) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    cms, keys = [], []
    for m in range(n_models):
        gaps = rng.integers(-30, 31, n_classes)
        gaps -= int(round(gaps.mean()))
        gaps[-1] -= gaps.sum()  # sum of gaps 0: accuracy unchanged by the scaling
        for method, t in [("dense", 1.0), *(("mp", r) for r in GAIN)]:
            k = 1.0 if method == "dense" else GAIN[t]
            correct = np.clip(np.round(150 + k * gaps + (rng.integers(-2, 3, n_classes) if t > 1 else 0)), 0, per_class)
            cm = np.zeros((n_classes, n_classes), dtype=np.int64)
            idx = np.arange(n_classes)
            cm[idx, idx] = correct
            cm[idx, (idx + 1) % n_classes] = per_class - correct
            cms.append(cm)
            keys.append(dict(dataset="cifar10", arch="resnet20", method=method, ratio=t, model=m))
    return from_confusions(np.stack(cms), pd.DataFrame(keys))


def test_planted_intensification_is_recovered():
    paired = intensification(planted_study())
    alphas = model_alpha(paired)
    ci = mean_ci(alphas).set_index("ratio")
    for t, k in GAIN.items():
        assert abs(ci.loc[t, "mean"] - k) < 0.05
    assert ci.loc[2.0, "label"] == "<" and ci.loc[10.0, "label"] == ">" and ci.loc[4.0, "label"] == "?"
    pooled = pooled_alpha(paired).set_index("ratio")
    assert (pooled["r2"] > 0.95).all() and (pooled["n_models"] == 8).all()
    table = ratio_tests(alphas, "arch").table
    assert (table["resnet20"] < 1e-6).all() and list(table.index.get_level_values("comparison")) == ["2 vs 4", "4 vs 10"]
