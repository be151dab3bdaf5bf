"""The asyncio gRPC server every service runs: health, reflection, error mapping and a graceful drain."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import signal
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from opentelemetry import propagate, trace

from tunery.errors import TuneryError
from tunery.runtime.grpcerrors import status_of, trailing_metadata

log = logging.getLogger("tunery.server")

MAX_MESSAGE_BYTES = 16 * 1024 * 1024
SERVER_OPTIONS = [
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ("grpc.so_reuseport", 0),
]


async def _abort(context: grpc.aio.ServicerContext, err: BaseException, method: str) -> None:
    if isinstance(err, TuneryError):
        await context.abort(status_of(err), err.message, trailing_metadata=trailing_metadata(err))
    log.exception("unexpected error in %s", method, exc_info=err)
    await context.abort(
        grpc.StatusCode.INTERNAL, f"internal error in {method}: {type(err).__name__}; see the service log"
    )


def _span(tracer: trace.Tracer, method: str, context: grpc.aio.ServicerContext) -> Any:
    """A SERVER span joined to the caller's trace (W3C traceparent in the call's metadata)."""
    carrier = {k: v for k, v in (context.invocation_metadata() or ()) if isinstance(v, str)}
    service, _, name = method.lstrip("/").partition("/")
    return tracer.start_as_current_span(
        method.lstrip("/"),
        context=propagate.extract(carrier),
        kind=trace.SpanKind.SERVER,
        attributes={"rpc.system": "grpc", "rpc.service": service, "rpc.method": name},
        record_exception=False,
        set_status_on_exception=False,
    )


def _mark(span: Any, err: BaseException) -> None:
    status = status_of(err)
    span.set_attribute("rpc.grpc.status_code", status.value[0])
    if status == grpc.StatusCode.INTERNAL:
        span.set_status(trace.Status(trace.StatusCode.ERROR, type(err).__name__))
    if isinstance(err, TuneryError):
        span.set_attribute("error.type", err.code)


class ErrorInterceptor(grpc.aio.ServerInterceptor):
    """Every call: a tracing span joined to the caller's trace; `TuneryError` becomes its status with
    `ErrorDetails`; anything else is INTERNAL and logged."""

    def __init__(self, tracer_provider: trace.TracerProvider | None = None) -> None:
        self.tracer_provider = tracer_provider

    @property
    def tracer(self) -> trace.Tracer:
        return (self.tracer_provider or trace.get_tracer_provider()).get_tracer("tunery.grpc")

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        if handler is None:
            return handler
        method = handler_call_details.method

        def wrap_unary(fn: Callable[..., Any]) -> Callable[..., Any]:
            async def inner(request: Any, context: grpc.aio.ServicerContext) -> Any:
                with _span(self.tracer, method, context) as span:
                    try:
                        return await fn(request, context)
                    except (asyncio.CancelledError, grpc.aio.AbortError):
                        raise
                    except Exception as err:  # mapped to a status, never lost
                        _mark(span, err)
                        await _abort(context, err, method)

            return inner

        def wrap_stream(fn: Callable[..., Any]) -> Callable[..., Any]:
            async def inner(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
                with _span(self.tracer, method, context) as span:
                    try:
                        async for item in fn(request, context):
                            yield item
                    except (asyncio.CancelledError, grpc.aio.AbortError):
                        raise
                    except Exception as err:
                        _mark(span, err)
                        await _abort(context, err, method)

            return inner

        if handler.unary_unary:
            return grpc.unary_unary_rpc_method_handler(
                wrap_unary(handler.unary_unary), handler.request_deserializer, handler.response_serializer
            )
        if handler.stream_unary:
            return grpc.stream_unary_rpc_method_handler(
                wrap_unary(handler.stream_unary), handler.request_deserializer, handler.response_serializer
            )
        if handler.unary_stream and inspect.isasyncgenfunction(handler.unary_stream):
            return grpc.unary_stream_rpc_method_handler(
                wrap_stream(handler.unary_stream), handler.request_deserializer, handler.response_serializer
            )
        if handler.stream_stream and inspect.isasyncgenfunction(handler.stream_stream):
            return grpc.stream_stream_rpc_method_handler(
                wrap_stream(handler.stream_stream), handler.request_deserializer, handler.response_serializer
            )
        return handler


@dataclass
class Registration:
    """A servicer, the generated `add_XServicer_to_server` function, and its full service name."""

    servicer: Any
    add_to_server: Callable[[Any, grpc.aio.Server], None]
    service_name: str


class GrpcServer:
    """Owns one grpc.aio server; `start` binds, `stop` drains within the grace period."""

    def __init__(
        self,
        registrations: Sequence[Registration],
        address: str,
        *,
        grace: float = 10.0,
        drain_delay: float = 0.0,
        interceptors: Sequence[grpc.aio.ServerInterceptor] = (),
        tracer_provider: trace.TracerProvider | None = None,
    ) -> None:
        self.registrations = list(registrations)
        self.address = address
        self.grace = grace
        self.drain_delay = drain_delay
        self.interceptors = [ErrorInterceptor(tracer_provider), *interceptors]
        self.port = 0

    async def start(self) -> int:
        # Created here, not in __init__: a grpc.aio server binds to the event loop that is running when it is made.
        self.server = grpc.aio.server(interceptors=self.interceptors, options=SERVER_OPTIONS)
        self.health = health.aio.HealthServicer()
        for reg in self.registrations:
            reg.add_to_server(reg.servicer, self.server)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        names = [r.service_name for r in self.registrations]
        reflection.enable_server_reflection([*names, health.SERVICE_NAME, reflection.SERVICE_NAME], self.server)
        self.port = self.server.add_insecure_port(self.address)
        if self.port == 0:
            raise OSError(f"could not bind gRPC server to {self.address} (port in use?)")
        await self.server.start()
        for name in ["", *names]:
            await self.health.set(name, health_pb2.HealthCheckResponse.SERVING)
        return self.port

    async def stop(self) -> None:
        """Report NOT_SERVING first so balancers move away, then let in-flight calls finish."""
        await self.health.enter_graceful_shutdown()
        if self.drain_delay:
            await asyncio.sleep(self.drain_delay)
        await self.server.stop(self.grace)

    async def wait(self) -> None:
        await self.server.wait_for_termination()


async def run_until_signal(server: GrpcServer, on_stop: Callable[[], Awaitable[None]] | None = None) -> None:
    """Serve until SIGTERM/SIGINT, then drain and run `on_stop` (closing NATS, the store, ...)."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("signal received: draining")
    await server.stop()
    if on_stop is not None:
        await on_stop()
    log.info("stopped")
