"""The gRPC edge of the error hierarchy: `tunery.errors` classes <-> status codes with `ErrorDetails`.

A server turns a `TuneryError` into its status and puts `tunery.common.v1.ErrorDetails` (code, field, every problem
with its line) into the trailing metadata; a client turns such a failed call back into the same exception class.
"""

from __future__ import annotations

from collections.abc import Sequence

import grpc

from tunery.common.v1 import common_pb2
from tunery.errors import (
    AlreadyExists,
    FailedPrecondition,
    Internal,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    Problem,
    ResourceExhausted,
    TuneryError,
    Unauthenticated,
    Unavailable,
)

DETAILS_KEY = "tunery-error-details-bin"

_STATUS: dict[type[TuneryError], grpc.StatusCode] = {
    InvalidArgument: grpc.StatusCode.INVALID_ARGUMENT,
    NotFound: grpc.StatusCode.NOT_FOUND,
    AlreadyExists: grpc.StatusCode.ALREADY_EXISTS,
    FailedPrecondition: grpc.StatusCode.FAILED_PRECONDITION,
    ResourceExhausted: grpc.StatusCode.RESOURCE_EXHAUSTED,
    Unavailable: grpc.StatusCode.UNAVAILABLE,
    Unauthenticated: grpc.StatusCode.UNAUTHENTICATED,
    PermissionDenied: grpc.StatusCode.PERMISSION_DENIED,
    Internal: grpc.StatusCode.INTERNAL,
}
_BY_STATUS: dict[grpc.StatusCode, type[TuneryError]] = {v: k for k, v in _STATUS.items()}
_SEVERITY = {"warning": common_pb2.ProblemDetail.SEVERITY_WARNING, "error": common_pb2.ProblemDetail.SEVERITY_ERROR}


def status_of(err: BaseException) -> grpc.StatusCode:
    """The status of an error: the most specific class along its MRO; INTERNAL for anything that is not ours."""
    for cls in type(err).__mro__:
        if cls in _STATUS:
            return _STATUS[cls]
    return grpc.StatusCode.UNKNOWN if isinstance(err, TuneryError) else grpc.StatusCode.INTERNAL


def problem_to_proto(p: Problem) -> common_pb2.ProblemDetail:
    return common_pb2.ProblemDetail(
        code=p.code, message=p.message, field=p.field, line=p.line, file=p.file, severity=_SEVERITY[p.severity]
    )


def problem_from_proto(p: common_pb2.ProblemDetail) -> Problem:
    sev = "warning" if p.severity == common_pb2.ProblemDetail.SEVERITY_WARNING else "error"
    return Problem(code=p.code, message=p.message, field=p.field, line=p.line, file=p.file, severity=sev)


def to_details(err: TuneryError) -> common_pb2.ErrorDetails:
    return common_pb2.ErrorDetails(
        code=err.code,
        message=err.message,
        field=err.field,
        problems=[problem_to_proto(p) for p in err.problems],
        problem_count=err.problem_count,
    )


def trailing_metadata(err: TuneryError) -> tuple[tuple[str, bytes], ...]:
    return ((DETAILS_KEY, to_details(err).SerializeToString()),)


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
        problems=tuple(problem_from_proto(p) for p in details.problems),
        problem_count=details.problem_count,
    )
