"""The training loop's device switches (:class:`PackOptions`), without torch: the study spec
checks them against its device before any job runs."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["PackOptions", "is_cuda"]


def is_cuda(device: Any) -> bool:
    """Whether ``device`` (a ``torch.device`` or its name: ``"cuda"``, ``"cuda:1"``) is a CUDA
    device."""
    return str(device).split(":")[0] == "cuda"


@dataclass(frozen=True)
class PackOptions:
    """Device switches of the training loop (none changes the maths, only speed and rounding).

    Attributes:
        bf16: run forward/backward under ``torch.autocast`` with bfloat16 (CUDA); weights,
            optimiser state and the loss stay float32.
        channels_last: keep conv weights (and so activations) in NHWC memory layout.
        compile: ``torch.compile`` the network (once per architecture and pack shape; later
            runs of the same shape reuse the compiled code).
        cuda_graphs: with ``compile``, use mode ``"reduce-overhead"`` (CUDA graphs) so each step
            is replayed as one graph instead of hundreds of small kernel launches.
        fused_optimizer: the fused SGD step, one kernel for all parameters; on by default on
            the CUDA and the CPU (faster than the foreach step on both; its rounding differs
            from the foreach step's in the last bits, docs/benchmarks/training.md).
    """

    bf16: bool = False
    channels_last: bool = False
    compile: bool = False
    cuda_graphs: bool = False
    fused_optimizer: bool = True

    def __post_init__(self) -> None:
        if self.cuda_graphs and not self.compile:
            raise ValueError("cuda_graphs=True needs compile=True (CUDA graphs come from "
                             "torch.compile's 'reduce-overhead' mode)")

    @classmethod
    def for_device(cls, device: Any, **overrides: bool) -> PackOptions:
        """Everything on for CUDA; fp32 eager with the fused SGD step elsewhere (the defaults);
        then ``overrides`` (switch name -> bool). Turning ``compile`` off also turns off ``cuda_graphs`` unless that is
        given too (CUDA graphs come from compiling)."""
        unknown = sorted(set(overrides) - set(cls.__dataclass_fields__))
        if unknown:
            raise ValueError(f"unknown PackOptions switch {unknown[0]!r}; the switches are "
                             f"{', '.join(cls.__dataclass_fields__)}")
        on = is_cuda(device)
        values = {name: on or field.default for name, field in cls.__dataclass_fields__.items()}
        if overrides.get("compile") is False:
            values["cuda_graphs"] = False
        return cls(**{**values, **overrides})

    def check(self, device: Any) -> None:
        """Raise ValueError when a switch needs CUDA and ``device`` is not a CUDA device."""
        if not is_cuda(device):
            on = [n for n in ("bf16", "cuda_graphs") if getattr(self, n)]
            if on:
                raise ValueError(f"PackOptions {on} need a CUDA device, the pack is on {device}; "
                                 "use PackOptions.for_device(device)")
