"""The grader registry: entry-point group ``tunery.eval_graders`` (built-ins are declared there like any plugin).

``build`` turns a GraderSpec into a ready grader: an unknown type is ``unknown_grader`` naming the installed ones;
a config that fails the grader's JSON Schema, or that its constructor refuses, is ``invalid_grader_config`` with the
field at fault written from the request's root (``graders[1].config.threshold``).
"""

from __future__ import annotations

from importlib.metadata import entry_points
from typing import Any

import jsonschema

from tunery.errors import InvalidArgument, TuneryError
from tunery.plugins import PluginRegistry
from tunery_evaluator.domain import GraderInfo, GraderSpec
from tunery_evaluator.graders.base import Grader, GraderContext, is_grader

GROUP = "tunery.eval_graders"
registry: PluginRegistry[type[Grader]] = PluginRegistry(GROUP, "grader", check=is_grader)


def _config_field(prefix: str, err_field: str) -> str:
    if not err_field:
        return f"{prefix}.config"
    if err_field == "config" or err_field.startswith(("config.", "config[")):
        return f"{prefix}.{err_field}"
    return f"{prefix}.config.{err_field}"


def _schema_path(path: Any) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else f".{part}"
    return out


def build(spec: GraderSpec, context: GraderContext, *, field: str = "graders[0]") -> Grader:
    """One grader instance for ``spec``; errors name ``field`` (the spec's place in the request)."""
    if not spec.type:
        raise InvalidArgument(f"field '{field}.type' is required (a grader type; see ListGraders)",
                              code="missing_field", field=f"{field}.type")
    cls = registry.get(spec.type, field=f"{field}.type")
    try:
        jsonschema.validate(spec.config, cls.config_schema)
    except jsonschema.ValidationError as err:
        raise InvalidArgument(
            f"{field}.config{_schema_path(err.absolute_path)}: {err.message} (grader {spec.type!r})",
            code="invalid_grader_config",
            field=f"{field}.config{_schema_path(err.absolute_path)}",
        ) from None
    except jsonschema.SchemaError as err:  # the plugin's own schema is broken: not the caller's mistake
        raise InvalidArgument(f"grader {spec.type!r} has an invalid config schema: {err.message}",
                              code="invalid_grader_config", field=f"{field}.type") from None
    try:
        return cls(dict(spec.config), context)
    except TuneryError as err:
        where = _config_field(field, err.field)
        raise InvalidArgument(f"{where}: {err.message}", code="invalid_grader_config", field=where) from None
    except (TypeError, ValueError) as err:
        raise InvalidArgument(f"{field}.config: {err} (grader {spec.type!r})", code="invalid_grader_config",
                              field=f"{field}.config") from None


def named(specs: tuple[GraderSpec, ...] | list[GraderSpec]) -> list[GraderSpec]:
    """Specs with their names filled in (the type, then type-2, type-3, …) and checked for duplicates."""
    seen: set[str] = set()
    counts: dict[str, int] = {}
    out = []
    for i, spec in enumerate(specs):
        name = spec.name
        if not name:
            counts[spec.type] = counts.get(spec.type, 0) + 1
            name = spec.type if counts[spec.type] == 1 else f"{spec.type}-{counts[spec.type]}"
            while name in seen:
                counts[spec.type] += 1
                name = f"{spec.type}-{counts[spec.type]}"
        if name in seen:
            raise InvalidArgument(f"grader name {name!r} is used twice; names must be unique within an evaluation",
                                  code="duplicate_grader", field=f"graders[{i}].name")
        seen.add(name)
        out.append(GraderSpec(spec.type, name, dict(spec.config)))
    return out


def build_all(specs: list[GraderSpec], context: GraderContext) -> list[tuple[GraderSpec, Grader]]:
    return [(s, build(s, context, field=f"graders[{i}]")) for i, s in enumerate(specs)]


def _packages() -> dict[str, str]:
    out: dict[str, str] = {}
    for ep in entry_points(group=GROUP):
        dist = getattr(ep, "dist", None)
        out[ep.name] = dist.metadata["Name"] if dist is not None else ""
    return out


def info() -> list[GraderInfo]:
    """Every grader that loaded, for ListGraders (those that failed are logged warnings)."""
    packages = _packages()
    return [
        GraderInfo(
            type=name,
            description=cls.description,
            config_schema=dict(cls.config_schema),
            higher_is_better=cls.higher_is_better,
            pairwise=cls.pairwise,
            package=packages.get(name, ""),
            needs_reference=cls.needs_reference,
        )
        for name, cls in registry.all().items()
    ]
