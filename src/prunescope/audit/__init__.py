"""Audit a user's own trained classifier: what pruning does to it beyond test accuracy.

``audit(model, train_data, test_data, ...)`` prunes one trained ``nn.Module`` with each method at
each ratio (one-shot from the same dense weights, SPEC 3), optionally fine-tunes with the mask
held, evaluates the dense and every pruned model on every test distribution (SPEC 7), and returns
per-class recall changes, the model-level slope alpha (SPEC 2), the classes hurt most, prune
potential per distribution, functional agreement with the dense model and warnings about results
that should not be read at face value (:mod:`prunescope.study.checks`); it writes the report page.
``audit_checkpoint`` does the same for a checkpoint written by prunescope.

An audit is a one-model study (docs/audit.md): everything is checked before any work, then the
audit plans content-addressed jobs for its one model (a ``source`` job holding the dense model
and its data, ``gradients``, ``prune_finetune`` and ``evaluate`` jobs) and runs them with the
study executor, worker and SQLite store in ``out_dir``. Each pruned model and each evaluation is
kept the moment it finishes; running the same audit again resumes (and retries failed jobs).

Data may be given as ``(x, y)`` arrays or tensors, a ``prunescope.data.ImageSet``, a
``torch.utils.data.Dataset`` of ``(image, label)`` pairs, a ``DeviceImages``, an ``.npz`` file
(keys ``x`` and ``y``) or a folder of such files (concatenated in name order). Images are kept as
uint8 NHWC (the corruptions of SPEC 7 are defined on 8-bit images): uint8 arrays are taken as they
are (NHWC, NCHW or NHW), float arrays must lie in [0, 1] and are rounded to 1/255 steps. The
model receives ``(x / 255 - mean) / std`` in NCHW float32, with ``mean``/``std`` per channel
(default: computed from the training images; pass zeros and ones for a model that takes raw
[0, 1] inputs).
"""
from prunescope.audit.estimate import Estimate, describe
from prunescope.audit.inputs import AuditError, as_arrays
from prunescope.audit.run import (DEFAULT_FINETUNE_STEPS, AuditResult, audit, audit_checkpoint,
                                  checkpoint_arguments, load_model_file)
from prunescope.audit.compare import CompareResult, audit_channels, compare

__all__ = ["DEFAULT_FINETUNE_STEPS", "AuditError", "AuditResult", "CompareResult", "Estimate",
           "as_arrays", "audit", "audit_channels", "audit_checkpoint", "checkpoint_arguments",
           "compare", "describe", "load_model_file"]
