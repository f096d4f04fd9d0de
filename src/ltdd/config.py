"""Typed configuration: YAML and dotted `key=value` overrides mapped onto frozen dataclasses.

Constraints live beside the fields, in `field(metadata=...)`:
    lr: float = field(default=0.01, metadata={"gt": 0})
    norm: str = field(default="instance", metadata={"choices": ("instance", "batch", "none")})
Supported keys: `ge`, `gt`, `le`, `lt`, `choices`. Every violation raises one UserError of the form
`<dotted.key> must be <constraint>, got <value>`.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

from ltdd.errors import UserError

C = TypeVar("C")
INT_LIMIT = 2**63 - 1  # what fits the int64 of torch, numpy and safetensors
FLOAT_LIMIT = 3.4028234663852886e38  # what fits float32: rates and weights become float32 tensors


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", str(tp))


def _as_number(value: Any) -> Any:
    """YAML 1.1 reads `1e-5` as a string; accept such numeric strings for number fields."""
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Convert a YAML value to the annotated type, or raise a UserError naming the key."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, key)
            except UserError as exc:
                errors.append(str(exc))
        raise UserError(errors[0] if errors else f"{key} must not be null")
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise UserError(f"{key} must be a mapping, got {value!r}")
        return _build(tp, value, key + ".")
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise UserError(f"{key} must be a list, got {value!r}")
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(args) != len(value):
                raise UserError(f"{key} must have {len(args)} items, got {value!r}")
            return tuple(
                _coerce(v, a, f"{key}[{i}]")
                for i, (v, a) in enumerate(zip(value, args, strict=True))
            )
        inner = args[0] if args else Any
        items = [_coerce(v, inner, f"{key}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if tp is Any:
        return value
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise UserError(f"{key} must be true or false, got {value!r}")
    if tp in (int, float):
        value = _as_number(value)
    if tp is int:
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, int) and not isinstance(value, bool):
            if abs(value) > INT_LIMIT:
                raise UserError(f"{key} must be an integer of at most 2^63 - 1, got {value}")
            return value
        raise UserError(f"{key} must be an integer, got {value!r}")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            try:
                number = float(value)
            except OverflowError:
                number = math.inf
            if not abs(number) <= FLOAT_LIMIT:  # also refuses NaN
                raise UserError(
                    f"{key} must be a finite number within float32 range, got {value!r}"
                )
            return number
        raise UserError(f"{key} must be a number, got {value!r}")
    if tp is str:
        if isinstance(value, str):
            return value
        raise UserError(f"{key} must be a string, got {value!r}")
    if tp is Path:
        if isinstance(value, (str, Path)):
            return Path(value)
        raise UserError(f"{key} must be a path, got {value!r}")
    raise TypeError(f"unsupported config type {_type_name(tp)} for {key}")


def _check(value: Any, meta: typing.Mapping[str, Any], key: str) -> None:
    if value is None:
        return
    if "choices" in meta and value not in meta["choices"]:
        allowed = ", ".join(str(c) for c in meta["choices"])
        raise UserError(f"{key} must be one of {allowed}, got {value!r}")
    bounds = {
        "ge": (">=", lambda a, b: a >= b),
        "gt": (">", lambda a, b: a > b),
        "le": ("<=", lambda a, b: a <= b),
        "lt": ("<", lambda a, b: a < b),
    }
    for name, (symbol, ok) in bounds.items():
        if name in meta and not ok(value, meta[name]):
            raise UserError(f"{key} must be {symbol} {meta[name]}, got {value!r}")


def _build(cls: type[C], values: dict, prefix: str = "") -> C:
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    odd = [k for k in values if not isinstance(k, str) or not k.isprintable()]
    if odd:
        raise UserError(f"config key {prefix}{odd[0]!r} is not a key name")
    unknown = sorted(set(values) - set(fields))
    if unknown:
        known = ", ".join(sorted(fields))
        raise UserError(f"unknown config key {prefix}{unknown[0]}; known keys here: {known}")
    kwargs = {}
    defaults = cls()
    for name, value in values.items():
        key = prefix + name
        default = getattr(defaults, name)
        if dataclasses.is_dataclass(default) and isinstance(value, dict):
            value = merge(to_dict(default), value)  # a partial section keeps the field's default
        coerced = _coerce(value, hints[name], key)
        _check(coerced, fields[name].metadata, key)
        kwargs[name] = coerced
    obj = cls(**kwargs)
    for name, f in fields.items():  # defaults must satisfy their own constraints too
        if name not in kwargs:
            _check(getattr(obj, name), f.metadata, prefix + name)
    return obj


def parse_overrides(pairs: list[str]) -> dict:
    """Turn ['a.b=1', 'c=x'] into a nested dict, parsing each value as YAML."""
    tree: dict = {}
    for pair in pairs:
        if "=" not in pair:
            raise UserError(f"override {pair!r} must look like key=value")
        key, raw = pair.split("=", 1)
        try:
            value = yaml.safe_load(raw) if raw != "" else ""
        except yaml.YAMLError:
            value = raw
        node = tree
        parts = key.strip().split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise UserError(f"override {pair!r} conflicts with an earlier one")
        node[parts[-1]] = value
    return tree


def merge(base: dict, extra: dict) -> dict:
    """Recursively merge `extra` into a copy of `base`."""
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


def read_yaml(path: str | Path) -> dict:
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise UserError(f"{path}: no such config file") from None
    except IsADirectoryError:
        raise UserError(f"{path}: is a folder, not a YAML config file") from None
    except UnicodeDecodeError:
        raise UserError(f"{path}: not a text file (a YAML config is UTF-8 text)") from None
    except (yaml.YAMLError, RecursionError) as exc:
        raise UserError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise UserError(f"{path}: a config must be a mapping of keys to values")
    return data


def from_dict(cls: type[C], values: dict) -> C:
    """Build and validate a config dataclass from a plain (possibly nested) dict."""
    return _build(cls, values)


def load_config(cls: type[C], path: str | Path | None = None, overrides: list[str] = ()) -> C:
    """Load a YAML file (optional) onto `cls`, apply dotted overrides, validate everything."""
    values = read_yaml(path) if path is not None else {}
    return _build(cls, merge(values, parse_overrides(list(overrides))))


def to_dict(config: Any) -> dict:
    """A plain, YAML/JSON-ready dict of a config dataclass (paths as strings, tuples as lists)."""

    def plain(value: Any) -> Any:
        if dataclasses.is_dataclass(value):
            return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
        if isinstance(value, (list, tuple)):
            return [plain(v) for v in value]
        if isinstance(value, Path):
            return str(value)
        return value

    return plain(config)
