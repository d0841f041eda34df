"""prunescope.metrics: confusion counts -> per-class metrics, balances, intensification, alpha,
prune potential (SPEC 2). Pure NumPy/pandas; never imports torch. See docs/metrics.md."""
from prunescope.metrics.alpha import CELL_KEYS, MODEL_ALPHA_COLUMNS, POOLED_COLUMNS, model_alpha, pooled_alpha
from prunescope.metrics.classwise import (
    CLASSWISE_COLUMNS,
    METRICS,
    PAIRED_COLUMNS,
    ImbalanceWarning,
    correct_share_variance,
    intensification,
    pair_with_dense,
    per_class,
)
from prunescope.metrics.potential import (
    DEFAULT_DELTA,
    ERROR_PARENT_KEYS,
    MIN_DELTA,
    check_delta,
    error_frame,
    excess_error,
    functional_agreement,
    prune_potential,
)
from prunescope.metrics.tidy import (
    COUNT_COLUMNS,
    DENSE_METHOD,
    DENSE_RATIO,
    KEY_COLUMNS,
    NOMINAL,
    PARENT_KEYS,
    confusion_from_predictions,
    from_confusion,
    from_confusions,
    from_predictions,
    key_columns,
    validate,
)

__all__ = [
    "CELL_KEYS", "CLASSWISE_COLUMNS", "COUNT_COLUMNS", "DEFAULT_DELTA", "DENSE_METHOD", "DENSE_RATIO",
    "ERROR_PARENT_KEYS", "ImbalanceWarning", "KEY_COLUMNS", "METRICS", "MIN_DELTA", "MODEL_ALPHA_COLUMNS", "NOMINAL",
    "PAIRED_COLUMNS", "PARENT_KEYS", "POOLED_COLUMNS", "check_delta", "confusion_from_predictions",
    "correct_share_variance",
    "error_frame",
    "excess_error", "from_confusion", "from_confusions", "from_predictions", "functional_agreement",
    "intensification", "key_columns", "model_alpha", "pair_with_dense", "per_class", "pooled_alpha",
    "prune_potential", "validate",
]
