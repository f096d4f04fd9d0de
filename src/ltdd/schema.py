"""A tiny declarative check of JSON/YAML values read back from files (no third-party schema).

A spec is a type (`str`, `int`, `NUMBER`, `bool`), a dict of key -> spec (a key ending in `?` is
optional), `ListOf(spec)`, `DictOf(spec)` or `Maybe(spec)` (null allowed). `check` raises one
UserError naming the file and the dotted place of the first value that does not fit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from ltdd.errors import UserError

NUMBER = "number"


@dataclass(frozen=True)
class ListOf:
    item: Any


@dataclass(frozen=True)
class DictOf:
    value: Any


@dataclass(frozen=True)
class Maybe:
    spec: Any


def _describe(spec: Any) -> str:
    if spec == NUMBER:
        return "a finite number"
    if isinstance(spec, type):
        return {str: "a string", int: "an integer", bool: "true or false"}.get(spec, spec.__name__)
    if isinstance(spec, ListOf):
        return "a list"
    if isinstance(spec, Maybe):
        return f"null or {_describe(spec.spec)}"
    return "a mapping"


def _fits(value: Any, spec: Any) -> bool:
    if spec == NUMBER:
        return (
            isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        )
    if spec is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if isinstance(spec, type):
        return isinstance(value, spec)
    if isinstance(spec, ListOf):
        return isinstance(value, list)
    if isinstance(spec, Maybe):
        return value is None or _fits(value, spec.spec)
    return isinstance(value, dict)


def _walk(value: Any, spec: Any, where: str) -> str | None:
    if not _fits(value, spec):
        return f"{where or 'the file'} must be {_describe(spec)}, got {str(value)[:40]!r}"
    if isinstance(spec, Maybe):
        return None if value is None else _walk(value, spec.spec, where)
    if isinstance(spec, ListOf):
        for i, item in enumerate(value):
            problem = _walk(item, spec.item, f"{where}[{i}]")
            if problem:
                return problem
    elif isinstance(spec, DictOf):
        for key, item in value.items():
            problem = _walk(item, spec.value, f"{where}.{key}" if where else str(key))
            if problem:
                return problem
    elif isinstance(spec, dict):
        for raw_key, sub in spec.items():
            key = raw_key.rstrip("?")
            place = f"{where}.{key}" if where else key
            if key not in value:
                if raw_key.endswith("?"):
                    continue
                return f"{place} is missing"
            problem = _walk(value[key], sub, place)
            if problem:
                return problem
    return None


def check(value: Any, spec: Any, source: str) -> Any:
    """Return `value` if it fits `spec`; else UserError '<source>: <place> must be ...'."""
    problem = _walk(value, spec, "")
    if problem:
        raise UserError(f"{source}: unexpected content ({problem})")
    return value
