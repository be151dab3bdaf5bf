"""Terminal output: rich tables for people, plain JSON for scripts, one-line errors on stderr.

Everything a user can cause ends as `error: <message>` (plus a table of problems when the server listed them) and
exit code 1, never a traceback. JSON is written without rich, so it is never wrapped or coloured.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC
from typing import Any, NoReturn, TextIO

import typer
from google.protobuf import json_format
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from tunery.errors import Problem, TuneryError


def _width(stream: TextIO) -> int | None:
    """Rich assumes 80 columns off a terminal; piped tables and problem lists read better unwrapped."""
    if "COLUMNS" in os.environ or stream.isatty():
        return None
    return 160


console = Console(highlight=False, width=_width(sys.stdout))
err_console = Console(stderr=True, highlight=False, width=_width(sys.stderr))


def to_dict(msg: Message) -> dict[str, Any]:
    """Field names as in the .proto, zero values included, so scripts see every field every time."""
    return json_format.MessageToDict(msg, preserving_proto_field_name=True, always_print_fields_with_no_presence=True,
                                     unquote_int64_if_possible=True)


def print_json(obj: Any) -> None:
    if isinstance(obj, Message):
        obj = to_dict(obj)
    with stdout_pipe():
        sys.stdout.write(json.dumps(obj, indent=2, ensure_ascii=False) + "\n")
        sys.stdout.flush()


@contextmanager
def stdout_pipe() -> Iterator[None]:
    """`tunery ... | head` closes the pipe early: stop quietly instead of dumping a BrokenPipeError traceback."""
    try:
        yield
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # the final flush at exit must not fail
        raise typer.Exit(1) from None


def table(*columns: str, title: str | None = None, **opts: Any) -> Table:
    t = Table(title=title, title_justify="left", header_style="bold", **opts)
    for c in columns:
        t.add_column(c, overflow="fold")
    return t


def when(ts: Timestamp) -> str:
    if not ts.seconds and not ts.nanos:
        return ""
    return ts.ToDatetime(tzinfo=UTC).astimezone().strftime("%Y-%m-%d %H:%M:%S")


def human_bytes(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{int(size)} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"


def say(message: str) -> None:
    """A result sentence on stdout; soft-wrapped, so a long path or id is never broken by an inserted newline."""
    console.print(message, soft_wrap=True)


def info(message: str) -> None:
    """Hints and progress go to stderr, so stdout stays clean for data (export, --json)."""
    err_console.print(message, soft_wrap=True)


def problem_table(problems: Sequence[Problem], total: int, *, title: str | None = None) -> Table:
    t = Table(title=title, title_justify="left", header_style="bold")
    t.add_column("file", no_wrap=True)
    t.add_column("line", justify="right", no_wrap=True)
    t.add_column("code", no_wrap=True)
    t.add_column("field", no_wrap=True)
    t.add_column("message", overflow="fold")
    for p in problems:
        t.add_row(escape(p.file), str(p.line) if p.line else "", escape(p.code), escape(p.field), escape(p.message))
    if total > len(problems):
        t.caption = f"and {total - len(problems)} more"
        t.caption_justify = "left"
    return t


def print_error(err: TuneryError) -> None:
    err_console.print(f"[bold red]error:[/] {escape(err.message)}", soft_wrap=True)
    if err.problems:
        err_console.print(problem_table(err.problems, max(err.problem_count, len(err.problems))))


def fail(err: TuneryError | str, code: int = 1) -> NoReturn:
    print_error(err if isinstance(err, TuneryError) else TuneryError(err))
    raise typer.Exit(code)


@contextmanager
def handled() -> Iterator[None]:
    """Turn a `TuneryError` raised inside into the one-line error and exit code 1."""
    try:
        yield
    except TuneryError as err:
        fail(err)


def warnings_table(problems: Iterable[Problem], total: int) -> Table | None:
    items = list(problems)
    if not items:
        return None
    return problem_table(items, total, title="warnings")
