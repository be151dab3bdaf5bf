"""A small client of the gateway's HTTP API for `tunery logs` and `tunery monitor` (stdlib only: the CLI does not
need an HTTP library for a few JSON calls). Errors come back in OpenAI's shape and end the command in one line."""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from typing import Annotated, Any

import typer

from tunery.errors import InvalidArgument, NotFound, TuneryError, Unavailable
from tunery.up import service_address

UrlOpt = Annotated[str | None, typer.Option("--url", envvar="TUNERY_GATEWAY_URL", show_envvar=True,
                                            help="Gateway base URL (default: the running `tunery up`, else "
                                                 "http://127.0.0.1:8000)")]
KeyOpt = Annotated[str | None, typer.Option("--api-key", envvar="TUNERY_API_KEY", show_envvar=True,
                                            help="An API key with the admin scope.")]


def base_url(url: str | None) -> str:
    if url:
        return url.rstrip("/")
    return f"http://{service_address('gateway')}"


def call(url: str | None, method: str, path: str, key: str | None, *, body: Any = None,
         params: dict[str, Any] | None = None, timeout: float = 60.0, raw: bool = False) -> Any:
    target = base_url(url) + path
    if params:
        target += "?" + urllib.parse.urlencode({k: v for k, v in params.items() if v not in (None, "")})
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(target, data=data, method=method)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    if key:
        req.add_header("Authorization", f"Bearer {key}")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            payload = resp.read()
    except urllib.error.HTTPError as err:
        raise _error(err.code, err.read()) from None
    except (urllib.error.URLError, OSError) as err:
        raise Unavailable(f"cannot reach the gateway at {base_url(url)} ({err}): is it running?",
                          code="unreachable") from None
    return payload.decode() if raw else json.loads(payload)


def _error(status: int, payload: bytes) -> TuneryError:
    try:
        err = json.loads(payload)["error"]
        message, code = str(err.get("message")), str(err.get("code") or err.get("type") or "error")
    except (ValueError, KeyError, TypeError, AttributeError):
        message, code = payload.decode(errors="replace")[:300] or f"HTTP {status}", "error"
    cls = NotFound if status == 404 else Unavailable if status >= 500 else InvalidArgument
    hint = " (give an admin key with --api-key or TUNERY_API_KEY)" if status in (401, 403) else ""
    return cls(f"{message}{hint} [HTTP {status}]", code=code)
