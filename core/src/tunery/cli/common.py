"""What the command groups share: the `--json` option, paging through list calls, and key/value tables."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from tunery.cli.output import info
from tunery.common.v1 import common_pb2

JsonOpt = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON instead of a table.")]


def page_request(size: int, token: str) -> common_pb2.PageRequest:
    return common_pb2.PageRequest(page_size=size, page_token=token)


def paged(fetch: Callable[[str], tuple[list[Any], common_pb2.PageResponse]], token: str, every: bool
          ) -> tuple[list[Any], common_pb2.PageResponse]:
    """One page, or with `every` all pages from `token` on."""
    items, page = fetch(token)
    items = list(items)
    while every and page.next_page_token:
        more, page = fetch(page.next_page_token)
        items += list(more)
    return items, page


def more_hint(shown: int, page: common_pb2.PageResponse) -> None:
    if page.next_page_token:
        info(f"{shown} of {page.total_size}; next page: --page-token {page.next_page_token} (or --all)")


def kv(rows: list[tuple[str, Any]]) -> Table:
    """Two columns, name and value: one record at a glance (`show` commands)."""
    t = Table.grid(padding=(0, 2))
    t.add_column(style="bold")
    t.add_column()
    for k, v in rows:
        t.add_row(k, escape(str(v)))
    return t
