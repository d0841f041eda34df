"""Package namespaces whose names load on first use (PEP 562), so that importing one light
submodule (``prunescope.train.recipe``, ``prunescope.study.plan``) or the command line does not
import torch through the package's ``__init__``."""
from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any


def lazy_exports(namespace: dict[str, Any], exports: dict[str, str]
                 ) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``(__getattr__, __dir__)`` of the package whose ``globals()`` are ``namespace`` and whose
    public ``name`` lives in submodule ``exports[name]`` (relative, e.g. ``"loop"``): the
    submodule is imported the first time the name is read, and the name is then cached in the
    package."""
    package = namespace["__name__"]

    def __getattr__(name: str) -> Any:
        if name not in exports:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f"{package}.{exports[name]}"), name)
        namespace[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted({*namespace, *exports})

    return __getattr__, __dir__
