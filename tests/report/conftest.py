"""Shared fixtures of the report tests: small synthetic studies rendered once per session."""
from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from report_synth import multi_method, synthetic_results  # noqa: E402

from prunescope.report import render_report  # noqa: E402

SPEC_TEXT = '[study]\nname = "synthetic"\nmodels = 4\n# a <tag> & an ampersand must be escaped\n'
DISTRIBUTIONS = ("nominal", "gaussian_noise-3", "contrast-5")


@pytest.fixture(scope="session")
def multi_frame() -> pd.DataFrame:
    """CIFAR-10 ResNet-56, 4 methods x 3 ratios x 4 models x 10 classes x 3 distributions."""
    return synthetic_results(multi_method(), n_models=4, ratios=(2.0, 10.0, 50.0),
                             distributions=DISTRIBUTIONS, seed=1)


@pytest.fixture(scope="session")
def multi_report(multi_frame, tmp_path_factory) -> Path:
    """report.html of the multi-method study (rendered once for the session)."""
    out = tmp_path_factory.mktemp("multi_report")
    return render_report(multi_frame, out, spec_text=SPEC_TEXT, study_name="synthetic",
                         version="9.8.7-test")
