"""Typed config fields: one helper checks a dataclass field's value against its type and range.

`check_fields(cls, mapping, where)` checks every key of a mapping against dataclass `cls`: an unknown
key, a value of the wrong type (bools are not integers here, a string is not a number) or out of the
field's range (`setting(..., min=1)`) is refused with one sentence naming the key path. `from_dict`
builds the dataclass from the checked values. Used by every config section (model, run, trainer).
"""

from __future__ import annotations

import dataclasses
import functools
import math
import types
import typing
from collections.abc import Mapping
from dataclasses import field
from typing import Any, TypeVar, Union

T = TypeVar("T")


class ConfigError(ValueError):
    """A configuration problem; the message names the offending key."""


def setting(default: Any = dataclasses.MISSING, *, factory: Any = dataclasses.MISSING, min: float | None = None,
            gt: float | None = None, max: float | None = None, choices: tuple | None = None,
            schema: type | None = None) -> Any:
    """A dataclass field with its allowed range: `min`/`max` (inclusive), `gt` (exclusive), `choices`;
    `schema`: a dataclass whose fields a mapping value must follow (the value stays a plain mapping)."""
    meta = {k: v for k, v in (("min", min), ("gt", gt), ("max", max), ("choices", choices), ("schema", schema))
            if v is not None}
    return field(default=default, default_factory=factory, metadata=meta)


def to_dict(obj: Any) -> Any:
    """Dataclass tree -> JSON-able dict."""
    if dataclasses.is_dataclass(obj):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_dict(v) for k, v in obj.items()}
    return obj


def from_dict(cls: type[T], data: Any, where: str = "") -> T:
    """Build dataclass `cls` from `data`, refusing unknown keys, missing required keys, values of the
    wrong type and values out of range (each error names the key path)."""
    if data is None:
        return cls()
    kwargs = check_fields(cls, data, where)
    missing = [f.name for f in dataclasses.fields(cls) if f.name not in kwargs and f.init
               and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    if missing:
        raise ConfigError(f"config key '{_join(where, missing[0])}' is missing")
    return cls(**kwargs)


def check_fields(cls: type, data: Any, where: str) -> dict[str, Any]:
    """The keyword arguments for dataclass `cls` from mapping `data`, each value checked (and converted
    where that is lossless: a YAML list to a tuple, a number written as a string such as YAML's `1e-3`
    to a float). A null value of a list / mapping field means its default."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"config key '{where or cls.__name__}': expected a mapping, got {_show(data)}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted((k for k in data if k not in fields), key=str)
    if unknown:
        raise ConfigError(f"unknown config key '{_join(where, str(unknown[0]))}' (known: {', '.join(fields)})")
    hints = _hints(cls)
    out = {}
    for name, value in data.items():
        f = fields[name]
        if value is None and f.default_factory is not dataclasses.MISSING and not _optional(hints[name]):
            out[name] = f.default_factory()
            continue
        out[name] = check_value(hints[name], value, _join(where, name), f.metadata)
    return out


def check_value(tp: Any, value: Any, where: str, meta: Mapping[str, Any] | None = None) -> Any:
    """`value` checked against type `tp` (int, float, bool, str, X | None, unions, list[X], tuple[X, ...],
    dict[K, V], a nested dataclass, Any) and the range in `meta` (see `setting`)."""
    value = _typed(tp, value, where)
    if meta and value is not None:
        _check_range(value, meta, where)
    return value


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _join(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


def _optional(tp: Any) -> bool:
    return typing.get_origin(tp) in (Union, types.UnionType) and type(None) in typing.get_args(tp)


def _show(value: Any) -> str:
    """A value as the user wrote it in YAML (true, null, 'x'), kept short."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, (list, tuple)):
        return "a list"
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _describe(tp: Any) -> str:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (Union, types.UnionType):
        return " or ".join(_describe(a) for a in args)
    if origin is tuple and args and args[-1] is not Ellipsis:
        return f"a list of {len(args)} {_describe(args[0]).split(' ', 1)[-1]}s"
    return {int: "an integer", float: "a number", bool: "true or false", str: "a string", type(None): "null",
            list: "a list", tuple: "a list", dict: "a mapping"}.get(origin or tp, "a mapping")


def _as_float(value: Any) -> float | None:
    """`value` as a float, or None when it is not a number (bools are not numbers here)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return value
    if isinstance(value, str):  # YAML 1.1 reads `1e-3` (no dot) as a string
        try:
            number = float(value)
        except ValueError:
            return None
        return number if math.isfinite(number) else None
    return None


def _fits(tp: Any, value: Any) -> bool:
    """Whether `value` has the shape of `tp` (used to pick the arm of a union)."""
    origin = typing.get_origin(tp) or tp
    if tp is Any:
        return True
    if dataclasses.is_dataclass(tp):
        return isinstance(value, (Mapping, tp))  # an instance: built in Python, already checked
    if origin is dict:
        return isinstance(value, Mapping)
    if origin in (list, tuple):
        return isinstance(value, (list, tuple))
    if origin is bool:
        return isinstance(value, bool)
    if origin is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if origin is float:
        return _as_float(value) is not None
    if origin is type(None):
        return value is None
    return isinstance(value, origin) if isinstance(origin, type) else True


def _typed(tp: Any, value: Any, where: str) -> Any:
    if tp is Any:
        return value
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (Union, types.UnionType):
        for arm in args:
            if _fits(arm, value):
                return _typed(arm, value, where)
        raise ConfigError(f"config key '{where}': expected {_describe(tp)}, got {_show(value)}")
    if not _fits(tp, value):
        raise ConfigError(f"config key '{where}': expected {_describe(tp)}, got {_show(value)}")
    if dataclasses.is_dataclass(tp):
        return value if isinstance(value, tp) else from_dict(tp, value, where)
    if tp is float:
        if isinstance(value, float) and not math.isfinite(value):  # YAML .nan / .inf
            raise ConfigError(f"config key '{where}': expected a finite number, got {value}")
        return value if isinstance(value, (int, float)) else _as_float(value)
    if origin is list:
        return [_typed(args[0] if args else Any, v, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is tuple:
        if args and args[-1] is not Ellipsis:
            if len(value) != len(args):
                n = len(value)
                raise ConfigError(f"config key '{where}': expected {_describe(tp)}, got {n} value{'s' * (n != 1)}")
            return tuple(_typed(a, v, f"{where}[{i}]") for i, (a, v) in enumerate(zip(args, value)))
        return tuple(_typed(args[0] if args else Any, v, f"{where}[{i}]") for i, v in enumerate(value))
    if origin is dict:
        vt = args[1] if len(args) == 2 else Any
        return {k: _typed(vt, v, _join(where, str(k))) for k, v in value.items()}
    return value


def _check_range(value: Any, meta: Mapping[str, Any], where: str) -> None:
    if "min" in meta and value < meta["min"]:
        raise ConfigError(f"config key '{where}': must be at least {meta['min']}, got {_show(value)}")
    if "gt" in meta and value <= meta["gt"]:
        raise ConfigError(f"config key '{where}': must be greater than {meta['gt']}, got {_show(value)}")
    if "max" in meta and value > meta["max"]:
        raise ConfigError(f"config key '{where}': must be at most {meta['max']}, got {_show(value)}")
    if "choices" in meta and value not in meta["choices"]:
        raise ConfigError(f"config key '{where}': expected one of {', '.join(map(repr, meta['choices']))}, "
                          f"got {_show(value)}")
    if "schema" in meta:
        check_fields(meta["schema"], value, where)
