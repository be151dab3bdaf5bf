"""One error hierarchy for every service, in plain Python.

User mistakes carry a stable code and, where it helps, the field, line and file at fault. Nothing here knows a
transport: the gRPC edge (`tunery.runtime.grpcerrors`) maps these classes to status codes with `ErrorDetails` in the
trailing metadata and back, and the gateway maps them to OpenAI-shaped HTTP errors (`tunery_gateway.errors`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

Severity = Literal["error", "warning"]


@dataclass(frozen=True, slots=True)
class Problem:
    """One precise problem (a line of a file, a field of a request)."""

    code: str
    """Stable machine-readable code (clients branch on it; never reword it)."""
    message: str
    """A sentence naming what is wrong and where."""
    field: str = ""
    """JSON path such as ``messages[2].role``; empty when not about a field."""
    line: int = 0
    """1-based line number; 0 for whole-file problems."""
    file: str = ""
    severity: Severity = "error"


@dataclass
class TuneryError(Exception):
    """Base of all errors a caller can cause or see."""

    message: str
    code: str = "error"
    field: str = ""
    problems: Sequence[Problem] = dataclasses.field(default_factory=tuple)
    problem_count: int = 0

    def __post_init__(self) -> None:
        super().__init__(self.message)
        if not self.problem_count:
            self.problem_count = len(self.problems)

    def __str__(self) -> str:
        return self.message


class InvalidArgument(TuneryError):
    """The request itself is wrong (a field, a file's line)."""


class NotFound(TuneryError):
    pass


class AlreadyExists(TuneryError):
    pass


class FailedPrecondition(TuneryError):
    """The request is well formed but the system is not in a state to do it (a version in use, a job that ended)."""


class ResourceExhausted(TuneryError):
    pass


class Unavailable(TuneryError):
    """Something this call depends on does not answer; trying again later may work."""


class Unauthenticated(TuneryError):
    pass


class PermissionDenied(TuneryError):
    pass


class Internal(TuneryError):
    """A bug or an environment failure, never a user's mistake."""


def required(value: object, field_name: str) -> None:
    """Reject a missing (empty) request field with a message that names it."""
    if value in ("", None, 0, b"") or (isinstance(value, (list, tuple)) and not value):
        raise InvalidArgument(f"field '{field_name}' is required", code="missing_field", field=field_name)
