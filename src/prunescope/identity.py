"""What of a parameter dataclass enters a content hash (a job id): open_lth's rule.

A field enters the identity dict of its dataclass when

* it has no default (it always determines the result), or
* its metadata says when (``id_field(default, when=predicate)``; :data:`ALWAYS` for the fields
  that were hashed whatever their value before this rule existed), or, otherwise,
* its value differs from its default.

So a field added from now on with a default leaves every existing id unchanged until someone
sets it to another value: a new knob never renames finished results. Values are made JSON-able:
nested dataclasses recurse, tuples become lists.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

#: ``metadata`` of a field hashed whatever its value (the fields hashed before the rule)
ALWAYS: dict[str, Any] = {"in_id": lambda _obj: True}


def id_field(default: Any, *, when: Callable[[Any], bool] | None = None) -> Any:
    """A dataclass field with ``default`` that enters the identity when ``when(obj)`` is true
    (``None``: when its value differs from ``default``)."""
    return dataclasses.field(default=default, metadata={} if when is None else {"in_id": when})


def identity(obj: Any) -> dict[str, Any]:
    """The JSON-able ``{field: value}`` of dataclass instance ``obj`` that names its result
    (module docstring); the input of :func:`prunescope.study.plan.job_id`."""
    out = {}
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        when = f.metadata.get("in_id")
        has_default = f.default is not dataclasses.MISSING
        if not has_default or (when(obj) if when is not None else value != f.default):
            out[f.name] = _jsonable(value)
    return out


def _jsonable(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return identity(value)
    if isinstance(value, tuple | list):
        return [_jsonable(v) for v in value]
    return value
