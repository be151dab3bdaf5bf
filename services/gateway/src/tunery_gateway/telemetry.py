"""Traces (OpenTelemetry, GenAI semantic conventions) and Prometheus metrics of the gateway.

Tracing follows the standard OTEL_* variables: with OTEL_EXPORTER_OTLP_ENDPOINT (or ..._TRACES_ENDPOINT) set, spans
are batched to that OTLP endpoint over OTEL_EXPORTER_OTLP_PROTOCOL (`http/protobuf` by default, or `grpc`);
OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES name the resource; OTEL_TRACES_EXPORTER=none turns export off.
Without an endpoint, spans are made and dropped (cheap), so code paths are the same everywhere.

Spans carry attribute values from a fixed list only: never a header, so never an API key; prompt and completion text
only with TUNERY_GATEWAY_TRACE_CONTENT=true. Metrics live in a registry per app (tests run several apps in one
process) and label by model only for models the gateway knows, so junk names cannot explode the series count.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Any

from opentelemetry.sdk.trace import TracerProvider
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from tunery.runtime.telemetry import tracer_provider_from_env as core_tracer_provider

log = logging.getLogger("tunery.gateway.telemetry")
disable_created_metrics()  # `_created` series double the output and no dashboard reads them

# GenAI semantic conventions (https://opentelemetry.io/docs/specs/semconv/gen-ai/).
OPERATION = "gen_ai.operation.name"
PROVIDER = "gen_ai.provider.name"
REQUEST_MODEL = "gen_ai.request.model"
RESPONSE_MODEL = "gen_ai.response.model"
RESPONSE_ID = "gen_ai.response.id"
FINISH_REASONS = "gen_ai.response.finish_reasons"
INPUT_TOKENS = "gen_ai.usage.input_tokens"
OUTPUT_TOKENS = "gen_ai.usage.output_tokens"
TEMPERATURE = "gen_ai.request.temperature"
TOP_P = "gen_ai.request.top_p"
MAX_TOKENS = "gen_ai.request.max_tokens"
SEED = "gen_ai.request.seed"
STOP_SEQUENCES = "gen_ai.request.stop_sequences"
CHOICE_COUNT = "gen_ai.request.choice.count"
OUTPUT_TYPE = "gen_ai.output.type"
TIME_TO_FIRST_TOKEN = "gen_ai.server.time_to_first_token"
INPUT_MESSAGES = "gen_ai.input.messages"
OUTPUT_MESSAGES = "gen_ai.output.messages"
ERROR_TYPE = "error.type"


def tracer_provider_from_env() -> TracerProvider:
    return core_tracer_provider("tunery-gateway")


_LATENCY = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 40, 80, 160)
_TTFT = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 40)
_TPS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000)


class _EngineCollector(Collector):
    """Reads the engine's counters when scraped, instead of mirroring every change."""

    def __init__(self, stats: Callable[[], dict[str, Any]]) -> None:
        self.stats = stats

    def collect(self) -> Iterator[GaugeMetricFamily]:
        stats = self.stats()
        for key, doc in (("running", "Sequences being decoded."), ("queued", "Sequences waiting for a slot."),
                         ("adapters_loaded", "LoRA adapters in memory.")):
            g = GaugeMetricFamily(f"tunery_gateway_engine_{key}", doc, labels=["base_model"])
            for base, s in stats.items():
                if key in s:
                    g.add_metric([base], float(s[key]))
            yield g


class Metrics:
    def __init__(self, engine_stats: Callable[[], dict[str, Any]]) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("tunery_gateway_requests", "Inference calls by outcome.",
                                ["endpoint", "model", "status"], registry=r)
        self.errors = Counter("tunery_gateway_request_errors", "Failed inference calls by error code.",
                              ["endpoint", "model", "code"], registry=r)
        self.latency = Histogram("tunery_gateway_request_duration_seconds", "Inference call latency.",
                                 ["endpoint", "model"], buckets=_LATENCY, registry=r)
        self.ttft = Histogram("tunery_gateway_time_to_first_token_seconds", "Time to the first generated token.",
                              ["model"], buckets=_TTFT, registry=r)
        self.tokens = Counter("tunery_gateway_tokens", "Tokens read and generated.", ["model", "type"], registry=r)
        self.tps = Histogram("tunery_gateway_output_tokens_per_second", "Decode speed of each call after its "
                             "first token.", ["model"], buckets=_TPS, registry=r)
        self.http = Counter("tunery_gateway_http_responses", "HTTP responses by route and status.",
                            ["route", "status"], registry=r)
        self.inflight = Gauge("tunery_gateway_inflight_requests", "Inference calls in progress.", registry=r)
        r.register(_EngineCollector(engine_stats))
