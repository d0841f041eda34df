"""prunescope.study: TOML spec -> plan -> packs -> executor -> SQLite store (docs/studies.md).

``load_spec(path)`` validates a study, ``make_plan(spec)`` expands it into content-addressed
jobs, ``run_study(spec)`` runs what is not done yet (local or Ray), ``load_results(path)`` gives
the tidy per-class frame the analysis and the report consume.
"""
from prunescope.study.plan import (
    KINDS, RESULTS_VERSION, Job, Plan, estimate_work, job_id, make_plan, model_seed,
)
from prunescope.study.results import (AGREEMENT_COLUMNS, FRAME_COLUMNS, StudyResults,
                                      export_results, load_results, read_predictions)
from prunescope.study.run import RunSummary, StudyLocked, run_study
from prunescope.study.spec import Cell, SpecError, StudySpec, load_spec, parse_spec
from prunescope.study.store import SCHEMA_VERSION, JobResult, Store, StoreVersionError

__all__ = [
    "AGREEMENT_COLUMNS", "FRAME_COLUMNS", "KINDS", "RESULTS_VERSION", "SCHEMA_VERSION", "Cell", "Job", "JobResult",
    "Plan", "RunSummary", "SpecError", "Store", "StoreVersionError", "StudyLocked",
    "StudyResults", "StudySpec", "estimate_work", "export_results", "job_id", "load_results",
    "load_spec", "make_plan", "model_seed", "parse_spec", "read_predictions", "run_study",
]
