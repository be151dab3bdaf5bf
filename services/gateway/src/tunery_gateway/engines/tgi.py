"""Forward to a running text-generation-inference server (`TUNERY_GATEWAY_ENGINE=tgi`, `TUNERY_GATEWAY_TGI_URL`).

TGI speaks OpenAI's Messages API at /v1/chat/completions (and /v1/completions). Its `model` field picks a LoRA
adapter that TGI loaded at start (`LORA_ADAPTERS=<id>=<path>,...`); `tgi` picks the base model. The gateway sends the
id of the job that trained the adapter (`ftjob-...`: plain characters, unlike `ft:<base>:<suffix>:<job>`), or the
model id of an adapter registered by hand, so LORA_ADAPTERS names adapters that way (deploy/README.md shows how).
Calls always stream from TGI: the gateway gets its first token as TGI makes it, and a caller that leaves closes the
upstream connection, which makes TGI stop generating. `n > 1` becomes n upstream
calls (TGI generates one choice per call), seeded `seed + i` when a seed is given.

Configured by TUNERY_GATEWAY_TGI_URL, TGI_MODEL (the id the base model is served under), TGI_CONTEXT_LENGTH and
TGI_TIMEOUT_SECONDS.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any, ClassVar

import httpx
import orjson

from tunery.errors import Internal, InvalidArgument, NotFound, TuneryError, Unavailable
from tunery_gateway.engines.base import (
    AdapterRef,
    Failed,
    Finished,
    Generation,
    GenerationRequest,
    ServedBase,
    TextDelta,
)
from tunery_gateway.errors import Overloaded
from tunery_gateway.settings import GatewaySettings

log = logging.getLogger("tunery.gateway.tgi")
TGI_BASE = "tgi"


def tgi_adapter_id(adapter: AdapterRef) -> str:
    return adapter.job_id or adapter.model_id


def _error(status: int, body: bytes, url: str) -> TuneryError:
    """TGI answers {"error": "...", "error_type": "..."}; keep its message, map its status."""
    try:
        data = orjson.loads(body)
        message = data.get("error") or data.get("message") or body.decode(errors="replace")
        if isinstance(message, dict):
            message = message.get("message", str(message))
    except (orjson.JSONDecodeError, AttributeError):
        message = body.decode(errors="replace")[:500]
    message = f"text-generation-inference: {message}"
    if status in (400, 413, 422):
        return InvalidArgument(message, code="invalid_request")
    if status == 404:
        return NotFound(message, code="model_not_found", field="model")
    if status in (429, 503):
        return Overloaded(message, code="overloaded", retry_after=1.0)
    return Internal(f"{message} (HTTP {status} from {url})", code="upstream_error")


class TgiEngine:
    name: ClassVar[str] = "tgi"

    def __init__(self, settings: GatewaySettings) -> None:
        if not settings.tgi_url:
            raise InvalidArgument("the tgi engine needs TUNERY_GATEWAY_TGI_URL (e.g. http://tgi:80)",
                                  code="missing_setting", field="tgi_url")
        self.settings = settings
        self.url = settings.tgi_url.rstrip("/")
        self.inflight = 0
        self.client: httpx.AsyncClient | None = None
        self.base = ServedBase("", "", settings.tgi_context_length)

    async def start(self) -> None:
        self.client = httpx.AsyncClient(base_url=self.url, timeout=httpx.Timeout(self.settings.tgi_timeout_seconds,
                                                                                 connect=10.0),
                                        limits=httpx.Limits(max_connections=1024, max_keepalive_connections=64))
        names = self.settings.base_model_names
        served = self.settings.tgi_model or (names[0] if names else "tgi-base")
        spec_name = served
        with contextlib.suppress(TuneryError):
            from tunery.models import resolve

            spec_name = resolve(served).name
        context = self.settings.tgi_context_length
        try:
            info = (await self.client.get("/info", timeout=5.0)).json()
            context = context or int(info.get("max_total_tokens") or 0)
            log.info("forwarding to TGI at %s (%s, max_total_tokens %s)", self.url, info.get("model_id"), context)
        except (httpx.HTTPError, ValueError) as err:
            log.warning("TGI at %s does not answer /info yet (%s); forwarding anyway", self.url, err)
        self.base = ServedBase(served, spec_name, context)

    async def stop(self) -> None:
        if self.client is not None:
            await self.client.aclose()

    def bases(self) -> list[ServedBase]:
        return [self.base]

    async def check_adapter(self, base: ServedBase, adapter: AdapterRef) -> None:
        """Nothing beyond the registry's check of the folder and its metadata: TGI loads adapters itself, at its own
        start."""

    def stats(self) -> dict[str, Any]:
        return {self.base.id: {"running": self.inflight}}

    def _payload(self, req: GenerationRequest, index: int) -> tuple[str, dict[str, Any]]:
        p = req.params
        body: dict[str, Any] = {"model": tgi_adapter_id(req.adapter) if req.adapter is not None else TGI_BASE,
                                "stream": True, "stream_options": {"include_usage": True}}
        if p.max_tokens is not None:
            body["max_tokens"] = p.max_tokens
        if p.temperature > 0:
            body["temperature"] = p.temperature
            if p.top_p < 1.0:
                body["top_p"] = p.top_p
        else:
            body["temperature"] = 0.0  # TGI: greedy
        if p.seed is not None:
            body["seed"] = p.seed + index
        if p.stop:
            body["stop"] = list(p.stop)
        if req.messages is not None:
            body["messages"] = req.messages
            return "/v1/chat/completions", body
        body["prompt"] = req.prompt or ""
        return "/v1/completions", body

    async def generate(self, req: GenerationRequest) -> Generation:
        assert self.client is not None
        responses: list[httpx.Response] = []
        try:
            for i in range(req.params.n):
                path, body = self._payload(req, i)
                request = self.client.build_request("POST", path, content=orjson.dumps(body),
                                                    headers={"content-type": "application/json"})
                resp = await self.client.send(request, stream=True)
                responses.append(resp)
                if resp.status_code != 200:
                    raise _error(resp.status_code, await resp.aread(), self.url + path)
        except httpx.HTTPError as err:
            for r in responses:
                await r.aclose()
            raise Unavailable(f"cannot reach text-generation-inference at {self.url}: {err}",
                              code="upstream_unavailable") from err
        except BaseException:
            for r in responses:
                await r.aclose()
            raise
        gen = Generation(req.request_id, 0, req.params.n, req.params.max_tokens or 0)
        tasks = [asyncio.ensure_future(self._read(gen, i, r)) for i, r in enumerate(responses)]

        def cancel() -> None:
            for t in tasks:
                t.cancel()

        gen.on_cancel = cancel
        return gen

    async def _read(self, gen: Generation, index: int, resp: httpx.Response) -> None:
        self.inflight += 1
        reason, tokens, prompt_tokens = "stop", 0, 0
        try:
            async for line in resp.aiter_lines():
                if not line.startswith("data:"):
                    continue
                data = line[5:].strip()
                if data == "[DONE]":
                    break
                chunk = orjson.loads(data)
                if "error" in chunk:
                    raise _error(422 if chunk.get("error_type") == "validation" else 500, data.encode(), self.url)
                for choice in chunk.get("choices") or []:
                    text = (choice.get("delta") or {}).get("content") if "delta" in choice else choice.get("text")
                    if text:
                        tokens += 1
                        gen.push(TextDelta(index, text))
                    if choice.get("finish_reason"):
                        reason = "length" if choice["finish_reason"] == "length" else "stop"
                use = chunk.get("usage")
                if use:
                    prompt_tokens = int(use.get("prompt_tokens") or 0)
                    tokens = int(use.get("completion_tokens") or tokens)
            gen.prompt_tokens = max(gen.prompt_tokens, prompt_tokens)
            gen.push(Finished(index, reason, tokens))
        except asyncio.CancelledError:
            raise
        except TuneryError as err:
            gen.push(Failed(err))
        except (httpx.HTTPError, orjson.JSONDecodeError) as err:
            gen.push(Failed(Unavailable(f"text-generation-inference stream broke: {err}", code="upstream_error")))
        finally:
            self.inflight -= 1
            await resp.aclose()
