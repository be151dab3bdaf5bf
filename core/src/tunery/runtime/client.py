"""Client channels whose every call has a deadline, even where the caller forgot one."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc

DEFAULT_TIMEOUT = 30.0
CHANNEL_OPTIONS = [
    ("grpc.max_receive_message_length", 16 * 1024 * 1024),
    ("grpc.max_send_message_length", 16 * 1024 * 1024),
    ("grpc.enable_retries", 1),
]


def _with_deadline(details: Any, timeout: float) -> Any:
    if details.timeout is not None:
        return details
    return details._replace(timeout=timeout)


class _DeadlineInterceptor(
    grpc.UnaryUnaryClientInterceptor,
    grpc.UnaryStreamClientInterceptor,
    grpc.StreamUnaryClientInterceptor,
    grpc.StreamStreamClientInterceptor,
):
    def __init__(self, timeout: float) -> None:
        self.timeout = timeout

    def intercept_unary_unary(self, continuation: Callable[..., Any], details: Any, request: Any) -> Any:
        return continuation(_with_deadline(details, self.timeout), request)

    def intercept_unary_stream(self, continuation: Callable[..., Any], details: Any, request: Any) -> Any:
        return continuation(_with_deadline(details, self.timeout), request)

    def intercept_stream_unary(self, continuation: Callable[..., Any], details: Any, request_iterator: Any) -> Any:
        return continuation(_with_deadline(details, self.timeout), request_iterator)

    def intercept_stream_stream(self, continuation: Callable[..., Any], details: Any, request_iterator: Any) -> Any:
        return continuation(_with_deadline(details, self.timeout), request_iterator)


class _AioDeadline(grpc.aio.UnaryUnaryClientInterceptor, grpc.aio.StreamUnaryClientInterceptor):
    def __init__(self, timeout: float) -> None:
        self.timeout = timeout

    async def intercept_unary_unary(self, continuation: Callable[..., Any], details: Any, request: Any) -> Any:
        return await continuation(_with_deadline(details, self.timeout), request)

    async def intercept_stream_unary(
        self, continuation: Callable[..., Any], details: Any, request_iterator: Any
    ) -> Any:
        return await continuation(_with_deadline(details, self.timeout), request_iterator)


class _AioStreamDeadline(grpc.aio.UnaryStreamClientInterceptor, grpc.aio.StreamStreamClientInterceptor):
    def __init__(self, timeout: float) -> None:
        self.timeout = timeout

    async def intercept_unary_stream(self, continuation: Callable[..., Any], details: Any, request: Any) -> Any:
        return await continuation(_with_deadline(details, self.timeout), request)

    async def intercept_stream_stream(
        self, continuation: Callable[..., Any], details: Any, request_iterator: Any
    ) -> Any:
        return await continuation(_with_deadline(details, self.timeout), request_iterator)


def channel(target: str, *, timeout: float = DEFAULT_TIMEOUT) -> grpc.Channel:
    """A blocking channel (CLI, tests) with a default deadline on every call."""
    return grpc.intercept_channel(grpc.insecure_channel(target, options=CHANNEL_OPTIONS), _DeadlineInterceptor(timeout))


def aio_channel(target: str, *, timeout: float = DEFAULT_TIMEOUT) -> grpc.aio.Channel:
    """An asyncio channel (service to service) with a default deadline on every call."""
    return grpc.aio.insecure_channel(
        target, options=CHANNEL_OPTIONS, interceptors=[_AioDeadline(timeout), _AioStreamDeadline(timeout)]
    )
