"""Job states (OpenAI's) and the only legal transitions between them."""

from __future__ import annotations

from typing import Literal, get_args

State = Literal["validating_files", "queued", "running", "succeeded", "failed", "cancelled", "paused"]
STATES: tuple[State, ...] = get_args(State)
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


def legal(current: str, new: str) -> bool:
    return new in LEGAL.get(current, frozenset())
