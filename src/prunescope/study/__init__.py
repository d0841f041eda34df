"""prunescope.study: TOML spec -> plan -> packs -> executor -> SQLite store (docs/studies.md).

``load_spec(path)`` validates a study, ``make_plan(spec)`` expands it into content-addressed
jobs, ``run_study(spec)`` runs what is not done yet (local or Ray), ``load_results(path)`` gives
the tidy per-class frame the analysis and the report consume.
"""
from prunescope._lazy import lazy_exports

#: ``{public name: the submodule that defines it}``, imported on first use
_EXPORTS = {name: module for module, names in (
    ("plan", ("KINDS", "RESULTS_VERSION", "Job", "Plan", "estimate_work", "job_id", "make_plan",
              "model_seed")),
    ("results", ("AGREEMENT_COLUMNS", "FRAME_COLUMNS", "StudyResults", "export_results",
                 "load_results", "read_predictions")),
    ("run", ("RunSummary", "StudyLocked", "run_study")),
    ("spec", ("Cell", "SpecError", "StudySpec", "load_spec", "parse_spec")),
    ("store", ("SCHEMA_VERSION", "JobResult", "Store", "StoreVersionError")),
) for name in names}
__all__ = list(_EXPORTS)
__getattr__, __dir__ = lazy_exports(globals(), _EXPORTS)
