"""Checking a grader's settings against its JSON Schema, with an error that names the setting at fault."""

from __future__ import annotations

import math
from typing import Any

import jsonschema
from jsonschema.exceptions import best_match

from tunery.errors import InvalidArgument


def check_config(grader: str, schema: dict[str, Any], config: dict[str, Any]) -> None:
    """Raise ``InvalidArgument`` (code ``invalid_grader_config``, field ``config.<path>``) when config breaks schema."""
    validator = jsonschema.Draft202012Validator(schema)
    error = best_match(validator.iter_errors(config))
    if error is None:
        return
    path: list[str | int] = list(error.absolute_path)
    if error.validator == "required" and isinstance(error.instance, dict):
        missing = [k for k in error.validator_value if k not in error.instance]
        path.append(missing[0] if missing else "")
        message = f"{grader}: setting {dotted(path)!r} is required"
    elif error.validator == "additionalProperties" and isinstance(error.instance, dict):
        allowed = set(error.schema.get("properties", {}))
        extra = sorted(k for k in error.instance if k not in allowed)
        path.append(extra[0] if extra else "")
        message = f"{grader}: unknown setting {dotted(path)!r} (valid: {', '.join(sorted(allowed))})"
    else:
        message = f"{grader}: setting {dotted(path) or 'config'!r}: {error.message}"
    raise InvalidArgument(message, code="invalid_grader_config", field=dotted(["config", *path]))


def dotted(path: list[str | int]) -> str:
    """A JSON path as a field name: ``input[1].content``."""
    out = ""
    for p in path:
        if isinstance(p, int):
            out += f"[{p}]"
        elif p != "":
            out += f".{p}" if out else p
    return out


def pass_threshold(config: dict[str, Any], default: float | None) -> float | None:
    """The config's ``pass_threshold`` (a number, checked by the schema) or the grader's default."""
    value = config.get("pass_threshold", default)
    if value is None:
        return None
    value = float(value)
    if not math.isfinite(value):
        raise InvalidArgument("pass_threshold must be a finite number", code="invalid_grader_config",
                              field="config.pass_threshold")
    return value


THRESHOLD = {"type": "number", "description": "A score at or above it passes."}
"""Schema of ``pass_threshold``, shared by the graders that have one."""

__all__ = ["THRESHOLD", "check_config", "dotted", "pass_threshold"]
