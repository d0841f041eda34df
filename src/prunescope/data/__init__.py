"""prunescope.data: real datasets from offline, verified sources (see docs/data.md and
docs/architecture.md).

``load(name, split)`` gives uint8 NHWC images and int64 labels from a local cache that
``fetch(name)`` fills from the first source that delivers a verified copy.
"""
from prunescope.data.registry import (
    DatasetInfo,
    DatasetStatus,
    FetchError,
    ImageSet,
    cache_root,
    expected,
    fetch,
    info,
    list_datasets,
    load,
    names,
)
from prunescope.data.sources import Progress, SourceError
from prunescope.data.splits import train_val_indices, training_split
from prunescope.data.verify import Expected, VerificationError

__all__ = [
    "DatasetInfo",
    "DatasetStatus",
    "Expected",
    "FetchError",
    "ImageSet",
    "Progress",
    "SourceError",
    "VerificationError",
    "cache_root",
    "expected",
    "fetch",
    "info",
    "list_datasets",
    "load",
    "names",
    "train_val_indices",
    "training_split",
]
