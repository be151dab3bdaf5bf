"""The backend registry (entry-point group `tunery.trainer_backends`) and backend config validation."""

from __future__ import annotations

import dataclasses
import json
import math
import typing
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any

from tunery.errors import InvalidArgument
from tunery.plugins import PluginRegistry
from tunery_trainer.backends.base import TrainerBackend

GROUP = "tunery.trainer_backends"
DEFAULT_BACKEND = "peft"


def _looks_like_backend(obj: object) -> bool:
    return all(hasattr(obj, a) for a in ("name", "methods", "config_class", "train"))


BACKENDS: PluginRegistry[Any] = PluginRegistry(GROUP, "backend", check=_looks_like_backend)


def get_backend(name: str) -> TrainerBackend:
    obj = BACKENDS.get(name or DEFAULT_BACKEND, field="backend")
    return obj() if isinstance(obj, type) else obj  # type: ignore[no-any-return]


def provided_by(name: str) -> str:
    for ep in entry_points(group=GROUP):
        if ep.name == name and ep.dist is not None:
            return ep.dist.name
    return ""


@dataclass(frozen=True, slots=True)
class FieldDoc:
    name: str
    type: str
    default_json: str
    help: str


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is not None:
        return getattr(origin, "__name__", str(origin))
    return getattr(tp, "__name__", str(tp))


def config_schema(config_class: type) -> list[FieldDoc]:
    hints = typing.get_type_hints(config_class)
    out = []
    for f in dataclasses.fields(config_class):
        if f.default is not dataclasses.MISSING:
            default: Any = f.default
        elif f.default_factory is not dataclasses.MISSING:
            default = f.default_factory()
        else:
            default = None
        out.append(
            FieldDoc(f.name, _type_name(hints.get(f.name, Any)), json.dumps(default), f.metadata.get("help", ""))
        )
    return out


def _check_value(name: str, tp: Any, value: Any, field: str) -> Any:
    base = typing.get_origin(tp) or tp
    if base is typing.Union or str(base) == "types.UnionType":
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        base = next(a for a in args if a is not type(None))
        base = typing.get_origin(base) or base
    ok = {
        bool: lambda v: isinstance(v, bool),
        int: lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and float(v).is_integer(),
        float: lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v),
        str: lambda v: isinstance(v, str),
        dict: lambda v: isinstance(v, dict),
        list: lambda v: isinstance(v, list),
        tuple: lambda v: isinstance(v, list),
    }.get(base)
    if ok is not None and not ok(value):
        raise InvalidArgument(
            f"backend config '{name}' must be {_type_name(base)}, not {json.dumps(value)}",
            code="invalid_backend_config",
            field=f"{field}.{name}",
        )
    if base is int:
        return int(value)
    if base is tuple:
        return tuple(value)
    return value


def parse_config(backend: TrainerBackend, raw: dict[str, Any], field: str = "backend_config") -> Any:
    """Build the backend's config dataclass; unknown keys and wrong types are errors that name the key."""
    cls = backend.config_class
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(raw) - set(names))
    if unknown:
        raise InvalidArgument(
            f"unknown {backend.name} backend config key(s) {', '.join(unknown)}; valid: {', '.join(names) or 'none'}",
            code="unknown_backend_config",
            field=f"{field}.{unknown[0]}",
        )
    values = {k: _check_value(k, hints.get(k, Any), v, field) for k, v in raw.items()}
    try:
        return cls(**values)
    except (TypeError, ValueError) as err:
        raise InvalidArgument(
            f"invalid {backend.name} backend config: {err}", code="invalid_backend_config", field=field
        ) from err
