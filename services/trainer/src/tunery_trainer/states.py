"""Job states (OpenAI's) and the only legal transitions between them."""

from __future__ import annotations

from typing import Literal

from tunery.common.v1 import common_pb2

State = Literal["validating_files", "queued", "running", "succeeded", "failed", "cancelled", "paused"]
TERMINAL: frozenset[str] = frozenset({"succeeded", "failed", "cancelled"})

LEGAL: dict[str, frozenset[str]] = {
    "validating_files": frozenset({"queued", "failed", "cancelled"}),
    "queued": frozenset({"running", "cancelled", "paused", "failed"}),
    "running": frozenset({"succeeded", "failed", "cancelled", "paused"}),
    # A worker may finish the last step before it sees the pause: the result stands.
    "paused": frozenset({"queued", "cancelled", "succeeded", "failed"}),
    "succeeded": frozenset(),
    "failed": frozenset(),
    "cancelled": frozenset(),
}

_TO_PROTO = {
    "validating_files": common_pb2.JOB_STATE_VALIDATING_FILES,
    "queued": common_pb2.JOB_STATE_QUEUED,
    "running": common_pb2.JOB_STATE_RUNNING,
    "succeeded": common_pb2.JOB_STATE_SUCCEEDED,
    "failed": common_pb2.JOB_STATE_FAILED,
    "cancelled": common_pb2.JOB_STATE_CANCELLED,
    "paused": common_pb2.JOB_STATE_PAUSED,
}
_FROM_PROTO = {v: k for k, v in _TO_PROTO.items()}


def legal(current: str, new: str) -> bool:
    return new in LEGAL.get(current, frozenset())


def to_proto(state: str) -> int:
    return _TO_PROTO.get(state, common_pb2.JOB_STATE_UNSPECIFIED)


def from_proto(value: int) -> str:
    return _FROM_PROTO.get(value, "")
