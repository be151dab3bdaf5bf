"""Wiring: settings -> database, engine plugin, model registry, keys, request logs, telemetry, job events -> FastAPI.

Routers are thin (one module per resource under openai/); every error of every route goes through
`errors.openai_error`, including bodies that are too large, malformed JSON, unknown routes and validation failures.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from opentelemetry.sdk.trace import TracerProvider
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tunery.errors import InvalidArgument, TuneryError
from tunery.runtime.artifacts import LocalArtifactStore
from tunery_gateway.auth import gateway, require
from tunery_gateway.engines.base import ENGINES, InferenceEngine
from tunery_gateway.errors import PayloadTooLarge, error_body, openai_error
from tunery_gateway.jobwatch import JobWatcher, durable_name
from tunery_gateway.keys import KeyStore
from tunery_gateway.openai.chat.router import router as chat_router
from tunery_gateway.openai.chat.serving import OpenAIServingChat
from tunery_gateway.openai.completions.router import router as completions_router
from tunery_gateway.openai.completions.serving import OpenAIServingCompletion
from tunery_gateway.openai.keys.router import router as keys_router
from tunery_gateway.openai.logs.router import router as logs_router
from tunery_gateway.openai.logs.serving import LogsService
from tunery_gateway.openai.models.router import router as models_router
from tunery_gateway.openai.models.serving import OpenAIServingModels
from tunery_gateway.openai.score.router import router as score_router
from tunery_gateway.openai.score.serving import OpenAIServingScore
from tunery_gateway.openai.serving import json_response
from tunery_gateway.registry import ModelRegistry
from tunery_gateway.runtime import Gateway
from tunery_gateway.settings import GatewaySettings
from tunery_gateway.store import AdapterStore, LogStore, LogWriter, open_engine
from tunery_gateway.telemetry import Metrics, tracer_provider_from_env

log = logging.getLogger("tunery.gateway")

UNAUTHENTICATED_BANNER = (
    "\n" + "!" * 100 + "\n"
    "!!  TUNERY_GATEWAY_ALLOW_UNAUTHENTICATED=true: the gateway answers /v1 WITHOUT API KEYS, every caller is admin.\n"
    "!!  For local development only. Never expose this gateway beyond 127.0.0.1.\n" + "!" * 100
)


class BodyLimit:
    """413 for bodies over the limit, checked on Content-Length first and then on the bytes actually received."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope["headers"]:
            if name == b"content-length" and value.isdigit() and int(value) > self.limit:
                await self._refuse(send, int(value))
                return
        seen = 0

        async def limited() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    raise PayloadTooLarge(f"the request body is larger than {self.limit} bytes",
                                          code="request_too_large")
            return message

        await self.app(scope, limited, send)

    async def _refuse(self, send: Send, size: int) -> None:
        status, body, _ = openai_error(PayloadTooLarge(
            f"the request body has {size} bytes; the limit is {self.limit} (TUNERY_GATEWAY_MAX_BODY_BYTES)",
            code="request_too_large"))
        import orjson

        payload = orjson.dumps(body)
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode()),
                                (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": payload})


class HttpMetrics:
    """Counts every HTTP response by route template (never the raw path: ids would explode the series)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            gw = scope["app"].state.gateway if hasattr(scope.get("app"), "state") else None
            route = getattr(scope.get("route"), "path", "unmatched")
            if gw is not None:
                gw.metrics.http.labels(route, str(status)).inc()


async def build_gateway(settings: GatewaySettings, engine: InferenceEngine | None = None,
                        tracer_provider: TracerProvider | None = None) -> Gateway:
    db_engine = await asyncio.to_thread(open_engine, settings)
    if engine is None:
        engine = ENGINES.get(settings.engine, field="engine")(settings)
    await engine.start()
    registry = ModelRegistry(engine, AdapterStore(db_engine))
    await registry.load()
    keys = KeyStore(db_engine, admin_key=settings.admin_api_key.get_secret_value(),
                    internal_key=settings.internal_api_key.get_secret_value())
    log_store = LogStore(db_engine)
    writer = LogWriter(log_store) if settings.log_requests else None
    provider = tracer_provider or tracer_provider_from_env()
    gw = Gateway(settings, db_engine, engine, registry, keys, log_store, writer, Metrics(engine.stats), provider,
                 provider.get_tracer("tunery.gateway"), owns_tracer_provider=tracer_provider is None)
    if settings.listen_job_events:
        gw.watcher = JobWatcher(settings.nats_url, registry, LocalArtifactStore(settings.artifact_root),
                                durable_name(settings.sqlalchemy_url()))
        gw.watcher.start()
    if settings.allow_unauthenticated:
        log.warning(UNAUTHENTICATED_BANNER)
    elif not settings.admin_api_key.get_secret_value() and not await gw.db(keys.list):
        log.warning("no API keys exist yet: every /v1 call gets 401 until you run `tunery keys create --name NAME "
                    "--scopes inference` (or set TUNERY_GATEWAY_ADMIN_API_KEY)")
    gw.ready = True
    return gw


def create_app(settings: GatewaySettings, *, engine: InferenceEngine | None = None,
               tracer_provider: TracerProvider | None = None) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        gw = await build_gateway(settings, engine, tracer_provider)
        app.state.gateway = gw
        app.state.chat = OpenAIServingChat(gw)
        app.state.completions = OpenAIServingCompletion(gw)
        app.state.models = OpenAIServingModels(gw)
        app.state.score = OpenAIServingScore(gw)
        app.state.logs = LogsService(gw)
        try:
            yield
        finally:
            await gw.close()

    app = FastAPI(title="Tunery gateway", version="0.1.0", lifespan=lifespan, docs_url=None, redoc_url=None)
    for r in (chat_router, completions_router, models_router, logs_router, keys_router, score_router):
        app.include_router(r)

    @app.exception_handler(TuneryError)
    async def tunery_error(request: Request, err: TuneryError) -> Response:
        status, body, headers = openai_error(err)
        return json_response(body, status, headers)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, err: RequestValidationError) -> Response:
        first = err.errors()[0] if err.errors() else {}
        field = ".".join(str(p) for p in first.get("loc", ()) if p not in ("query", "path", "body"))
        status, body, _ = openai_error(InvalidArgument(f"{field}: {first.get('msg', 'invalid value')}",
                                                       code="invalid_value", field=field))
        return json_response(body, status)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, err: StarletteHTTPException) -> Response:
        kind = "not_found_error" if err.status_code == 404 else "invalid_request_error"
        message = f"no route {request.method} {request.url.path}" if err.status_code in (404, 405) else str(err.detail)
        return json_response(error_body(message, kind, "unknown_route" if err.status_code == 404 else None),
                             err.status_code)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, err: Exception) -> Response:
        status, body, headers = openai_error(err)
        return json_response(body, status, headers)

    @app.get("/health")
    async def health(request: Request) -> Response:
        gw = gateway(request)
        body: dict[str, Any] = {
            "status": "draining" if gw.draining else "ok", "engine": gw.settings.engine,
            "auth": "DISABLED (local development only)" if gw.settings.allow_unauthenticated else "api_keys",
            "base_models": [b.id for b in gw.registry.bases.values()], "fine_tuned_models": len(gw.registry.adapters),
            "job_events": bool(gw.watcher and gw.watcher.ready.is_set()),
        }
        return json_response(body, 503 if gw.draining else 200)

    @app.get("/metrics")
    async def metrics(request: Request) -> Response:
        gw = gateway(request)
        if gw.settings.metrics_require_key:
            await require("admin")(request)
        return Response(generate_latest(gw.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    app.add_middleware(HttpMetrics)
    app.add_middleware(BodyLimit, limit=settings.max_body_bytes)
    return app

