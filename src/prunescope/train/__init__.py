"""prunescope.train: the SPEC 4 training loop, recipes and checkpoints (docs/architecture.md)."""
from prunescope._lazy import lazy_exports

#: ``{public name: the submodule that defines it}``, imported on first use
_EXPORTS = {name: module for module, names in (
    ("checkpoint", ("CheckpointError", "load_checkpoint", "load_state_dict", "save_checkpoint",
                    "sidecar_path")),
    ("loop", ("FitResult", "TrainingDiverged", "data_generator", "derive_seed", "evaluate", "fit",
              "predict")),
    ("recipe", ("Recipe",)),
    ("run", ("TrainRun", "device_splits", "train_on_dataset")),
) for name in names}
__all__ = list(_EXPORTS)
__getattr__, __dir__ = lazy_exports(globals(), _EXPORTS)
