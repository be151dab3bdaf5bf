"""The streaming JSONL validator (tunery_dataset.validation.stream): files, chunks, limits, formats."""

from __future__ import annotations

import random
from typing import Any

import orjson
import pytest

from tunery_dataset import validation as v
from tunery_dataset.validation import JsonlValidator


def line(obj: Any) -> bytes:
    return orjson.dumps(obj) + b"\n"


def chat(*messages: Any, **extra: Any) -> dict[str, Any]:
    return {"messages": list(messages), **extra}


USER = {"role": "user", "content": "Hi"}
ASSISTANT = {"role": "assistant", "content": "Hello!"}
GOOD = chat(USER, ASSISTANT)
GOOD_LINE = line(GOOD)


def run(data: bytes, chunk: int | None = None, **kw: Any) -> tuple[JsonlValidator, list[v.ParsedExample]]:
    """Feed ``data`` (whole, or in fixed-size chunks) and finish."""
    val = JsonlValidator(**kw)
    out: list[v.ParsedExample] = []
    if chunk is None:
        out += val.feed(data)
    else:
        for i in range(0, len(data), chunk):
            out += val.feed(data[i : i + chunk])
    out += val.finish()
    return val, out


def codes(val: JsonlValidator) -> list[tuple[int, str]]:
    return [(p.line, p.code) for p in val.errors]


# -- whole file ------------------------------------------------------------------------


def test_zero_bytes_is_empty_file() -> None:
    val, out = run(b"")
    assert out == []
    assert codes(val) == [(0, "empty_file")]
    assert "0 bytes" in val.errors[0].message
    assert not val.ok
    assert val.lines == 0


def test_only_blank_lines_is_empty_file() -> None:
    val, _ = run(b"\n  \r\n\t\n\n")
    assert codes(val) == [(0, "empty_file")]
    assert "blank" in val.errors[0].message


def test_blank_lines_are_skipped_but_keep_numbering() -> None:
    val, out = run(b"\n" + GOOD_LINE + b"   \n\n" + b"[1]\n")
    assert [e.line for e in out] == [2]
    assert codes(val) == [(5, "not_an_object")]
    assert val.lines == 2


def test_bom_is_stripped() -> None:
    val, out = run(b"\xef\xbb\xbf" + GOOD_LINE + GOOD_LINE)
    assert val.ok
    assert len(out) == 2
    assert out[0].raw == GOOD_LINE[:-1]
    assert [p.code for p in val.warnings] == ["bom_stripped"]


def test_bom_split_across_chunks() -> None:
    val, out = run(b"\xef\xbb\xbf" + GOOD_LINE, chunk=1)
    assert val.ok
    assert len(out) == 1
    assert out[0].raw == GOOD_LINE[:-1]


def test_bom_only_file_is_empty() -> None:
    val, _ = run(b"\xef\xbb\xbf")
    assert codes(val) == [(0, "empty_file")]


def test_crlf_line_endings() -> None:
    data = GOOD_LINE[:-1] + b"\r\n" + GOOD_LINE[:-1] + b"\r\n"
    val, out = run(data)
    assert val.ok
    assert [e.line for e in out] == [1, 2]
    assert all(not e.raw.endswith(b"\r") for e in out)
    assert out[0].data == GOOD


def test_last_line_without_newline_is_fine() -> None:
    val, out = run(GOOD_LINE + GOOD_LINE[:-1])
    assert val.ok
    assert [e.line for e in out] == [1, 2]


def test_invalid_utf8_line_number_and_offset() -> None:
    bad = b'{"messages": [{"role": "user", "content": "caf\xe9"}]}\n'
    data = GOOD_LINE * 4 + bad + GOOD_LINE
    val, out = run(data)
    assert codes(val) == [(5, "invalid_utf8")]
    offset = bad.index(b"\xe9")
    assert f"byte offset {offset}" in val.errors[0].message
    assert "line 5" in val.errors[0].message
    assert [e.line for e in out] == [1, 2, 3, 4, 6]


def test_invalid_json() -> None:
    val, _ = run(GOOD_LINE + b'{"messages": [}\n' + GOOD_LINE)
    assert codes(val) == [(2, "invalid_json")]
    assert "truncated" not in val.errors[0].message


def test_truncated_last_line() -> None:
    val, out = run(GOOD_LINE + GOOD_LINE[:25])
    assert codes(val) == [(2, "invalid_json")]
    assert "truncated" in val.errors[0].message
    assert len(out) == 1


@pytest.mark.parametrize(
    ("raw", "kind"),
    [
        (b"[1, 2]", "array"),
        (b'"hello"', "string"),
        (b"42", "number"),
        (b"null", "null"),
        (b"true", "boolean"),
    ],
)
def test_not_an_object(raw: bytes, kind: str) -> None:
    val, _ = run(GOOD_LINE + raw + b"\n")
    assert codes(val) == [(2, "not_an_object")]
    assert kind in val.errors[0].message


def test_line_too_long_small_limit() -> None:
    long_line = line(chat(USER, {"role": "assistant", "content": "x" * 500}))
    val, out = run(GOOD_LINE + long_line + GOOD_LINE, max_line_bytes=200)
    assert codes(val) == [(2, "line_too_long")]
    assert "200 bytes" in val.errors[0].message
    assert [e.line for e in out] == [1, 3]


@pytest.mark.parametrize("chunk", [1, 7, 64, 199, 200, 201, 333, None])
def test_line_too_long_any_chunking(chunk: int | None) -> None:
    long_line = line(chat(USER, {"role": "assistant", "content": "x" * 500}))
    data = GOOD_LINE + long_line + long_line[:-1] + b"\r\n" + GOOD_LINE + long_line[:-1]
    val, out = run(data, chunk=chunk, max_line_bytes=200)
    assert codes(val) == [
        (2, "line_too_long"),
        (3, "line_too_long"),
        (5, "line_too_long"),
    ]
    assert [e.line for e in out] == [1, 4]
    assert val.lines == 5


def test_line_exactly_at_limit_is_accepted() -> None:
    limit = len(GOOD_LINE) - 1
    val, out = run(GOOD_LINE * 3, chunk=5, max_line_bytes=limit)
    assert val.ok
    assert len(out) == 3
    val, _ = run(GOOD_LINE * 3, chunk=5, max_line_bytes=limit - 1)
    assert [c for _, c in codes(val)] == ["line_too_long"] * 3


def test_huge_line_rejected_with_bounded_buffer() -> None:
    """A ~10 MB line with the default 8 MiB limit is dropped without ever being held."""
    val = JsonlValidator()
    chunk_size = 1 << 20
    big = b'{"messages": [{"role": "user", "content": "' + b"a" * (10 * 1000 * 1000) + b'"}]}\n'
    data = GOOD_LINE + big + GOOD_LINE
    out: list[v.ParsedExample] = []
    peak = 0
    for i in range(0, len(data), chunk_size):
        out += val.feed(data[i : i + chunk_size])
        peak = max(peak, val.buffered_bytes, sum(map(len, val._parts)))
    out += val.finish()
    assert peak <= val.max_line_bytes + chunk_size
    assert peak <= val.max_line_bytes
    assert codes(val) == [(2, "line_too_long")]
    assert "8.0 MiB" in val.errors[0].message
    assert [e.line for e in out] == [1, 3]


# -- chunking --------------------------------------------------------------------------


def _mixed_file() -> bytes:
    rows = [
        GOOD_LINE,
        line(
            chat(
                {"role": "user", "content": "Grüße, 世界 🙂 привет"},
                {"role": "assistant", "content": "ok ✅"},
            )
        ),
        b"\n",
        b'{"messages": [{"role": "robot", "content": "\xc3\xa9"}]}\n',
        b"[1]\r\n",
        # a 4-byte character cut after 3 bytes:
        b'{"messages": [{"role": "user", "content": "\xf0\x9f\x99"}]}\n',
        line(
            chat(
                USER,
                {"role": "assistant", "content": "日本語のテキスト" * 20, "weight": 1},
            )
        ),
        b'{"broken": \n',
        line(chat(USER, {"role": "assistant", "content": "x", "weight": 2})),
        line(chat({"role": "user", "content": "end ∑∞"}, ASSISTANT))[:-1],
    ]
    return b"\xef\xbb\xbf" + b"".join(rows)


def _summary(val: JsonlValidator, out: list[v.ParsedExample]) -> Any:
    return (
        val.errors,
        val.warnings,
        val.error_count,
        val.lines,
        val.bytes_seen,
        [(e.line, e.format, e.data, e.raw) for e in out],
    )


def test_chunk_boundaries_byte_by_byte_and_random() -> None:
    data = _mixed_file()
    reference = _summary(*run(data))
    assert [c for _, c in codes(run(data)[0])] == [
        "unrecognized_role",
        "no_assistant_message",
        "not_an_object",
        "invalid_utf8",
        "invalid_json",
        "invalid_weight",
    ]
    assert [e[0] for e in reference[5]] == [1, 2, 7, 10]
    assert _summary(*run(data, chunk=1)) == reference
    rng = random.Random(1234)
    for _ in range(50):
        val = JsonlValidator()
        out: list[v.ParsedExample] = []
        pos = 0
        while pos < len(data):
            step = rng.randint(1, 40)
            out += val.feed(data[pos : pos + step])
            pos += step
        out += val.finish()
        assert _summary(val, out) == reference


def test_multibyte_character_split_across_chunks() -> None:
    text = "é世🙂"
    data = line(chat({"role": "user", "content": text}, ASSISTANT))
    cut = data.index("世".encode()) + 1  # inside the 3-byte character
    val = JsonlValidator()
    out = val.feed(data[:cut]) + val.feed(data[cut:]) + val.finish()
    assert val.ok
    assert out[0].data["messages"][0]["content"] == text


def test_feed_accepts_memoryview_and_bytearray() -> None:
    val = JsonlValidator()
    out = val.feed(memoryview(GOOD_LINE)) + val.feed(bytearray(GOOD_LINE)) + val.finish()
    assert val.ok
    assert len(out) == 2
    assert all(type(e.raw) is bytes for e in out)


# -- limits ----------------------------------------------------------------------------


def test_upload_too_large() -> None:
    val = JsonlValidator(max_file_bytes=100)
    val.feed(b"x" * 60)
    with pytest.raises(v.UploadTooLarge, match=r"100 bytes.*\b120\b"):
        val.feed(b"y" * 60)


def test_upload_exactly_at_limit_is_fine() -> None:
    val, out = run(GOOD_LINE, max_file_bytes=len(GOOD_LINE))
    assert val.ok
    assert len(out) == 1


def test_problem_cap_keeps_first_and_counts_all() -> None:
    data = GOOD_LINE + b"[1]\n" * 120
    val, out = run(data, max_problems=10)
    assert len(val.errors) == 10
    assert val.error_count == 120
    assert [p.line for p in val.errors] == list(range(2, 12))
    assert len(out) == 1


def test_per_line_cap_is_five() -> None:
    msgs = [{"role": "robot", "content": "x"} for _ in range(20)]
    val, _ = run(line({"messages": msgs}))
    assert len(val.errors) == 5
    assert val.error_count == 5
    assert [p.field for p in val.errors] == [f"messages[{i}].role" for i in range(5)]


def test_warning_cap_and_count() -> None:
    no_user = line(chat({"role": "system", "content": "s"}, ASSISTANT))
    val, out = run(no_user * 7, max_problems=3)
    assert val.ok
    assert len(out) == 7
    assert val.warning_count == 7
    assert len(val.warnings) == 3
    assert {p.code for p in val.warnings} == {"no_user_message"}


def test_problems_sorted_by_line() -> None:
    val, _ = run(b"[1]\n" + line({"messages": []}) + b"{\n" + GOOD_LINE + b"5\n")
    assert [p.line for p in val.errors] == sorted(p.line for p in val.errors)
    assert codes(val) == [
        (1, "not_an_object"),
        (2, "empty_messages"),
        (3, "invalid_json"),
        (5, "not_an_object"),
    ]


# -- formats ---------------------------------------------------------------------------

PREFERENCE = {
    "input": {"messages": [USER]},
    "preferred_output": [{"role": "assistant", "content": "Good answer"}],
    "non_preferred_output": [{"role": "assistant", "content": "Bad answer"}],
}
PROMPT_COMPLETION = {"prompt": "2+2=", "completion": " 4"}


@pytest.mark.parametrize(
    ("obj", "fmt"),
    [
        (GOOD, "chat"),
        (PREFERENCE, "preference"),
        (PROMPT_COMPLETION, "prompt_completion"),
    ],
)
def test_three_valid_formats(obj: dict[str, Any], fmt: str) -> None:
    val, out = run(line(obj) * 3)
    assert val.ok
    assert val.errors == []
    assert val.warnings == []
    assert val.format == fmt
    assert [(e.line, e.format) for e in out] == [(1, fmt), (2, fmt), (3, fmt)]
    assert out[0].data == obj
    assert orjson.loads(out[0].raw) == obj
    assert v.detect_format(obj) == fmt
    assert v.validate_object(obj) == (fmt, [])


def test_mixed_formats() -> None:
    val, out = run(line(GOOD) + line(PROMPT_COMPLETION) + line(GOOD) + line(PREFERENCE))
    assert codes(val) == [(2, "mixed_formats"), (4, "mixed_formats")]
    assert "prompt_completion" in val.errors[0].message
    assert "chat" in val.errors[0].message
    assert [e.line for e in out] == [1, 3]
    assert val.format == "chat"


def test_file_format_comes_from_first_valid_line() -> None:
    val, out = run(line({"messages": []}) + line(PROMPT_COMPLETION) + line(GOOD))
    assert val.format == "prompt_completion"
    assert codes(val) == [(1, "empty_messages"), (3, "mixed_formats")]
    assert [e.line for e in out] == [2]


def test_fast_path_agrees_with_full_check() -> None:
    """The plain-chat shortcut must never accept what the full validator rejects."""
    rng = random.Random(7)
    roles: list[Any] = ["system", "user", "assistant", "tool", "robot", None, 1]
    contents: list[Any] = ["hi", "", None, 3, [{"type": "text", "text": "t"}]]
    accepted = 0
    for _ in range(2000):
        msgs: list[Any] = []
        for _ in range(rng.randint(0, 3)):
            m: dict[str, Any] = {}
            if rng.random() < 0.98:
                m["role"] = rng.choices(roles, [3, 8, 8, 1, 0.2, 0.2, 0.2])[0]
            if rng.random() < 0.98:
                m["content"] = rng.choices(contents, [20, 1, 1, 0.3, 1])[0]
            if rng.random() < 0.05:
                m["weight"] = 0
            msgs.append(m if rng.random() < 0.99 else "x")
        obj: dict[str, Any] = {"messages": msgs}
        if rng.random() < 0.05:
            obj["tools"] = "bad"
        if v.is_plain_chat(obj):
            accepted += 1
            assert v.validate_object(obj) == ("chat", []), obj
        # The streaming path (shortcut after line 1) must agree with the full check.
        val, out = run(GOOD_LINE + line(obj))
        full = v.validate_object(obj, 2)[1]
        assert val.errors + val.warnings == sorted(full, key=lambda p: p.severity)
        assert len(out) == 1 + (not any(p.severity == "error" for p in full))
    assert accepted > 200


def test_every_problem_names_the_file() -> None:
    mixed = line({"prompt": "a", "completion": "b"})
    data = b"\xef\xbb\xbf" + GOOD_LINE + b"{bad\n" + b"\xff\n" + mixed + b"x" * 300 + b"\n"
    val, _ = run(data, filename="train.jsonl", max_line_bytes=200)
    assert [(p.line, p.code) for p in val.warnings + val.errors] == [
        (1, "bom_stripped"),
        (2, "invalid_json"),
        (3, "invalid_utf8"),
        (4, "mixed_formats"),
        (5, "line_too_long"),
    ]
    assert {p.file for p in val.warnings + val.errors} == {"train.jsonl"}
    empty, _ = run(b"", filename="empty.jsonl")
    assert [(p.code, p.line, p.file) for p in empty.errors] == [("empty_file", 0, "empty.jsonl")]
    assert {p.file for p in v.validate_object({"messages": []}, 7, "a.jsonl")[1]} == {"a.jsonl"}


def test_finish_is_idempotent_and_feed_after_finish_fails() -> None:
    val = JsonlValidator()
    val.feed(GOOD_LINE)
    assert val.finish() == []
    assert val.finish() == []
    with pytest.raises(RuntimeError):
        val.feed(GOOD_LINE)
