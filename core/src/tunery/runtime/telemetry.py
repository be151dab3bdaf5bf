"""Tracing set-up shared by every service: the standard OTEL_* variables decide where spans go.

With OTEL_EXPORTER_OTLP_ENDPOINT (or ..._TRACES_ENDPOINT) set, spans are batched to that OTLP endpoint over
OTEL_EXPORTER_OTLP_PROTOCOL (`http/protobuf` by default, or `grpc`); OTEL_SERVICE_NAME names the resource;
OTEL_TRACES_EXPORTER=none turns export off. Without an endpoint, spans are made and dropped.
"""

from __future__ import annotations

import logging
import os

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter

log = logging.getLogger("tunery.telemetry")


def _exporter_from_env() -> SpanExporter | None:
    if os.environ.get("OTEL_TRACES_EXPORTER", "otlp").strip().lower() in ("none", ""):
        return None
    if not (os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")):
        return None
    protocol = (os.environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL")
                or "http/protobuf").strip().lower()
    if protocol == "grpc":
        try:
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcExporter
        except ImportError:
            log.warning("OTEL_EXPORTER_OTLP_PROTOCOL=grpc but opentelemetry-exporter-otlp-proto-grpc is not "
                        "installed; traces are not exported")
            return None
        return GrpcExporter()  # type: ignore[no-any-return]
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpExporter

    return HttpExporter()


def tracer_provider_from_env(default_service_name: str) -> TracerProvider:
    """A provider that exports per the standard OTEL_* variables (and drops spans cheaply without an endpoint)."""
    resource = Resource.create({"service.name": os.environ.get("OTEL_SERVICE_NAME", default_service_name)})
    provider = TracerProvider(resource=resource)
    exporter = _exporter_from_env()
    if exporter is not None:
        provider.add_span_processor(BatchSpanProcessor(exporter))
        log.info("exporting traces with %s", type(exporter).__module__)
    return provider


def install_global(default_service_name: str) -> TracerProvider:
    """For service processes: the global provider, so the gRPC server's spans are exported."""
    provider = tracer_provider_from_env(default_service_name)
    trace.set_tracer_provider(provider)
    return provider
