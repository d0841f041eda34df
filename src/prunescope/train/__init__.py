"""prunescope.train: the SPEC 4 training loop, recipes and checkpoints (docs/architecture.md)."""
from prunescope.train.checkpoint import (CheckpointError, load_checkpoint, load_state_dict,
                                         save_checkpoint, sidecar_path)
from prunescope.train.loop import (
    FitResult,
    TrainingDiverged,
    data_generator,
    derive_seed,
    evaluate,
    fit,
    predict,
)
from prunescope.train.recipe import Recipe
from prunescope.train.run import TrainRun, device_splits, train_on_dataset

__all__ = [
    "CheckpointError",
    "FitResult",
    "Recipe",
    "TrainRun",
    "TrainingDiverged",
    "data_generator",
    "derive_seed",
    "evaluate",
    "fit",
    "load_checkpoint",
    "load_state_dict",
    "predict",
    "save_checkpoint",
    "sidecar_path",
    "device_splits",
    "train_on_dataset",
]
