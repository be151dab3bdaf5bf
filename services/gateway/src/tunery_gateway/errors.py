"""The one place where exceptions become OpenAI-shaped HTTP errors.

Domain code raises the shared `tunery.errors` hierarchy (plain Python) plus the few HTTP-only kinds below;
`openai_error` turns any exception into `(status, {"error": {"message", "type", "param", "code"}}, headers)`, so
every route, the body limit and validation failures answer in the same shape the official client parses.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any

from tunery.errors import (
    AlreadyExists,
    FailedPrecondition,
    Internal,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    ResourceExhausted,
    TuneryError,
    Unauthenticated,
    Unavailable,
)

__all__ = ["PermissionDenied", "Unauthenticated"]  # re-exported: routes raise them from here

log = logging.getLogger("tunery.gateway.errors")


class PayloadTooLarge(InvalidArgument):
    pass


@dataclass
class RateLimited(ResourceExhausted):
    retry_after: float = 1.0


@dataclass
class Overloaded(Unavailable):
    retry_after: float = 1.0


# (HTTP status, OpenAI error type); the most specific class wins (checked along the MRO).
_HTTP: dict[type[TuneryError], tuple[int, str]] = {
    Unauthenticated: (401, "authentication_error"),
    PermissionDenied: (403, "permission_error"),
    PayloadTooLarge: (413, "invalid_request_error"),
    InvalidArgument: (400, "invalid_request_error"),
    FailedPrecondition: (400, "invalid_request_error"),
    NotFound: (404, "invalid_request_error"),
    AlreadyExists: (409, "invalid_request_error"),
    ResourceExhausted: (429, "rate_limit_error"),
    Unavailable: (503, "service_unavailable_error"),
    Internal: (500, "server_error"),
}


def error_body(message: str, type_: str, code: str | None = None, param: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": type_, "param": param or None, "code": code or None}}


def openai_error(err: BaseException) -> tuple[int, dict[str, Any], dict[str, str]]:
    """Status, body and headers for any exception; unexpected ones are logged and never leak their text."""
    if isinstance(err, TuneryError):
        for cls in type(err).__mro__:
            if cls in _HTTP:
                status, kind = _HTTP[cls]  # type: ignore[index]
                break
        else:
            status, kind = 500, "server_error"
        headers: dict[str, str] = {}
        retry = getattr(err, "retry_after", None)
        if retry is not None and status in (429, 503):
            headers["Retry-After"] = str(max(1, math.ceil(retry)))
        return status, error_body(err.message, kind, err.code, err.field), headers
    log.error("unexpected error", exc_info=err)
    return 500, error_body(f"internal error ({type(err).__name__}); see the gateway log", "server_error",
                           "internal_error"), {}
