"""One gRPC connection per CLI command, and the one-line errors its failures become."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import grpc

from tunery.cli import output
from tunery.errors import TuneryError, Unavailable
from tunery.runtime.client import channel
from tunery.runtime.grpcerrors import details_from_metadata, from_rpc_error
from tunery.up import service_address

Stub = TypeVar("Stub")


def rpc_error(err: grpc.RpcError, addr: str, service: str) -> TuneryError:
    """The service's own error (from its ErrorDetails), or what a missing or wrong service means, in words."""
    code = err.code() if hasattr(err, "code") else None
    meta = err.trailing_metadata() if hasattr(err, "trailing_metadata") else None
    ours = details_from_metadata(meta) is not None  # type: ignore[arg-type]
    if code == grpc.StatusCode.UNAVAILABLE and not ours:
        return Unavailable(f"cannot reach the {service} service at {addr}: is `tunery up` running?", code="unreachable")
    if code == grpc.StatusCode.UNIMPLEMENTED and not ours:
        return TuneryError(
            f"{addr} does not serve the {service} API: is that the {service} service's address?", code="unimplemented"
        )
    return from_rpc_error(err)


@contextmanager
def connect(
    service: str,
    stub_class: Callable[[grpc.Channel], Stub],
    addr: str | None,
    refine: Callable[[TuneryError], TuneryError] = lambda e: e,
) -> Iterator[Stub]:
    """A stub on a fresh channel to `addr` (default: up.json, else the service's port); any failure inside ends the
    command with one clear line and exit code 1."""
    target = ""
    ch: Any = None
    try:
        target = addr or service_address(service)
        ch = channel(target)
    except TuneryError as err:
        output.fail(err)
    try:
        yield stub_class(ch)
    except grpc.RpcError as err:
        output.fail(refine(rpc_error(err, target, service)))
    except TuneryError as err:
        output.fail(err)
    finally:
        ch.close()
