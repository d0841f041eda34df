"""What exists, without torch: the pruning methods, the architectures, the test-distribution
grammar, the compression-ratio arithmetic and the protocol options (``protocol``:
``PruneOptions``, ``TrainOptions``) (docs/architecture.md, "The catalog").

Every layer reads these records instead of testing a method's or an architecture's name: a new
method is a score function plus a :class:`~prunescope.catalog.methods.Method` record, a new
architecture a model file plus an :class:`~prunescope.catalog.architectures.Architecture`
record. The catalog imports nothing of prunescope but :mod:`prunescope.errors`; records name
their torch code as ``"module:function"``, imported on first use.
"""
from prunescope.catalog import architectures, distributions, methods, ratios
from prunescope.catalog.architectures import Architecture, architecture
from prunescope.catalog.distributions import CORRUPTIONS, SEVERITIES, Distribution
from prunescope.catalog.methods import Method, method
from prunescope.catalog.ratios import UnreachableRatioError, keep_count

__all__ = ["CORRUPTIONS", "SEVERITIES", "Architecture", "Distribution", "Method",
           "UnreachableRatioError", "architecture", "architectures", "distributions",
           "keep_count", "method", "methods", "ratios"]
