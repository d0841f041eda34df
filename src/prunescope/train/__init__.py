"""prunescope.train: the SPEC 4 training loop, recipes and checkpoints (docs/architecture.md)."""
from prunescope._lazy import lazy_exports

#: ``{public name: the submodule that defines it}``, imported on first use
_EXPORTS = {
    "CheckpointError": "checkpoint",
    "FitResult": "loop",
    "Recipe": "recipe",
    "TrainRun": "run",
    "TrainingDiverged": "loop",
    "data_generator": "loop",
    "derive_seed": "loop",
    "evaluate": "loop",
    "fit": "loop",
    "load_checkpoint": "checkpoint",
    "load_state_dict": "checkpoint",
    "predict": "loop",
    "save_checkpoint": "checkpoint",
    "sidecar_path": "checkpoint",
    "device_splits": "run",
    "train_on_dataset": "run",
}
__all__ = list(_EXPORTS)
__getattr__, __dir__ = lazy_exports(globals(), _EXPORTS)
