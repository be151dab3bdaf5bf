"""Who is calling and may they: API key check (in the database pool), scope, then the key's rate limit.

FastAPI dependencies, so each route states the scope it needs in its signature. With
TUNERY_GATEWAY_ALLOW_UNAUTHENTICATED=true (local development only; the gateway says so loudly at start and in /health)
every call acts as an admin key named `local-dev`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from fastapi import Request

from tunery_gateway.errors import Unauthenticated
from tunery_gateway.keys import KeyInfo
from tunery_gateway.runtime import Gateway

LOCAL_DEV = KeyInfo("key_local_dev", "local-dev (TUNERY_GATEWAY_ALLOW_UNAUTHENTICATED)", ("admin",))


def gateway(request: Request) -> Gateway:
    return request.app.state.gateway  # type: ignore[no-any-return]


async def authenticate(request: Request) -> KeyInfo:
    gw = gateway(request)
    if gw.settings.allow_unauthenticated:
        return LOCAL_DEV
    header = request.headers.get("authorization", "")
    if not header:
        raise Unauthenticated("no API key: send it as 'Authorization: Bearer <key>' (create one with "
                              "`tunery keys create`)", code="missing_api_key")
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise Unauthenticated("the Authorization header must read 'Bearer <key>'", code="invalid_api_key")
    if gw.keys.inline:
        return gw.keys.verify(token)
    return await gw.db(gw.keys.verify, token)


def require(scope: str) -> Callable[[Request], Awaitable[KeyInfo]]:
    """A dependency that admits keys with `scope` (or admin), within their requests-per-minute limit."""

    async def dependency(request: Request) -> KeyInfo:
        key = await authenticate(request)
        key.require(scope)
        gateway(request).limiter.check(key.id, key.rpm)
        request.state.key_id = key.id
        return key

    dependency.__name__ = f"require_{scope.replace('-', '_')}"
    return dependency
