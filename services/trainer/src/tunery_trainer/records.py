"""The JSON the store keeps of domain objects: a job's spec and resolved hyperparameters, and job events.

Keys are the proto field names (snake_case, as `json_format` writes them with `preserving_proto_field_name`), so
the JSON reads like the proto's. Rows written before the store kept plain records stay readable: proto JSON of the
spec (enum names such as "METHOD_SFT", int64 as strings) and camelCase hyperparameters. Decoding goes through
pydantic, which checks every type on the way in.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any

import orjson
from pydantic import TypeAdapter

from tunery_trainer.domain import (
    Checkpoint,
    JobEvaluation,
    JobEvent,
    JobSpec,
    ResolvedHyperparameters,
    StateChange,
    StepLog,
    Validation,
)

_SPEC = TypeAdapter(JobSpec)
_EVENT = TypeAdapter(JobEvent)
_RESOLVED = TypeAdapter(ResolvedHyperparameters)
_KINDS: dict[str, type] = {
    "state_change": StateChange,
    "step": StepLog,
    "checkpoint": Checkpoint,
    "validation": Validation,
    "evaluation": JobEvaluation,
}
_KIND_OF = {cls: name for name, cls in _KINDS.items()}
_DATA: dict[str, TypeAdapter[Any]] = {name: TypeAdapter(cls) for name, cls in _KINDS.items()}
_EVENT_FIELDS = ("job_id", "message", "level", "time", "sequence")
_LEGACY_METHODS = {"METHOD_UNSPECIFIED": "sft", "METHOD_SFT": "sft", "METHOD_DPO": "dpo"}
_CAMEL = re.compile(r"([A-Z])")


def _dump(obj: Any) -> bytes:
    return orjson.dumps(dataclasses.asdict(obj))


def _snake(d: dict[str, Any]) -> dict[str, Any]:
    return {_CAMEL.sub(lambda m: "_" + m.group(1).lower(), k): v for k, v in d.items()}


def spec_to_json(spec: JobSpec) -> str:
    return _dump(spec).decode()


def spec_from_json(text: str) -> JobSpec:
    raw: dict[str, Any] = orjson.loads(text)
    if isinstance(raw.get("method"), str) and raw["method"] in _LEGACY_METHODS:
        raw["method"] = _LEGACY_METHODS[raw["method"]]
    for name in ("hyperparameters", "lora"):
        if isinstance(raw.get(name), dict):
            raw[name] = _snake(raw[name])
    return _SPEC.validate_python(raw)


def resolved_to_json(h: ResolvedHyperparameters) -> str:
    return _dump(h).decode()


def resolved_from_json(text: str) -> ResolvedHyperparameters:
    return _RESOLVED.validate_python(_snake(orjson.loads(text or "{}")))


def event_to_json(ev: JobEvent) -> bytes:
    out: dict[str, Any] = {name: getattr(ev, name) for name in _EVENT_FIELDS}
    if ev.data is not None:
        out[_KIND_OF[type(ev.data)]] = dataclasses.asdict(ev.data)
    return orjson.dumps(out)


def event_from_json(data: bytes) -> JobEvent:
    raw: dict[str, Any] = orjson.loads(data)
    base = _EVENT.validate_python({k: raw[k] for k in _EVENT_FIELDS if k in raw})
    kind = next((k for k in _KINDS if raw.get(k) is not None), None)
    return dataclasses.replace(base, data=_DATA[kind].validate_python(raw[kind])) if kind else base
