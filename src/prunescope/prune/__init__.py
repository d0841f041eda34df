"""prunescope.prune: one-shot unstructured pruning (SPEC 3; see docs/pruning.md).

``prunable`` picks the weights a criterion may remove, ``data_gradients`` computes the data-loss
gradient GP and UP need, ``score`` ranks weights by MP, GP, UP or RP, ``make_masks`` keeps the
top-k to an exact compression ratio (global or per-layer scope), ``prune_model`` does it all for
one model under a :class:`~prunescope.catalog.protocol.PruneOptions` (the default, or the
authors' code's rules: docs/pruning.md, "The paper-code protocol").
"""
from prunescope.catalog.ratios import UnreachableRatioError, keep_count
from prunescope.choices import GRADIENT_MODES, SCOPES
from prunescope.prune.gradients import data_gradients
from prunescope.prune.interop import from_torch_prune, to_torch_prune
from prunescope.prune.iterative import (
    LevelRecord,
    RewindCapture,
    imp_keep_count,
    imp_schedule,
    iterative_magnitude_pruning,
)
from prunescope.prune.masks import (
    MaskResult,
    apply_masks,
    load_masks,
    make_masks,
    masks_from_scores,
    save_masks,
)
from prunescope.prune.oneshot import prune_model
from prunescope.prune.params import count_parameters, prunable
from prunescope.prune.scores import recorded_weight_decay, score
from prunescope.prune.channel_scores import chip_scores, l1_filter_scores
from prunescope.prune.narrow import load_structured_checkpoint, structured_masks
from prunescope.prune.structured import (
    StructuredResult,
    structured_meta,
    structured_prune,
    structured_prune_model,
)

__all__ = [
    "LevelRecord",
    "RewindCapture",
    "StructuredResult",
    "chip_scores",
    "imp_keep_count",
    "imp_schedule",
    "iterative_magnitude_pruning",
    "l1_filter_scores",
    "load_structured_checkpoint",
    "structured_masks",
    "structured_meta",
    "structured_prune",
    "structured_prune_model",
    "GRADIENT_MODES",
    "SCOPES",
    "MaskResult",
    "UnreachableRatioError",
    "apply_masks",
    "count_parameters",
    "data_gradients",
    "from_torch_prune",
    "keep_count",
    "load_masks",
    "make_masks",
    "masks_from_scores",
    "prunable",
    "prune_model",
    "recorded_weight_decay",
    "save_masks",
    "score",
    "to_torch_prune",
]
