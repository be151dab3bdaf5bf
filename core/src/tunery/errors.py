"""One error hierarchy for every service.

User mistakes carry a gRPC status that is never INTERNAL, a stable code and, where it helps, the field, line and
file at fault. The server interceptor turns them into statuses with `ErrorDetails` in the trailing metadata; clients
turn such statuses back into the same exception classes (`from_rpc_error`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

import grpc

from tunery.common.v1 import common_pb2

DETAILS_KEY = "tunery-error-details-bin"


@dataclass(frozen=True, slots=True)
class Problem:
    """One precise problem (a line of a file, a field of a request)."""

    code: str
    message: str
    field: str = ""
    line: int = 0
    file: str = ""
    severity: str = "error"

    def to_proto(self) -> common_pb2.ProblemDetail:
        sev = (
            common_pb2.ProblemDetail.SEVERITY_WARNING
            if self.severity == "warning"
            else common_pb2.ProblemDetail.SEVERITY_ERROR
        )
        return common_pb2.ProblemDetail(
            code=self.code, message=self.message, field=self.field, line=self.line, file=self.file, severity=sev
        )

    @classmethod
    def from_proto(cls, p: common_pb2.ProblemDetail) -> Problem:
        sev = "warning" if p.severity == common_pb2.ProblemDetail.SEVERITY_WARNING else "error"
        return cls(code=p.code, message=p.message, field=p.field, line=p.line, file=p.file, severity=sev)


@dataclass
class TuneryError(Exception):
    """Base of all errors a caller can cause or see."""

    message: str
    code: str = "error"
    field: str = ""
    problems: Sequence[Problem] = dataclasses.field(default_factory=tuple)
    problem_count: int = 0

    status = grpc.StatusCode.UNKNOWN

    def __post_init__(self) -> None:
        super().__init__(self.message)
        if not self.problem_count:
            self.problem_count = len(self.problems)

    def __str__(self) -> str:
        return self.message

    def to_details(self) -> common_pb2.ErrorDetails:
        return common_pb2.ErrorDetails(
            code=self.code,
            message=self.message,
            field=self.field,
            problems=[p.to_proto() for p in self.problems],
            problem_count=self.problem_count,
        )


class InvalidArgument(TuneryError):
    status = grpc.StatusCode.INVALID_ARGUMENT


class NotFound(TuneryError):
    status = grpc.StatusCode.NOT_FOUND


class AlreadyExists(TuneryError):
    status = grpc.StatusCode.ALREADY_EXISTS


class FailedPrecondition(TuneryError):
    status = grpc.StatusCode.FAILED_PRECONDITION


class ResourceExhausted(TuneryError):
    status = grpc.StatusCode.RESOURCE_EXHAUSTED


class Unavailable(TuneryError):
    status = grpc.StatusCode.UNAVAILABLE


class Internal(TuneryError):
    """A bug or an environment failure, never a user's mistake."""

    status = grpc.StatusCode.INTERNAL


_BY_STATUS: dict[grpc.StatusCode, type[TuneryError]] = {
    cls.status: cls
    for cls in (InvalidArgument, NotFound, AlreadyExists, FailedPrecondition, ResourceExhausted, Unavailable, Internal)
}


def required(value: object, field_name: str) -> None:
    """Reject a missing (empty) request field with a message that names it."""
    if value in ("", None, 0, b"") or (isinstance(value, (list, tuple)) and not value):
        raise InvalidArgument(f"field '{field_name}' is required", code="missing_field", field=field_name)


def details_from_metadata(metadata: Sequence[tuple[str, str | bytes]] | None) -> common_pb2.ErrorDetails | None:
    for key, value in metadata or ():
        if key == DETAILS_KEY and isinstance(value, bytes):
            details = common_pb2.ErrorDetails()
            details.ParseFromString(value)
            return details
    return None


def from_rpc_error(err: grpc.RpcError) -> TuneryError:
    """Rebuild the typed error from a failed call, details included."""
    code = err.code() if hasattr(err, "code") else grpc.StatusCode.UNKNOWN
    message = err.details() if hasattr(err, "details") else str(err)
    meta = err.trailing_metadata() if hasattr(err, "trailing_metadata") else None
    details = details_from_metadata(meta)  # type: ignore[arg-type]
    cls = _BY_STATUS.get(code, TuneryError)
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return Unavailable(f"the call ran past its deadline: {message}", code="deadline_exceeded")
    if details is None:
        return cls(message or code.name, code=code.name.lower())
    return cls(
        details.message or message or "",
        code=details.code,
        field=details.field,
        problems=tuple(Problem.from_proto(p) for p in details.problems),
        problem_count=details.problem_count,
    )
