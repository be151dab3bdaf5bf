"""Offset page tokens shared by every List* RPC: opaque to clients, validated on the way in."""

from __future__ import annotations

import base64

from tunery.errors import InvalidArgument

DEFAULT_PAGE = 50
MAX_PAGE = 1000


def page_bounds(page_size: int, page_token: str) -> tuple[int, int]:
    """(offset, size) for a request; a token this service did not issue is an INVALID_ARGUMENT."""
    size = DEFAULT_PAGE if page_size <= 0 else min(page_size, MAX_PAGE)
    if not page_token:
        return 0, size
    try:
        offset = int(base64.urlsafe_b64decode(page_token.encode()).decode().removeprefix("o:"))
    except Exception as err:
        raise InvalidArgument(
            f"page_token {page_token!r} is not a token this service issued",
            code="invalid_page_token",
            field="page.page_token",
        ) from err
    return max(offset, 0), size


def next_token(offset: int, size: int, total: int) -> str:
    return base64.urlsafe_b64encode(f"o:{offset + size}".encode()).decode() if offset + size < total else ""
