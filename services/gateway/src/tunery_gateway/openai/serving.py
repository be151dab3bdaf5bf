"""The life of one inference call, shared by chat and text completions.

`OpenAIServing.create` resolves the model and submits to the engine before any response byte is sent (so bad input
and overload get a real status code, also for `stream=true`), then answers in full or as server-sent events. A
`CallObserver` follows the call from start to end: the GenAI span, the Prometheus series and the request log are all
written from the same record in `finish`, exactly once, whatever way the call ends (done, error, client gone).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any, TypeVar

import orjson
from fastapi import Request
from fastapi.responses import Response, StreamingResponse
from opentelemetry import trace
from opentelemetry.propagate import extract
from opentelemetry.trace import SpanKind, Status, StatusCode
from pydantic import BaseModel, ValidationError

from tunery.errors import InvalidArgument
from tunery_gateway import telemetry as t
from tunery_gateway.engines.base import (
    AdapterRef,
    Finished,
    Generation,
    GenerationRequest,
    SamplingParams,
    ServedBase,
    TextDelta,
)
from tunery_gateway.errors import openai_error
from tunery_gateway.keys import KeyInfo
from tunery_gateway.openai.protocol import SamplingRequest, usage
from tunery_gateway.runtime import Gateway

SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
DONE = b"data: [DONE]\n\n"


def sse(obj: Any) -> bytes:
    return b"data: " + orjson.dumps(obj) + b"\n\n"


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type="application/json", headers=headers)


class CallObserver:
    def __init__(self, gw: Gateway, endpoint: str, operation: str, request_id: str, body: SamplingRequest,
                 key: KeyInfo, request: Request, content: Any) -> None:
        self.gw = gw
        self.endpoint = endpoint
        self.request_id = request_id
        self.body = body
        self.key = key
        self.content = content
        self.t0 = time.perf_counter()
        self.created = int(time.time())
        self.ttft: float | None = None
        self.model_label = "unknown"
        self.base_id = ""
        self.prompt_tokens = 0
        self.ended = False
        attrs: dict[str, Any] = {
            t.OPERATION: operation, t.PROVIDER: "tunery", t.REQUEST_MODEL: body.model, t.OUTPUT_TYPE: "text",
            "tunery.engine": gw.settings.engine, "tunery.api_key.id": key.id, "tunery.stream": body.stream,
            "tunery.request_log.id": request_id,
        }
        if request.url.hostname:
            attrs["server.address"] = request.url.hostname
        if request.url.port:
            attrs["server.port"] = request.url.port
        for name, value in ((t.TEMPERATURE, body.temperature), (t.TOP_P, body.top_p), (t.SEED, body.seed)):
            if value is not None:
                attrs[name] = value
        limit = body.token_limit() if hasattr(body, "token_limit") else body.max_tokens
        if limit is not None:
            attrs[t.MAX_TOKENS] = limit
        if body.stop_sequences():
            attrs[t.STOP_SEQUENCES] = list(body.stop_sequences())
        if body.n != 1:
            attrs[t.CHOICE_COUNT] = body.n
        if gw.settings.trace_content and content is not None:
            attrs[t.INPUT_MESSAGES] = orjson.dumps(content).decode()
        self.span = gw.tracer.start_span(f"{operation} {body.model}", context=extract(request.headers),
                                         kind=SpanKind.SERVER, attributes=attrs)
        gw.metrics.inflight.inc()

    def resolved(self, base: ServedBase, adapter: AdapterRef | None) -> None:
        self.model_label = adapter.model_id if adapter is not None else base.id
        self.base_id = base.id
        if adapter is not None:
            self.span.set_attribute("tunery.base_model", base.id)

    def first_token(self) -> None:
        if self.ttft is None:
            self.ttft = time.perf_counter() - self.t0
            self.span.add_event("gen_ai.first_token")

    def finish(self, *, texts: list[str] | None = None, reasons: list[str] | None = None, completion_tokens: int = 0,
               error: BaseException | None = None, cancelled: bool = False) -> None:
        if self.ended:
            return
        self.ended = True
        gw, span, m = self.gw, self.span, self.gw.metrics
        latency = time.perf_counter() - self.t0
        status, http_status, code, message = "ok", 200, "", ""
        if cancelled:
            status, http_status, code, message = "cancelled", 499, "client_disconnected", "the client disconnected"
        elif error is not None:
            http_status, body, _ = openai_error(error)
            status, code, message = "error", body["error"]["code"] or body["error"]["type"], body["error"]["message"]
        span.set_attribute(t.RESPONSE_ID, self.request_id)
        if self.model_label != "unknown":
            span.set_attribute(t.RESPONSE_MODEL, self.model_label)
        span.set_attribute(t.INPUT_TOKENS, self.prompt_tokens)
        span.set_attribute(t.OUTPUT_TOKENS, completion_tokens)
        span.set_attribute("http.response.status_code", http_status)
        if reasons:
            span.set_attribute(t.FINISH_REASONS, reasons)
        if self.ttft is not None:
            span.set_attribute(t.TIME_TO_FIRST_TOKEN, self.ttft)
        if gw.settings.trace_content and texts is not None:
            span.set_attribute(t.OUTPUT_MESSAGES, orjson.dumps(
                [{"role": "assistant", "content": x, "finish_reason": r}
                 for x, r in zip(texts, reasons or [""] * len(texts), strict=False)]).decode())
        if status != "ok":
            span.set_attribute(t.ERROR_TYPE, code or status)
            span.set_status(Status(StatusCode.ERROR, message[:200]))
        trace_id = format(span.get_span_context().trace_id, "032x") if span.get_span_context().is_valid else ""
        span.end()
        label = self.model_label
        m.inflight.dec()
        m.requests.labels(self.endpoint, label, status).inc()
        m.latency.labels(self.endpoint, label).observe(latency)
        if status != "ok":
            m.errors.labels(self.endpoint, label, code or status).inc()
        if self.prompt_tokens:
            m.tokens.labels(label, "input").inc(self.prompt_tokens)
        if completion_tokens:
            m.tokens.labels(label, "output").inc(completion_tokens)
        if self.ttft is not None:
            m.ttft.labels(label).observe(self.ttft)
            if completion_tokens > 1 and latency > self.ttft:
                m.tps.labels(label).observe((completion_tokens - 1) / (latency - self.ttft))
        if gw.logs is None:
            return
        store_text = gw.settings.log_content
        b = self.body
        gw.logs.put({
            "id": self.request_id, "endpoint": self.endpoint, "model": b.model[:600], "base_model": self.base_id,
            "key_id": self.key.id, "user": (b.user or "")[:256], "request_metadata": b.metadata or {},
            "request": self.content if store_text else None,
            "params": {"temperature": b.temperature, "top_p": b.top_p, "max_tokens": b.token_limit()
                       if hasattr(b, "token_limit") else b.max_tokens, "n": b.n, "stop": list(b.stop_sequences()),
                       "seed": b.seed, "stream": b.stream},
            "completion": texts if store_text and texts is not None else None,
            "finish_reasons": ",".join(reasons or []), "prompt_tokens": self.prompt_tokens,
            "completion_tokens": completion_tokens, "latency_ms": latency * 1000,
            "ttft_ms": self.ttft * 1000 if self.ttft is not None else None, "status": status,
            "http_status": http_status, "error_code": code[:64], "error_message": message, "stream": b.stream,
            "trace_id": trace_id, "created_at": _utc(self.created),
        })


def _utc(ts: int) -> Any:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(ts, UTC)


class OpenAIServing:
    """Subclasses say how a request becomes a `GenerationRequest` and how results look on the wire."""

    endpoint = ""
    operation = ""
    id_prefix = ""

    def __init__(self, gw: Gateway) -> None:
        self.gw = gw

    # ---- per resource -----------------------------------------------------------------------------------------------

    def content(self, body: Any) -> Any:
        raise NotImplementedError

    def generation_request(self, body: Any, request_id: str, base: ServedBase, adapter: AdapterRef | None,
                           params: SamplingParams) -> GenerationRequest:
        raise NotImplementedError

    def full_body(self, obs: CallObserver, body: Any, texts: list[str], reasons: list[str],
                  use: dict[str, Any]) -> dict[str, Any]:
        raise NotImplementedError

    def start_chunks(self, obs: CallObserver, body: Any) -> list[dict[str, Any]]:
        return []

    def delta_chunk(self, obs: CallObserver, body: Any, index: int, text: str,
                    finish_reason: str | None) -> dict[str, Any]:
        raise NotImplementedError

    def usage_chunk(self, obs: CallObserver, body: Any, use: dict[str, Any]) -> dict[str, Any]:
        raise NotImplementedError

    def default_max_tokens(self, body: Any) -> int | None:
        return body.max_tokens  # type: ignore[no-any-return]

    # ---- shared -----------------------------------------------------------------------------------------------------

    async def create(self, body: Any, request: Request, key: KeyInfo) -> Response:
        request_id = f"{self.id_prefix}-{uuid.uuid4().hex}"
        obs = CallObserver(self.gw, self.endpoint, self.operation, request_id, body, key, request, self.content(body))
        try:
            with trace.use_span(obs.span, end_on_exit=False):
                bad = body.unsupported()
                if bad:
                    raise InvalidArgument(f"'{bad}' is not supported by this gateway", code="unsupported_parameter",
                                          field=bad)
                base, adapter = await self.gw.registry.resolve(body.model)
                obs.resolved(base, adapter)
                params = SamplingParams(
                    temperature=1.0 if body.temperature is None else body.temperature,
                    top_p=1.0 if body.top_p is None else body.top_p, max_tokens=self.default_max_tokens(body),
                    stop=body.stop_sequences(), seed=body.seed, n=body.n)
                gen = await self.gw.engine.generate(self.generation_request(body, request_id, base, adapter, params))
                obs.prompt_tokens = gen.prompt_tokens
        except BaseException as err:
            obs.finish(error=err if isinstance(err, Exception) else None, cancelled=not isinstance(err, Exception))
            raise
        headers = {"x-request-id": request_id}
        if body.stream:
            return StreamingResponse(self._stream(gen, obs, body), media_type="text/event-stream",
                                     headers=SSE_HEADERS | headers)
        return await self._complete(gen, obs, body, request, headers)

    async def _collect(self, gen: Generation, obs: CallObserver, texts: list[str], reasons: list[str]) -> int:
        tokens = 0
        async for ev in gen.events():
            if isinstance(ev, TextDelta):
                obs.first_token()
                texts[ev.index] += ev.text
            elif isinstance(ev, Finished):
                obs.first_token()
                reasons[ev.index] = ev.finish_reason
                tokens += ev.completion_tokens
        return tokens

    async def _complete(self, gen: Generation, obs: CallObserver, body: Any, request: Request,
                        headers: dict[str, str]) -> Response:
        texts, reasons = [""] * body.n, ["stop"] * body.n
        work = asyncio.ensure_future(self._collect(gen, obs, texts, reasons))
        gone = asyncio.ensure_future(_disconnected(request))
        try:
            await asyncio.wait({work, gone}, return_when=asyncio.FIRST_COMPLETED)
            if not work.done():  # the client went away: stop generating for nobody
                work.cancel()
                gen.cancel()
                obs.finish(texts=texts, reasons=reasons, cancelled=True)
                return Response(status_code=499)
            tokens = work.result()
        except Exception as err:
            obs.finish(texts=texts, error=err)
            raise
        except BaseException:
            gen.cancel()
            obs.finish(texts=texts, cancelled=True)
            raise
        finally:
            gone.cancel()
            if not work.done():
                work.cancel()
        obs.prompt_tokens = gen.prompt_tokens  # engines that learn it only at the end (tgi) have it now
        use = usage(gen.prompt_tokens, tokens)
        obs.finish(texts=texts, reasons=reasons, completion_tokens=tokens)
        return json_response(self.full_body(obs, body, texts, reasons, use), headers=headers)

    async def _stream(self, gen: Generation, obs: CallObserver, body: Any) -> AsyncIterator[bytes]:
        texts, reasons = [""] * body.n, ["stop"] * body.n
        tokens = 0
        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        try:
            for chunk in self.start_chunks(obs, body):
                yield sse(chunk)
            async for ev in gen.events():
                if isinstance(ev, TextDelta):
                    obs.first_token()
                    texts[ev.index] += ev.text
                    yield sse(self.delta_chunk(obs, body, ev.index, ev.text, None))
                elif isinstance(ev, Finished):
                    obs.first_token()
                    reasons[ev.index] = ev.finish_reason
                    tokens += ev.completion_tokens
                    yield sse(self.delta_chunk(obs, body, ev.index, "", ev.finish_reason))
            obs.prompt_tokens = gen.prompt_tokens
            if include_usage:
                yield sse(self.usage_chunk(obs, body, usage(gen.prompt_tokens, tokens)))
            obs.finish(texts=texts, reasons=reasons, completion_tokens=tokens)
            yield DONE
        except Exception as err:  # after the status line: report in-band, as OpenAI does
            obs.finish(texts=texts, completion_tokens=tokens, error=err)
            _, err_body, _ = openai_error(err)
            yield sse(err_body)
            yield DONE
        finally:
            gen.cancel()
            obs.finish(texts=texts, completion_tokens=tokens, cancelled=True)  # no-op unless the client left


async def _disconnected(request: Request) -> None:
    """Returns when the client closes the connection (the body has been read, so only a disconnect can arrive)."""
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return


async def read_json(request: Request) -> Any:
    """The body as JSON, with a 400 that says where it broke instead of FastAPI's generic complaint."""
    raw = await request.body()
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as err:
        raise InvalidArgument(f"the request body is not valid JSON: {err}", code="invalid_json") from err



def validation_message(err: ValidationError) -> tuple[str, str]:
    """('field', 'message') of the first problem, named the way OpenAI names fields (messages[0].role)."""
    first = err.errors()[0]
    path = ""
    for part in first.get("loc", ()):
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    msg = str(first.get("msg", "invalid value")).removeprefix("Value error, ")
    if "input" in first and first.get("type") in ("literal_error", "enum"):
        msg += f" (got {first['input']!r})"
    return path, f"{path}: {msg}" if path else msg


M = TypeVar("M", bound=BaseModel)


async def parse_body(request: Request, model: type[M]) -> M:
    data = await read_json(request)
    if not isinstance(data, dict):
        raise InvalidArgument("the request body must be a JSON object", code="invalid_json")
    try:
        return model.model_validate(data)
    except ValidationError as err:
        field, message = validation_message(err)
        raise InvalidArgument(message, code="invalid_value", field=field) from err
