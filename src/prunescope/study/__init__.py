"""prunescope.study: TOML spec -> plan -> packs -> executor -> SQLite store (docs/studies.md).

``load_spec(path)`` validates a study, ``make_plan(spec)`` expands it into content-addressed
jobs, ``run_study(spec)`` runs what is not done yet (local or Ray), ``load_results(path)`` gives
the tidy per-class frame the analysis and the report consume.
"""
from prunescope._lazy import lazy_exports

#: ``{public name: the submodule that defines it}``, imported on first use
_EXPORTS = {
    "AGREEMENT_COLUMNS": "results",
    "FRAME_COLUMNS": "results",
    "KINDS": "plan",
    "RESULTS_VERSION": "plan",
    "SCHEMA_VERSION": "store",
    "Cell": "spec",
    "Job": "plan",
    "JobResult": "store",
    "Plan": "plan",
    "RunSummary": "run",
    "SpecError": "spec",
    "Store": "store",
    "StoreVersionError": "store",
    "StudyLocked": "run",
    "StudyResults": "results",
    "StudySpec": "spec",
    "estimate_work": "plan",
    "export_results": "results",
    "job_id": "plan",
    "load_results": "results",
    "load_spec": "spec",
    "make_plan": "plan",
    "model_seed": "plan",
    "parse_spec": "spec",
    "read_predictions": "results",
    "run_study": "run",
}
__all__ = list(_EXPORTS)
__getattr__, __dir__ = lazy_exports(globals(), _EXPORTS)
