"""What `tunery eval run` and `tunery jobs create --eval-...` share: graders, generation settings and models from
the command line, as the evaluator's messages. Only the shape is checked here (JSON that does not parse, a missing
type); what a grader accepts is the evaluator's business, and its error names the field."""

from __future__ import annotations

import json
from collections.abc import Sequence
from enum import StrEnum
from pathlib import Path
from typing import Any

import typer
from google.protobuf import struct_pb2

from tunery.evaluator.v1 import evaluator_pb2 as epb

GRADER_HELP = ("Grader (repeatable): TYPE, TYPE:{json config} or NAME=TYPE:{json config}, e.g. "
               "'string_check:{\"operation\": \"eq\"}'; `tunery eval graders` lists them.")
GRADERS_FILE_HELP = "Graders from a JSON file: a list of {\"type\", \"name\", \"config\"} objects."
API_KEY_ENV = "TUNERY_EVAL_API_KEY"
API_KEY_HELP = ("API key for models given with @BASE_URL; best set in the environment, since a key on the command "
                "line is seen by other users (ps) and kept in shell history.")


class EvalState(StrEnum):
    """The states an evaluation can be in (a job's validating_files and paused are not among them)."""

    queued = "queued"
    running = "running"
    succeeded = "succeeded"
    failed = "failed"
    cancelled = "cancelled"


def _struct(values: dict[str, Any]) -> struct_pb2.Struct:
    s = struct_pb2.Struct()
    s.update(values)
    return s


def parse_grader(text: str, option: str = "--grader") -> epb.GraderSpec:
    """`TYPE`, `TYPE:{json}` or `NAME=TYPE:{json}`; the config must be a JSON object."""
    head, sep, raw = text.partition(":")
    name, eq, kind = head.partition("=")
    if not eq:
        name, kind = "", head
    name, kind = name.strip(), kind.strip()
    if not kind:
        raise typer.BadParameter(f"{text!r} names no grader type (TYPE[:{{json config}}])", param_hint=option)
    config: Any = {}
    if sep:
        try:
            config = json.loads(raw)
        except ValueError as err:
            raise typer.BadParameter(f"the config of grader {kind!r} is not JSON: {err}", param_hint=option) from None
        if not isinstance(config, dict):
            raise typer.BadParameter(f"the config of grader {kind!r} must be a JSON object, not {raw!r}",
                                     param_hint=option)
    return epb.GraderSpec(type=kind, name=name, config=_struct(config))


def graders_from_file(path: Path, option: str = "--graders-file") -> list[epb.GraderSpec]:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except OSError as err:
        raise typer.BadParameter(f"cannot read {path}: {err.strerror}", param_hint=option) from None
    except ValueError as err:
        raise typer.BadParameter(f"{path} is not JSON: {err}", param_hint=option) from None
    items = doc.get("graders") if isinstance(doc, dict) else doc
    if not isinstance(items, list):
        raise typer.BadParameter(f"{path}: expected a list of graders (or {{\"graders\": [...]}})", param_hint=option)
    out = []
    for i, item in enumerate(items):
        where = f"{path}: graders[{i}]"
        if not isinstance(item, dict) or not isinstance(item.get("type"), str) or not item["type"]:
            raise typer.BadParameter(f"{where} needs a \"type\"", param_hint=option)
        unknown = set(item) - {"type", "name", "config"}
        if unknown:
            raise typer.BadParameter(f"{where} has unknown keys {sorted(unknown)} (type, name, config)",
                                     param_hint=option)
        config = item.get("config", {})
        if not isinstance(config, dict):
            raise typer.BadParameter(f"{where}.config must be an object", param_hint=option)
        out.append(epb.GraderSpec(type=item["type"], name=str(item.get("name", "")), config=_struct(config)))
    return out


def graders(specs: Sequence[str], file: Path | None, option: str, file_option: str) -> list[epb.GraderSpec]:
    out = [parse_grader(s, option) for s in specs]
    if file is not None:
        out += graders_from_file(file, file_option)
    return out


def generation(temperature: float | None, max_tokens: int, seed: int | None, stop: Sequence[str],
               concurrency: int, top_p: float | None = None) -> epb.GenerationConfig:
    g = epb.GenerationConfig(max_tokens=max_tokens, stop=list(stop), concurrency=concurrency)
    if temperature is not None:
        g.temperature = temperature
    if seed is not None:
        g.seed = seed
    if top_p is not None:
        g.top_p = top_p
    return g


def model_ref(text: str, api_key: str = "", option: str = "MODELS") -> epb.ModelRef:
    """`[LABEL=]MODEL[@BASE_URL]`: a model the gateway serves, or one of an OpenAI-compatible endpoint (`api_key`
    goes with the latter only)."""
    label, eq, rest = text.partition("=")
    if not eq:
        label, rest = "", text
    model, at, url = rest.partition("@")
    if not model.strip():
        raise typer.BadParameter(f"{text!r} names no model ([LABEL=]MODEL[@BASE_URL])", param_hint=option)
    if at and not url.startswith(("http://", "https://")):
        raise typer.BadParameter(f"{text!r}: the endpoint after @ must be an http(s) URL", param_hint=option)
    return epb.ModelRef(model=model.strip(), label=label.strip(), base_url=url.strip(),
                        api_key=api_key if url else "")
