"""The test-distribution grammar (SPEC 7): which names a test set may have, parsed and
canonicalised without torch, so the study spec, the CLI and the audit check them alike.

A name is ``"nominal"``, ``"<corruption>-<severity>"`` (a corruption of :data:`CORRUPTIONS` at a
severity of :data:`SEVERITIES`, e.g. ``"gaussian_noise-3"``) or ``"noise-<std>"`` (Gaussian input
noise, std on the 0..1 pixel scale). :mod:`prunescope.data.corruptions` makes the images of a
distribution; adding a corruption is its function there plus its name here.
"""
from __future__ import annotations

import math
import numbers
from collections.abc import Iterable
from dataclasses import dataclass

__all__ = ["CORRUPTIONS", "SEVERITIES", "Distribution", "check_severity", "check_std",
           "distribution_names", "unknown_corruption"]

#: the corruption names, in the order of SPEC 7
CORRUPTIONS: tuple[str, ...] = (
    "gaussian_noise",
    "shot_noise",
    "impulse_noise",
    "gaussian_blur",
    "contrast",
    "brightness",
    "pixelate",
    "jpeg_compression",
)

#: the severities of CIFAR-10-C
SEVERITIES: tuple[int, ...] = (1, 2, 3, 4, 5)

def check_severity(name: str, severity: int) -> int:
    if isinstance(severity, bool) or not isinstance(severity, (int, numbers.Integral)) or severity not in SEVERITIES:
        raise ValueError(f"severity of {name} must be one of {list(SEVERITIES)}, got {severity!r}")
    return int(severity)


def check_std(std: float) -> float:
    if isinstance(std, bool) or not isinstance(std, numbers.Real):
        raise TypeError(f"noise std must be a number, got {std!r}")
    value = float(std)
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"noise std must be finite and >= 0 (0..1 pixel scale), got {std!r}")
    return value


def unknown_corruption(name: object) -> ValueError:
    return ValueError(f"unknown corruption {name!r}; choose one of {', '.join(CORRUPTIONS)}")


@dataclass(frozen=True)
class Distribution:
    """A test distribution: the nominal test set, a corruption at a severity, or input noise.

    Attributes:
        kind: ``"nominal"``, ``"corruption"`` or ``"noise"``.
        corruption, severity: set for ``kind == "corruption"`` (a name of :data:`CORRUPTIONS`
            and 1..5), else None.
        std: set for ``kind == "noise"`` (Gaussian input noise std on the 0..1 scale), else None.

    Names (:attr:`name`, :meth:`parse`): ``"nominal"``, ``"<corruption>-<severity>"`` such as
    ``"gaussian_noise-3"``, ``"noise-<std>"`` such as ``"noise-0.1"``. Parsing canonicalises
    the std (``"noise-.10"`` -> ``"noise-0.1"``).
    """

    kind: str
    corruption: str | None = None
    severity: int | None = None
    std: float | None = None

    def __post_init__(self) -> None:
        if self.kind == "nominal":
            fields_ok = self.corruption is None and self.severity is None and self.std is None
        elif self.kind == "corruption":
            if self.corruption not in CORRUPTIONS:
                raise unknown_corruption(self.corruption)
            check_severity(self.corruption, self.severity)
            fields_ok = self.std is None
        elif self.kind == "noise":
            object.__setattr__(self, "std", check_std(self.std))
            fields_ok = self.corruption is None and self.severity is None
        else:
            raise ValueError(f"unknown distribution kind {self.kind!r}; choose one of nominal, corruption, noise")
        if not fields_ok:
            raise ValueError(
                f"distribution kind {self.kind!r} takes only its own fields (nominal: none; corruption: "
                f"corruption and severity; noise: std), got {self!r}"
            )

    @property
    def name(self) -> str:
        """The canonical name (see the class docstring)."""
        if self.kind == "nominal":
            return "nominal"
        if self.kind == "corruption":
            return f"{self.corruption}-{self.severity}"
        return f"noise-{self.std!r}"

    @classmethod
    def parse(cls, text: str) -> Distribution:
        """Parse ``"nominal"``, ``"<corruption>-<1..5>"`` or ``"noise-<std>"``."""
        if not isinstance(text, str):
            raise TypeError(f"a distribution name must be a str, got {text!r}")
        allowed = (
            f"'nominal', '<corruption>-<severity>' with corruption one of {', '.join(CORRUPTIONS)} and "
            f"severity 1..5, or 'noise-<std>' with std >= 0 on the 0..1 scale (e.g. 'noise-0.1')"
        )
        if text == "nominal":
            return cls("nominal")
        head, dash, tail = text.partition("-")
        if not dash:
            raise ValueError(f"unknown distribution {text!r}; use {allowed}")
        if head == "noise":
            try:
                return cls("noise", std=float(tail))
            except ValueError as e:
                raise ValueError(f"bad noise std in distribution {text!r} ({e}); use {allowed}") from None
        if head not in CORRUPTIONS:
            raise ValueError(f"unknown distribution {text!r}; use {allowed}")
        if tail not in {str(s) for s in SEVERITIES}:
            raise ValueError(f"bad severity in distribution {text!r}; use {allowed}")
        return cls("corruption", corruption=head, severity=int(tail))


def distribution_names(
    corruptions: Iterable[str] = CORRUPTIONS,
    severities: Iterable[int] = SEVERITIES,
    noise_stds: Iterable[float] = (),
) -> list[str]:
    """Canonical names: ``"nominal"``, every corruption at every severity, then each noise std.

    Args:
        corruptions: names from :data:`CORRUPTIONS`; severities: values in 1..5;
        noise_stds: Gaussian input noise standard deviations (0..1 scale).

    Returns:
        ``["nominal", "<c>-<s>" for c in corruptions for s in severities, "noise-<std>" ...]``.
    """
    severities = list(severities)
    names = ["nominal"]
    names += [Distribution("corruption", corruption=c, severity=s).name for c in corruptions for s in severities]
    names += [Distribution("noise", std=std).name for std in noise_stds]
    return names
