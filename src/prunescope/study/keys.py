"""Declaring the keys of a study file once: each key is one pydantic field (:func:`key`) whose
type, default and bounds validate it, whose ``allowed`` text explains a refusal and whose
description is its row in docs/studies.md (:func:`key_table`).

Why pydantic (docs/architecture.md, section "study"): strict types, ``Literal`` choices,
bounds and ``extra="forbid"`` say in one line per key what the hand-written validator said in
three places (a dataclass field, a key set, a ``v.get(default)`` call), and its errors carry the
location, the input and the constraint, which :func:`spec_error` turns into today's one-line
:class:`SpecError`: file, dotted key, value, what is allowed.
"""
from __future__ import annotations

import json
import re
import types
import typing
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic_core import PydanticCustomError, PydanticUndefined


class SpecError(ValueError):
    """A study spec is invalid; the message names the file, key, value and what is allowed."""


def key(default: Any = PydanticUndefined, doc: str = "", *, allowed: str | None = None,
        doc_default: str | None = None, doc_type: str | None = None, **bounds: Any) -> Any:
    """One key of a table: its ``default`` (none: required), pydantic ``bounds`` (``ge``,
    ``lt``, ``min_length``...), the ``allowed`` text of its error message (else derived from its
    type), and its row in docs/studies.md: ``doc`` (the meaning column), ``doc_default`` and
    ``doc_type`` where the default or type shown differ from the field's own."""
    extra = {"allowed": allowed, "doc_default": doc_default, "doc_type": doc_type}
    return Field(default, description=doc, json_schema_extra=extra, **bounds)


def int_key(default: Any, lo: int, hi: int | None = None, note: str = "", doc: str = "",
            **kw: Any) -> Any:
    """An integer key in ``[lo, hi]`` (``hi=None``: no upper bound)."""
    allowed = f"an integer from {lo} to {hi}" if hi is not None else f"an integer >= {lo}"
    return key(default, doc, allowed=allowed + (f" ({note})" if note else ""), ge=lo, le=hi, **kw)


def refuse(allowed: str | None = None, key: str | None = None, value: Any = None
           ) -> typing.NoReturn:
    """Fail a validator: ``allowed`` (default: the field's), at sub-key ``key`` of the field
    (or of the table, for a model validator) with ``value`` (default: the input)."""
    raise PydanticCustomError("spec", "{allowed}", {"allowed": allowed, "key": key,
                                                    "value": value, "has_value": key is not None})


def refuse_keys(tab: dict[str, Any], allowed: typing.Iterable[str]) -> None:
    """Fail on keys of a free-form sub-table beyond ``allowed``, as an unknown key."""
    unknown = sorted(set(tab) - set(allowed))
    if unknown:
        raise PydanticCustomError("unknown_keys", "unknown keys",
                                  {"keys": unknown, "allowed_keys": sorted(allowed)})


def sub_table(raw: Any, keys: typing.Iterable[str]) -> dict[str, Any] | None:
    """A key whose value is a small table: a TOML table (its keys checked against ``keys``) or
    the ``(key, value)`` pairs a model holds it as, as a dict; ``None`` for anything else."""
    if isinstance(raw, tuple):
        return dict(raw)
    if isinstance(raw, dict):
        refuse_keys(raw, keys)
        return raw
    return None


class Table(BaseModel):
    """A table of the study file (and a frozen, hashable part of the :class:`StudySpec`)."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class Messages:
    """One-line :class:`SpecError` messages about the file ``where``."""

    def __init__(self, where: str) -> None:
        self.where = where

    def error(self, key: str, value: Any, allowed: str) -> SpecError:
        shown = repr(value)
        if len(shown) > 120:
            shown = f"{shown[:100]}... ({len(shown)} characters)"
        return SpecError(f"{self.where}: key '{_printable(key)}' = {shown} is invalid; "
                         f"allowed: {allowed}")

    def fail(self, key: str, value: Any, allowed: str) -> typing.NoReturn:
        raise self.error(key, value, allowed)

    def unknown_keys(self, unknown: list[str], allowed: typing.Iterable[str]) -> SpecError:
        return SpecError(
            f"{self.where}: unknown key '{_printable(unknown[0])}'"
            + (f" (and {', '.join(_printable(u) for u in unknown[1:])})" if unknown[1:] else "")
            + f"; allowed keys here: {', '.join(sorted(allowed))}")

    def keys(self, tab: dict[str, Any], allowed: set[str], prefix: str) -> None:
        unknown = sorted(set(tab) - allowed)
        if unknown:
            raise self.unknown_keys([prefix + u for u in unknown], allowed)


def _printable(key: str) -> str:
    """A key path as shown in a message: non-printable characters (newlines, NUL, bidi
    controls) escaped, so every message stays one readable line."""
    return key if key.isprintable() else repr(key)[1:-1]


# ---- pydantic's errors as one line ----------------------------------------------------------
_TYPE_NAMES = {"int_type": "int", "float_type": "float", "bool_type": "bool", "string_type": "str",
               "list_type": "list", "tuple_type": "list", "dict_type": "dict",
               "model_type": "dict", "finite_number": "float"}


def _table_of(annotation: Any) -> type[Table] | None:
    """The table model inside a field's annotation (``X``, ``X | None``, ``list[X]``)."""
    if isinstance(annotation, type) and issubclass(annotation, Table):
        return annotation
    for arg in typing.get_args(annotation):
        if (found := _table_of(arg)) is not None:
            return found
    return None


def _walk(root: type[Table], loc: tuple[Any, ...]) -> tuple[list[Any], type[Table] | None, Any]:
    """``(key path, table model, field)`` of an error location in a ``root`` document: list
    indices kept, the tags pydantic adds for union members dropped; an unknown key ends the
    path, with the model that holds it."""
    model: type[Table] | None = root
    field, path = None, []
    for part in loc:
        if isinstance(part, int):
            path.append(part)
        elif model is not None and part in model.model_fields:
            field = model.model_fields[part]
            model = _table_of(field.annotation)
            path.append(part)
        elif model is not None:
            path.append(part)  # an unknown key
            break
    return path, model, field


def _dotted(path: list[Any]) -> str:
    return "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in path).lstrip(".")


def _allowed(err: dict[str, Any], field: Any, at_field: bool) -> str:
    """What a failed value should have been: the validator's text, the field's ``allowed``,
    or what its type and the error say."""
    ctx = err.get("ctx") or {}
    if ctx.get("allowed"):
        return ctx["allowed"]
    extra = (field.json_schema_extra or {}) if field is not None and at_field else {}
    if extra.get("allowed"):
        return extra["allowed"]
    if err["type"] == "literal_error":
        return "one of " + ", ".join(re.findall(r"'([^']*)'", ctx["expected"]))
    if err["type"] in _TYPE_NAMES:
        return f"a value of type {_TYPE_NAMES[err['type']]}"
    return err["msg"]


def spec_error(where: str, e: ValidationError, root: type[Table], prefix: tuple[str, ...] = ()
               ) -> SpecError:
    """The first of pydantic's errors about a ``root`` table at key path ``prefix`` of the file
    ``where`` (unknown keys first, outer tables first) as one :class:`SpecError` line: the file,
    the dotted key, the value and what is allowed (the validator's text, else the field's
    ``allowed``, else its type's)."""
    v = Messages(where)

    def _walk_at(loc: tuple[Any, ...]) -> tuple[list[Any], type[Table] | None, Any]:
        path, model, field = _walk(root, loc)
        return [*prefix, *path], model, field

    errors = sorted(e.errors(include_url=False),
                    key=lambda x: (x["type"] != "extra_forbidden", len(x["loc"])))
    err, ctx = errors[0], errors[0].get("ctx") or {}
    path, model, field = _walk_at(err["loc"])
    if err["type"] in ("extra_forbidden", "unknown_keys"):
        parent = path[:-1] if err["type"] == "extra_forbidden" else path
        if err["type"] == "extra_forbidden":
            unknown = [_walk_at(x["loc"])[0][-1] for x in errors
                       if x["type"] == "extra_forbidden" and _walk_at(x["loc"])[0][:-1] == parent]
            allowed = list((model or root).model_fields)
        else:
            unknown, allowed = ctx["keys"], ctx["allowed_keys"]
        prefix = _dotted(parent) + "." if parent else ""
        return v.unknown_keys([prefix + str(u) for u in sorted(unknown)], allowed)
    if err["type"] == "missing":
        return SpecError(f"{where}: missing required key '{_printable(_dotted(path))}'")
    at_field = bool(path) and not isinstance(path[-1], int) and not ctx.get("key")
    if ctx.get("key"):
        path = [*path, ctx["key"]]
    value = ctx["value"] if ctx.get("has_value") else err["input"]
    return v.error(_dotted(path), value, _allowed(err, field, at_field))


# ---- the key tables of docs/studies.md ------------------------------------------------------

def _doc_type(ann: Any) -> str:
    """How docs/studies.md names a TOML type: string, int, number, bool, list of ..."""
    if typing.get_origin(ann) in (types.UnionType, typing.Union):
        ann = next(a for a in typing.get_args(ann) if a is not type(None))
    if typing.get_origin(ann) is Annotated:
        ann = typing.get_args(ann)[0]
    if typing.get_origin(ann) is list:
        item = _doc_type(typing.get_args(ann)[0])
        return "list of " + ("strings" if item == "string" else "numbers")
    if typing.get_origin(ann) is Literal or ann is str:
        return "string"
    return {int: "int", float: "number", bool: "bool"}[ann]


def _doc_default(field: Any) -> str:
    shown = (field.json_schema_extra or {}).get("doc_default")
    if shown:
        return f"`{shown}`" if shown.startswith('"') else shown
    if field.is_required():
        return "required"
    return "absent" if field.default is None else f"`{json.dumps(field.default)}`"


def key_table(model: type[Table]) -> str:
    """The markdown table of ``model``'s documented keys: key, type, default, meaning."""
    rows = ["| key | type | default | allowed / meaning |", "|---|---|---|---|"]
    rows += [f"| `{k}` | {(f.json_schema_extra or {}).get('doc_type') or _doc_type(f.annotation)}"
             f" | {_doc_default(f)} | {f.description} |"
             for k, f in model.model_fields.items() if f.description]
    return "\n".join(rows)


def replace_blocks(text: str, tables: dict[str, str]) -> str:
    """``text`` with every ``<!-- keys:NAME -->`` ... ``<!-- /keys -->`` block holding
    ``tables[NAME]`` (a missing block raises ``KeyError``)."""
    for name, table in tables.items():
        block = re.compile(rf"<!-- keys:{name} -->\n.*?<!-- /keys -->", re.S)
        if not block.search(text):
            raise KeyError(f"no <!-- keys:{name} --> block in the text")
        text = block.sub(lambda _: f"<!-- keys:{name} -->\n{table}\n<!-- /keys -->", text)
    return text
