"""Streaming validation of an uploaded fine-tuning JSONL file.

Uploads arrive over gRPC in chunks, so the validator is incremental: ``feed()`` takes
raw bytes, returns the valid examples completed by that chunk and records problems as it
goes; ``finish()`` flushes the last line and adds whole-file problems. Memory stays
bounded: only the current partial line is buffered, and a line that grows past
``max_line_bytes`` is dropped at once and the rest of it skipped up to the next newline.

Throughput is the other constraint (the target is well over 20 MB/s on a slow 2-core
box), so lines are split with ``bytes.find``, parsed with ``orjson`` (which also checks
UTF-8), and plain chat examples skip the full check (`rules.is_plain_chat`). Slow
diagnostics (byte offsets of bad UTF-8, exact JSON paths) are only computed for bad lines.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

import orjson

from tunery.errors import Problem
from tunery_dataset.validation.rules import MAX_PROBLEMS_PER_LINE, ExampleFormat, is_plain_chat, validate_object

__all__ = ["JsonlValidator", "ParsedExample", "UploadTooLarge"]

_BOM: Final = b"\xef\xbb\xbf"


@dataclass(slots=True)
class ParsedExample:
    """A valid example, handed on so the caller can store it without re-parsing."""

    line: int
    format: ExampleFormat
    data: dict[str, Any]
    raw: bytes
    """The line as uploaded, minus BOM and trailing ``\\r``; valid UTF-8 JSON."""


class UploadTooLarge(Exception):
    """The upload passed ``max_file_bytes``; the caller should abort the stream."""


def _fmt_bytes(n: int) -> str:
    """Human-readable size with the exact byte count, for limit messages."""
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= size:
            return f"{n / size:.1f} {unit} ({n} bytes)"
    return f"{n} bytes"


class JsonlValidator:
    """Incremental JSONL validator: feed upload chunks in order, then call ``finish()``.

    Only the current partial line is kept between chunks (at most ``max_line_bytes``),
    so memory is bounded regardless of file size.  Bad data never raises; problems are
    recorded in ``errors`` / ``warnings`` (the first ``max_problems`` of each) while
    ``error_count`` / ``warning_count`` keep the true totals.  Only an oversized upload
    raises (``UploadTooLarge``), since the caller must stop receiving.
    """

    def __init__(
        self,
        *,
        max_line_bytes: int = 8 * 1024 * 1024,
        max_file_bytes: int = 512 * 1024 * 1024,
        max_problems: int = 50,
        filename: str = "",
    ) -> None:
        """Set the limits; all are per upload, so one validator serves one file.

        ``max_line_bytes`` bounds one line (newline excluded) and so the buffer,
        ``max_file_bytes`` bounds the upload, ``max_problems`` caps each stored list.
        ``filename`` is put in every problem's ``file``.
        """
        self.filename = filename
        self.max_line_bytes = max_line_bytes
        self.max_file_bytes = max_file_bytes
        self.max_problems = max_problems
        self.errors: list[Problem] = []
        self.warnings: list[Problem] = []
        self.error_count = 0
        self.warning_count = 0
        self.lines = 0
        self.bytes_seen = 0
        self.format: ExampleFormat | None = None
        self._format_line = 0
        self._lineno = 1  # number of the line currently being received
        self._parts: list[bytes] = []  # pieces of the current partial line
        self._plen = 0
        self._skipping = False  # inside an over-long line, dropping bytes until "\n"
        self._finished = False

    @property
    def ok(self) -> bool:
        """True when no errors were found (warnings do not block training)."""
        return self.error_count == 0

    @property
    def buffered_bytes(self) -> int:
        """Bytes held for the current partial line; at most ``max_line_bytes``."""
        return self._plen

    def feed(self, chunk: bytes | bytearray | memoryview) -> list[ParsedExample]:
        """Consume the next chunk; returns the valid examples it completed."""
        if self._finished:
            raise RuntimeError("feed() called after finish()")
        n = len(chunk)
        if not n:
            return []
        if type(chunk) is not bytes:
            chunk = bytes(chunk)
        self.bytes_seen += n
        if self.bytes_seen > self.max_file_bytes:
            raise UploadTooLarge(
                f"upload exceeds the {_fmt_bytes(self.max_file_bytes)} limit ({self.bytes_seen} bytes received so far)"
            )
        out: list[ParsedExample] = []
        start = 0
        if self._skipping or self._parts:
            nl = chunk.find(b"\n")
            if nl < 0:
                if not self._skipping:
                    if self._plen + n > self.max_line_bytes:
                        self._line_too_long(complete=False)
                    else:
                        self._parts.append(chunk)
                        self._plen += n
                return out
            if self._skipping:
                self._skipping = False
                self._lineno += 1
            elif self._plen + nl > self.max_line_bytes:
                self._line_too_long(complete=True)
            else:
                self._parts.append(chunk[:nl])
                line = b"".join(self._parts)
                self._parts = []
                self._plen = 0
                self._line(line, out, False)
            start = nl + 1
        find = chunk.find
        max_line = self.max_line_bytes
        while True:
            nl = find(b"\n", start)
            if nl < 0:
                break
            if nl - start > max_line:
                self._line_too_long(complete=True)
            else:
                self._line(chunk[start:nl], out, False)
            start = nl + 1
        if start < n:
            if n - start > max_line:
                self._line_too_long(complete=False)
            else:
                self._parts = [chunk[start:] if start else chunk]
                self._plen = n - start
        return out

    def finish(self) -> list[ParsedExample]:
        """Flush the last line (no final newline is fine); add whole-file problems."""
        if self._finished:
            return []
        self._finished = True
        out: list[ParsedExample] = []
        if self._parts:
            line = b"".join(self._parts)
            self._parts = []
            self._plen = 0
            self._line(line, out, True)
        self._skipping = False
        if self.lines == 0:
            what = "the file contains only blank lines"
            if self.bytes_seen == 0:
                what = "the file is empty (0 bytes)"
            self._whole_file(Problem("empty_file", f"{what}; upload at least one example", file=self.filename))
        return out

    # -- internals ---------------------------------------------------------------

    def _line_too_long(self, *, complete: bool) -> None:
        """Report the current line as too long and drop it.

        ``complete`` says whether its newline was already seen; if not, the rest of the
        line is skipped as it arrives instead of being buffered.
        """
        self._record_one(
            Problem(
                "line_too_long",
                f"line {self._lineno}: line is longer than the {_fmt_bytes(self.max_line_bytes)} limit per example",
                line=self._lineno,
                file=self.filename,
            )
        )
        self.lines += 1
        self._parts = []
        self._plen = 0
        if complete:
            self._lineno += 1
        else:
            self._skipping = True

    def _line(self, line: bytes, out: list[ParsedExample], at_eof: bool) -> None:
        """Validate one complete line (newline already removed)."""
        lineno = self._lineno
        self._lineno += 1
        if line.endswith(b"\r"):
            line = line[:-1]
        if lineno == 1 and line.startswith(_BOM):
            line = line[3:]
            self._record_one(
                Problem(
                    "bom_stripped",
                    "line 1: a UTF-8 byte order mark was removed",
                    line=1,
                    file=self.filename,
                    severity="warning",
                )
            )
        if not line or line.isspace():
            return
        self.lines += 1
        try:
            obj = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            self._bad_json(line, lineno, exc, at_eof)
            return
        if self.format == "chat" and type(obj) is dict and is_plain_chat(obj):
            out.append(ParsedExample(lineno, "chat", obj, line))
            return
        fmt, problems = validate_object(obj, lineno, self.filename)
        if fmt is not None and self.format is not None and fmt != self.format:
            problems = [
                *problems[: MAX_PROBLEMS_PER_LINE - 1],
                self._mixed(lineno, fmt),
            ]
        if problems:
            for p in problems:
                self._record_one(p)
            if any(p.severity == "error" for p in problems):
                return
        if fmt is None:  # unreachable: no format always comes with an error
            return
        if self.format is None:
            self.format = fmt
            self._format_line = lineno
        out.append(ParsedExample(lineno, fmt, obj, line))

    def _mixed(self, lineno: int, fmt: ExampleFormat) -> Problem:
        return Problem(
            "mixed_formats",
            f"line {lineno}: this example is in {fmt} format but the file's first "
            f"valid example (line {self._format_line}) is {self.format}; all lines "
            "must use one format",
            line=lineno,
            file=self.filename,
        )

    def _bad_json(self, line: bytes, lineno: int, exc: orjson.JSONDecodeError, at_eof: bool) -> None:
        try:
            line.decode("utf-8")
        except UnicodeDecodeError as ude:
            self._record_one(
                Problem(
                    "invalid_utf8",
                    f"line {lineno}: invalid UTF-8 at byte offset {ude.start} of the line "
                    "(the file must be UTF-8 encoded)",
                    line=lineno,
                    file=self.filename,
                )
            )
            return
        msg = f"line {lineno}: invalid JSON: {exc}"
        if at_eof:
            msg += " (the last line has no trailing newline; the file looks truncated)"
        self._record_one(Problem("invalid_json", msg, line=lineno, file=self.filename))

    def _record_one(self, p: Problem) -> None:
        if p.severity == "error":
            self.error_count += 1
            if len(self.errors) < self.max_problems:
                self.errors.append(p)
        else:
            self.warning_count += 1
            if len(self.warnings) < self.max_problems:
                self.warnings.append(p)

    def _whole_file(self, p: Problem) -> None:
        """Line-0 problems go first so the lists stay sorted by line."""
        target = self.errors if p.severity == "error" else self.warnings
        if p.severity == "error":
            self.error_count += 1
        else:
            self.warning_count += 1
        target.insert(0, p)
        del target[self.max_problems :]
