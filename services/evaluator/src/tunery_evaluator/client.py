"""Models reached through an OpenAI-compatible endpoint: the gateway by default, or any external one by URL and key.

The evaluator never loads a model: it asks the endpoint that serves it, with the official ``openai`` client (its
retries with backoff on connection errors, 429 and 5xx). A failed call becomes an ``Answer`` with an error code,
never an exception, so one bad example cannot stop a run; ``EndpointDown`` is raised only when the endpoint itself
cannot be reached, so the runner can wait for it and resume.
"""

from __future__ import annotations

import time
from typing import Any

import httpx
import openai

from tunery_evaluator.graders.base import Answer


class EndpointDown(Exception):
    """The endpoint could not be reached at all (connection refused, DNS, timeout) after the client's retries."""

    def __init__(self, base_url: str, reason: str) -> None:
        super().__init__(f"{base_url} unreachable: {reason}")
        self.base_url = base_url
        self.reason = reason


class EndpointRefused(Exception):
    """The endpoint answered with an HTTP error where no per-example answer can carry it (listing its models)."""

    def __init__(self, base_url: str, status: int, message: str) -> None:
        super().__init__(f"{base_url} answered HTTP {status}: {message}")
        self.base_url = base_url
        self.status = status
        self.message = message


class OpenAIModelClient:
    """Chat completions and reference scoring against OpenAI-compatible endpoints, one pooled client per endpoint."""

    def __init__(self, base_url: str, api_key: str, *, timeout: float = 300.0, max_retries: int = 2) -> None:
        self.base_url = base_url.rstrip("/")
        self.api_key = api_key or "unused"
        self.timeout = timeout
        self.max_retries = max_retries
        self._clients: dict[tuple[str, str], openai.AsyncOpenAI] = {}
        self._http: httpx.AsyncClient | None = None

    def _client(self, base_url: str = "", api_key: str = "") -> openai.AsyncOpenAI:
        key = (base_url.rstrip("/") or self.base_url, api_key or self.api_key)
        if key not in self._clients:
            self._clients[key] = openai.AsyncOpenAI(base_url=key[0], api_key=key[1], timeout=self.timeout,
                                                    max_retries=self.max_retries)
        return self._clients[key]

    async def chat(
        self, model: str, messages: list[dict[str, Any]], *, temperature: float = 0.0, max_tokens: int = 256,
        base_url: str = "", api_key: str = "", seed: int | None = None, stop: list[str] | None = None,
        top_p: float | None = None, label: str = "",
    ) -> Answer:
        """One completion. Model-side failures come back as an Answer with error set; EndpointDown if unreachable."""
        extra: dict[str, Any] = {}
        if seed is not None:
            extra["seed"] = seed
        if stop:
            extra["stop"] = stop
        if top_p is not None:
            extra["top_p"] = top_p
        started = time.perf_counter()
        try:
            resp = await self._client(base_url, api_key).chat.completions.create(
                model=model, messages=messages, temperature=temperature, max_tokens=max_tokens, **extra)  # type: ignore[arg-type]
        except (openai.APIConnectionError, openai.APITimeoutError) as err:
            raise EndpointDown(base_url or self.base_url, f"{type(err).__name__}: {err}") from err
        except openai.NotFoundError as err:
            return _failed(label or model, "model_not_found", _message(err), started)
        except openai.AuthenticationError as err:
            return _failed(label or model, "unauthenticated", f"{base_url or self.base_url} rejected the API key "
                           f"for {model!r}: {_message(err)}", started)
        except openai.PermissionDeniedError as err:
            return _failed(label or model, "permission_denied", f"{base_url or self.base_url} refused {model!r} "
                           f"to this API key: {_message(err)}", started)
        except openai.BadRequestError as err:
            return _failed(label or model, "bad_request", _message(err), started)
        except openai.APIStatusError as err:
            return _failed(label or model, "endpoint_error", f"HTTP {err.status_code}: {_message(err)}", started)
        latency = (time.perf_counter() - started) * 1000
        choice = resp.choices[0] if resp.choices else None
        usage = resp.usage
        return Answer(
            model=label or model,
            content=(choice.message.content or "") if choice else "",
            finish_reason=(choice.finish_reason or "") if choice else "",
            prompt_tokens=usage.prompt_tokens if usage else 0,
            completion_tokens=usage.completion_tokens if usage else 0,
            latency_ms=latency,
            endpoint_model=model if label and label != model else "",
        )

    async def score(self, model: str, messages: list[dict[str, Any]], reference: str, *, base_url: str = "",
                    api_key: str = "") -> dict[str, float]:
        """Mean token loss of ``reference`` as the assistant's answer to ``messages`` (gateway ``POST /v1/score``)."""
        if self._http is None:
            self._http = httpx.AsyncClient(timeout=self.timeout)
        url = f"{base_url.rstrip('/') or self.base_url}/score"
        try:
            resp = await self._http.post(url, json={"model": model, "messages": messages, "reference": reference},
                                         headers={"Authorization": f"Bearer {api_key or self.api_key}"})
        except httpx.TransportError as err:
            raise EndpointDown(base_url or self.base_url, f"{type(err).__name__}: {err}") from err
        if resp.status_code != 200:
            try:
                detail = resp.json()["error"]["message"]
            except Exception:
                detail = resp.text[:300]
            raise ValueError(f"POST {url} answered {resp.status_code}: {detail}")
        body = resp.json()
        return {k: float(v) for k, v in body.items() if isinstance(v, (int, float))}

    async def list_models(self, *, base_url: str = "", api_key: str = "") -> list[str]:
        """The model names the endpoint serves; EndpointDown if unreachable, EndpointRefused if it answers an HTTP
        error (a rejected key: 401/403)."""
        try:
            page = await self._client(base_url, api_key).models.list()
        except (openai.APIConnectionError, openai.APITimeoutError) as err:
            raise EndpointDown(base_url or self.base_url, f"{type(err).__name__}: {err}") from err
        except openai.APIStatusError as err:
            raise EndpointRefused(base_url or self.base_url, err.status_code, _message(err)) from err
        return [m.id for m in page.data]

    async def close(self) -> None:
        for c in self._clients.values():
            await c.close()
        self._clients.clear()
        if self._http is not None:
            await self._http.aclose()
            self._http = None


def _message(err: openai.APIStatusError) -> str:
    body = err.body
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict) and inner.get("message"):
            return str(inner["message"])
    return str(err)


def _failed(model: str, code: str, message: str, started: float) -> Answer:
    return Answer(model=model, content="", error=code, error_message=message,
                  latency_ms=(time.perf_counter() - started) * 1000)
