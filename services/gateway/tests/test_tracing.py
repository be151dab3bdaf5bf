"""Traces with the OpenTelemetry SDK's in-memory exporter: GenAI attributes present, the caller's trace joined, no
key, no text unless configured; and the standard OTEL_* settings export over OTLP to a real receiver."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from tunery.runtime import telemetry as core_telemetry
from tunery_gateway import telemetry

HELLO = [{"role": "user", "content": "secret-prompt-text"}]


def span_for(gw: Any, response_id: str) -> Any:
    spans = [s for s in gw.spans.get_finished_spans() if s.attributes.get("gen_ai.response.id") == response_id]
    assert len(spans) == 1, [s.name for s in gw.spans.get_finished_spans()]
    return spans[0]


def test_chat_span_has_genai_attributes(gw: Any) -> None:
    gw.spans.clear()
    r = gw.client().chat.completions.create(model=gw.base, messages=HELLO, max_tokens=5, temperature=0.7, top_p=0.9,
                                            seed=3, stop=["zzz"], n=2)
    span = span_for(gw, r.id)
    a = span.attributes
    assert span.name == f"chat {gw.base}" and span.kind == SpanKind.SERVER
    assert a["gen_ai.operation.name"] == "chat"
    assert a["gen_ai.provider.name"] == "tunery"
    assert a["gen_ai.request.model"] == gw.base and a["gen_ai.response.model"] == gw.base
    assert a["gen_ai.request.temperature"] == 0.7 and a["gen_ai.request.top_p"] == 0.9
    assert a["gen_ai.request.seed"] == 3 and a["gen_ai.request.max_tokens"] == 5
    assert a["gen_ai.request.stop_sequences"] == ("zzz",) and a["gen_ai.request.choice.count"] == 2
    assert a["gen_ai.usage.input_tokens"] == r.usage.prompt_tokens  # type: ignore[union-attr]
    assert a["gen_ai.usage.output_tokens"] == r.usage.completion_tokens  # type: ignore[union-attr]
    assert list(a["gen_ai.response.finish_reasons"]) == [c.finish_reason for c in r.choices]
    assert 0 < a["gen_ai.server.time_to_first_token"] < (span.end_time - span.start_time) / 1e9
    assert a["tunery.api_key.id"] == "key_admin_env"
    assert "gen_ai.input.messages" not in a and "gen_ai.output.messages" not in a
    assert "secret-prompt-text" not in repr(dict(a))
    assert span.status.status_code != StatusCode.ERROR


def test_stream_and_text_completion_spans(gw: Any) -> None:
    gw.spans.clear()
    chunks = list(gw.client().chat.completions.create(model=gw.base, messages=HELLO, max_tokens=4, stream=True))
    span = span_for(gw, chunks[0].id)
    assert span.attributes["tunery.stream"] is True and span.attributes["gen_ai.usage.output_tokens"] >= 1
    assert "gen_ai.server.time_to_first_token" in span.attributes
    c = gw.client().completions.create(model=gw.base, prompt="hello", max_tokens=3)
    assert span_for(gw, c.id).attributes["gen_ai.operation.name"] == "text_completion"


def test_error_span(gw: Any) -> None:
    gw.spans.clear()
    r = gw.chat(model="no-such-model")
    span = span_for(gw, r.headers.get("x-request-id") or _only_id(gw))
    assert span.status.status_code == StatusCode.ERROR
    assert span.attributes["error.type"] == "model_not_found"
    assert span.attributes["http.response.status_code"] == 404


def _only_id(gw: Any) -> str:
    (span,) = gw.spans.get_finished_spans()
    return str(span.attributes["gen_ai.response.id"])


def test_joins_the_callers_trace(gw: Any) -> None:
    gw.spans.clear()
    trace_id, parent = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
    r = gw.http("POST", "/v1/chat/completions", headers={"traceparent": f"00-{trace_id}-{parent}-01"},
                json={"model": gw.base, "messages": HELLO, "max_tokens": 2})
    assert r.status_code == 200
    span = span_for(gw, r.json()["id"])
    assert format(span.context.trace_id, "032x") == trace_id
    assert format(span.parent.span_id, "016x") == parent
    # The request log points at the same trace.
    assert gw.http("GET", f"/v1/logs/{r.json()['id']}").json()["trace_id"] == trace_id


@pytest.fixture(scope="module")
def content_gw(gw: Any, extra_gateway: Any) -> Iterator[tuple[Any, InMemorySpanExporter]]:
    """A second gateway configured the other way round: text on spans, no text in request logs."""
    server, spans = extra_gateway("gw-content", trace_content=True, log_content=False, listen_job_events=False,
                                  base_models=str(gw.shared.tiny))
    yield server, spans
    server.stop()


def test_text_only_where_configured(gw: Any, content_gw: tuple[Any, InMemorySpanExporter]) -> None:
    import httpx

    server, spans = content_gw
    headers = {"Authorization": f"Bearer {gw.admin_key}"}
    r = httpx.post(f"{server.url}/v1/chat/completions", headers=headers, timeout=60,
                   json={"model": gw.base, "messages": HELLO, "max_tokens": 3})
    assert r.status_code == 200, r.text
    rid = r.json()["id"]
    (span,) = [s for s in spans.get_finished_spans() if (s.attributes or {}).get("gen_ai.response.id") == rid]
    attrs: Any = span.attributes
    assert "secret-prompt-text" in attrs["gen_ai.input.messages"]
    assert r.json()["choices"][0]["message"]["content"] in attrs["gen_ai.output.messages"]
    log = httpx.get(f"{server.url}/v1/logs/{r.json()['id']}", headers=headers).json()
    assert log["request"] is None and log["completion"] is None
    assert log["usage"]["prompt_tokens"] > 0  # the rest of the log is kept


class _Receiver(BaseHTTPRequestHandler):
    bodies: list[tuple[str, bytes]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        _Receiver.bodies.append((self.path, body))
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


def test_otlp_export_from_standard_env(monkeypatch: pytest.MonkeyPatch) -> None:
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", f"http://127.0.0.1:{httpd.server_address[1]}")
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
        monkeypatch.setenv("OTEL_SERVICE_NAME", "gateway-under-test")
        provider = telemetry.tracer_provider_from_env()
        with provider.get_tracer("t").start_as_current_span("chat some-model") as s:
            s.set_attribute("gen_ai.operation.name", "chat")
        provider.force_flush()
        provider.shutdown()
        path, body = _Receiver.bodies[-1]
        assert path == "/v1/traces"
        req = ExportTraceServiceRequest.FromString(body)
        rs = req.resource_spans[0]
        assert any(kv.value.string_value == "gateway-under-test" for kv in rs.resource.attributes)
        assert rs.scope_spans[0].spans[0].name == "chat some-model"
        monkeypatch.setenv("OTEL_TRACES_EXPORTER", "none")
        assert core_telemetry._exporter_from_env() is None
        monkeypatch.setenv("OTEL_TRACES_EXPORTER", "otlp")
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
        assert type(core_telemetry._exporter_from_env()).__module__.endswith("grpc.trace_exporter")
    finally:
        httpd.shutdown()
