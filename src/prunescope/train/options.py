"""The device a run trains on, resolved once (:func:`device_profile` -> :class:`DeviceProfile`),
and the training loop's device switches (:class:`PackOptions`), without torch: the study spec
checks them against its device before any job runs."""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["DeviceProfile", "PackOptions", "device_profile", "is_cuda"]


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


@dataclass(frozen=True)
class DeviceProfile:
    """Everything that depends on the device a run trains on, decided once by
    :func:`device_profile` and carried from the study driver to its workers
    (``WorkerContext.profile``) and into the training loop
    (:func:`~prunescope.train.loop.train_net`), so that none of them asks again whether the
    device is CUDA or which switches it gets. Frozen and picklable (sent to Ray workers).

    Attributes:
        name: the torch device name (``cpu``, ``cuda``, ``cuda:1``).
        is_cuda: whether it is a CUDA device (bf16 and CUDA graphs need one, packs are sized by
            its free memory, a failed pack's memory is released, cuDNN autotunes).
        deterministic: whether jobs run with torch's deterministic algorithms (``[executor]
            deterministic``; default: on the CPU, off elsewhere).
        threads: torch intra-op threads of a job (0: torch's default).
        pack_options: the switches of stacked packs (:class:`PackOptions`), checked against the
            device.
        sync_every: optimiser steps between the training loop's NaN/inf checks of the losses
            (one host-device sync each): 1 on the CPU, 25 elsewhere.
    """

    name: str
    is_cuda: bool
    deterministic: bool
    threads: int
    pack_options: PackOptions
    sync_every: int


def device_profile(device: Any, *, pack_options: PackOptions | Mapping[str, bool] | None = None,
                   deterministic: bool | None = None, threads: int = 0) -> DeviceProfile:
    """The :class:`DeviceProfile` of ``device`` (a ``torch.device`` or its name, already
    resolved: not ``"auto"``).

    Args:
        pack_options: the pack switches: a :class:`PackOptions` as given, or overrides of the
            device's defaults (``{switch: bool}``, :meth:`PackOptions.for_device`); ``None``:
            the defaults.
        deterministic: ``None``: on for the CPU, off elsewhere.
        threads: torch intra-op threads (0: torch's default).

    Raises:
        ValueError: a switch is unknown, or needs CUDA and ``device`` is not a CUDA device.
    """
    name = str(device)
    cpu = name.split(":")[0] == "cpu"
    options = (pack_options if isinstance(pack_options, PackOptions)
               else PackOptions.for_device(name, **dict(pack_options or {})))
    options.check(name)
    return DeviceProfile(name=name, is_cuda=is_cuda(name),
                         deterministic=cpu if deterministic is None else deterministic,
                         threads=threads, pack_options=options, sync_every=1 if cpu else 25)
