"""The rules for one example (tunery_dataset.validation.rules): chat, tools, preference, prompt/completion."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from tunery.errors import Problem
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

TOOL_CALL = {
    "id": "call_1",
    "type": "function",
    "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
}
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Weather for a city",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}},
            },
        },
    }
]


PREFERENCE = {
    "input": {"messages": [USER]},
    "preferred_output": [{"role": "assistant", "content": "Good answer"}],
    "non_preferred_output": [{"role": "assistant", "content": "Bad answer"}],
}


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


def obj_codes(obj: Any) -> list[str]:
    return [p.code for p in validate(obj) if p.severity == "error"]


def validate(obj: Any) -> list[Problem]:
    return v.validate_object(obj, 3)[1]


def first_error(obj: Any) -> Problem:
    errs = [p for p in validate(obj) if p.severity == "error"]
    assert errs, f"expected an error for {obj!r}"
    return errs[0]


# -- formats ---------------------------------------------------------------------------


def test_unknown_format_is_missing_messages() -> None:
    p = first_error({"text": "hello"})
    assert p.code == "missing_messages"
    assert p.line == 3
    for word in ("chat", "preference", "prompt"):
        assert word in p.message


# -- chat ------------------------------------------------------------------------------


def test_messages_not_a_list_and_empty() -> None:
    assert obj_codes({"messages": "hi"}) == ["missing_messages"]
    assert obj_codes({"messages": []}) == ["empty_messages"]


def test_message_not_an_object() -> None:
    p = first_error(chat(USER, "hello", ASSISTANT))
    assert (p.code, p.field) == ("invalid_message", "messages[1]")


def test_unknown_role() -> None:
    val, _ = run(GOOD_LINE * 6 + line(chat(USER, {"role": "robot", "content": "x"}, ASSISTANT)))
    p = val.errors[0]
    assert (p.line, p.code, p.field) == (7, "unrecognized_role", "messages[1].role")
    assert p.message == ("line 7: messages[1].role is 'robot'; expected one of system, user, assistant, tool")


def test_missing_role_and_non_string_role() -> None:
    p = first_error(chat(USER, {"content": "x"}, ASSISTANT))
    assert (p.code, p.field) == ("missing_role", "messages[1].role")
    p = first_error(chat(USER, {"role": ["user"], "content": "x"}, ASSISTANT))
    assert (p.code, p.field) == ("unrecognized_role", "messages[1].role")


def test_assistant_without_content_or_tool_calls() -> None:
    p = first_error(chat(USER, {"role": "assistant"}))
    assert (p.code, p.field) == ("missing_content", "messages[1].content")
    p = first_error(chat(USER, {"role": "assistant", "content": None}))
    assert p.code == "missing_content"


def test_user_without_content() -> None:
    p = first_error(chat({"role": "user", "content": None}, ASSISTANT))
    assert (p.code, p.field) == ("missing_content", "messages[0].content")
    p = first_error(chat({"role": "user"}, ASSISTANT))
    assert p.code == "missing_content"


def test_content_wrong_type() -> None:
    p = first_error(chat({"role": "user", "content": 5}, ASSISTANT))
    assert (p.code, p.field) == ("invalid_content", "messages[0].content")


def test_content_parts() -> None:
    ok = chat(
        {
            "role": "user",
            "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}],
        },
        ASSISTANT,
    )
    assert validate(ok) == []
    p = first_error(
        chat(
            {
                "role": "user",
                "content": [{"type": "image_url", "image_url": {"url": "x"}}],
            },
            ASSISTANT,
        )
    )
    assert (p.code, p.field) == ("invalid_content", "messages[0].content[0].type")
    p = first_error(chat({"role": "user", "content": [{"type": "text", "text": 1}]}, ASSISTANT))
    assert (p.code, p.field) == ("invalid_content", "messages[0].content[0].text")
    p = first_error(chat({"role": "user", "content": ["a"]}, ASSISTANT))
    assert (p.code, p.field) == ("invalid_content", "messages[0].content[0]")


def test_name_must_be_string() -> None:
    assert validate(chat({"role": "user", "content": "x", "name": "bob"}, ASSISTANT)) == []
    p = first_error(chat({"role": "user", "content": "x", "name": 7}, ASSISTANT))
    assert (p.code, p.field) == ("invalid_name", "messages[0].name")


@pytest.mark.parametrize("weight", [2, True, False, 1.0, "1", None, -1])
def test_invalid_weight(weight: Any) -> None:
    val, out = run(line(chat(USER, {"role": "assistant", "content": "x", "weight": weight})))
    assert codes(val) == [(1, "invalid_weight")]
    assert val.errors[0].field == "messages[1].weight"
    assert out == []


def test_weight_only_on_assistant() -> None:
    p = first_error(chat({"role": "user", "content": "x", "weight": 1}, ASSISTANT))
    assert (p.code, p.field) == ("invalid_weight", "messages[0].weight")


def test_valid_weights_and_all_zero_warning() -> None:
    assert (
        validate(
            chat(
                USER,
                {"role": "assistant", "content": "a", "weight": 0},
                USER,
                ASSISTANT,
            )
        )
        == []
    )
    assert validate(chat(USER, {"role": "assistant", "content": "a", "weight": 1})) == []
    probs = validate(chat(USER, {"role": "assistant", "content": "a", "weight": 0}))
    assert [(p.code, p.severity) for p in probs] == [("all_weights_zero", "warning")]
    val, out = run(line(chat(USER, {"role": "assistant", "content": "a", "weight": 0})))
    assert val.ok
    assert len(out) == 1
    assert [p.code for p in val.warnings] == ["all_weights_zero"]


def test_unknown_message_field() -> None:
    p = first_error(chat(USER, {"role": "assistant", "content": "x", "mood": "happy"}))
    assert (p.code, p.field) == ("unknown_field", "messages[1].mood")


def test_no_assistant_message() -> None:
    p = first_error(chat(USER, {"role": "system", "content": "s"}))
    assert (p.code, p.field) == ("no_assistant_message", "messages")


def test_no_user_message_is_only_a_warning() -> None:
    probs = validate(chat({"role": "system", "content": "s"}, ASSISTANT))
    assert [(p.code, p.severity, p.line) for p in probs] == [("no_user_message", "warning", 3)]


def test_no_system_message_is_not_a_warning() -> None:
    assert validate(GOOD) == []


# -- tools -----------------------------------------------------------------------------

TOOL_CONVERSATION = chat(
    {"role": "system", "content": "You can call tools."},
    USER,
    {"role": "assistant", "content": None, "tool_calls": [TOOL_CALL]},
    {"role": "tool", "tool_call_id": "call_1", "content": '{"temp": 20}'},
    {"role": "assistant", "content": "It is 20 degrees."},
    tools=TOOLS,
    parallel_tool_calls=False,
)


def test_valid_tool_calls_and_tools() -> None:
    assert validate(TOOL_CONVERSATION) == []
    no_content_key = chat(USER, {"role": "assistant", "tool_calls": [TOOL_CALL]})
    assert validate(no_content_key) == []
    val, out = run(line(TOOL_CONVERSATION))
    assert val.ok
    assert out[0].format == "chat"


def _with_call(call: Any) -> dict[str, Any]:
    return chat(USER, {"role": "assistant", "content": None, "tool_calls": call})


@pytest.mark.parametrize(
    ("tool_calls", "field"),
    [
        ("call", "messages[1].tool_calls"),
        ([], "messages[1].tool_calls"),
        (["x"], "messages[1].tool_calls[0]"),
        ([{**TOOL_CALL, "id": 5}], "messages[1].tool_calls[0].id"),
        ([{**TOOL_CALL, "type": "retrieval"}], "messages[1].tool_calls[0].type"),
        ([{**TOOL_CALL, "function": "f"}], "messages[1].tool_calls[0].function"),
        (
            [{**TOOL_CALL, "function": {"name": "f", "arguments": {"city": "x"}}}],
            "messages[1].tool_calls[0].function.arguments",
        ),
        (
            [TOOL_CALL, {**TOOL_CALL, "function": {"arguments": "{}"}}],
            "messages[1].tool_calls[1].function.name",
        ),
    ],
)
def test_invalid_tool_calls(tool_calls: Any, field: str) -> None:
    p = first_error(_with_call(tool_calls))
    assert (p.code, p.field) == ("invalid_tool_calls", field)
    assert field in p.message


def test_tool_calls_only_on_assistant() -> None:
    p = first_error(chat({"role": "user", "content": "x", "tool_calls": [TOOL_CALL]}, ASSISTANT))
    assert (p.code, p.field) == ("invalid_tool_calls", "messages[0].tool_calls")


def test_tool_message_needs_tool_call_id() -> None:
    obj = chat(
        USER,
        {"role": "assistant", "tool_calls": [TOOL_CALL]},
        {"role": "tool", "content": "20"},
        ASSISTANT,
    )
    p = first_error(obj)
    assert (p.code, p.field) == ("missing_tool_call_id", "messages[2].tool_call_id")


@pytest.mark.parametrize(
    ("tools", "field"),
    [
        ({"type": "function"}, "tools"),
        (["f"], "tools[0]"),
        ([{**TOOLS[0], "type": "code"}], "tools[0].type"),
        ([{"type": "function"}], "tools[0].function"),
        (
            [{"type": "function", "function": {"description": "d"}}],
            "tools[0].function.name",
        ),
        (
            [{"type": "function", "function": {"name": "f", "description": 3}}],
            "tools[0].function.description",
        ),
        (
            [{"type": "function", "function": {"name": "f", "parameters": "x"}}],
            "tools[0].function.parameters",
        ),
    ],
)
def test_invalid_tools(tools: Any, field: str) -> None:
    p = first_error(chat(USER, ASSISTANT, tools=tools))
    assert (p.code, p.field) == ("invalid_tools", field)


def test_tools_minimal_function_is_valid() -> None:
    assert validate(chat(USER, ASSISTANT, tools=[{"type": "function", "function": {"name": "f"}}])) == []


def test_parallel_tool_calls_must_be_bool() -> None:
    p = first_error(chat(USER, ASSISTANT, parallel_tool_calls="yes"))
    assert p.field == "parallel_tool_calls"


# -- preference ------------------------------------------------------------------------


def test_preference_input_needs_no_assistant() -> None:
    assert validate(PREFERENCE) == []


def test_preference_input_messages_validated() -> None:
    obj = {**PREFERENCE, "input": {"messages": [{"role": "robot", "content": "x"}]}}
    p = first_error(obj)
    assert (p.code, p.field) == ("unrecognized_role", "input.messages[0].role")
    p = first_error({**PREFERENCE, "input": {}})
    assert (p.code, p.field) == ("missing_messages", "input.messages")
    p = first_error({**PREFERENCE, "input": {"messages": []}})
    assert p.code == "empty_messages"


@pytest.mark.parametrize(
    ("key", "value", "field"),
    [
        ("preferred_output", [], "preferred_output"),
        ("non_preferred_output", "bad", "non_preferred_output"),
        (
            "preferred_output",
            [{"role": "user", "content": "x"}],
            "preferred_output[0].role",
        ),
    ],
)
def test_invalid_preference_output(key: str, value: Any, field: str) -> None:
    p = first_error({**PREFERENCE, key: value})
    assert (p.code, p.field) == ("invalid_preference_output", field)


def test_preference_output_missing() -> None:
    obj = {k: val for k, val in PREFERENCE.items() if k != "non_preferred_output"}
    p = first_error(obj)
    assert (p.code, p.field) == ("invalid_preference_output", "non_preferred_output")
    assert "missing" in p.message


def test_preference_output_message_content_checked() -> None:
    p = first_error({**PREFERENCE, "preferred_output": [{"role": "assistant"}]})
    assert (p.code, p.field) == ("missing_content", "preferred_output[0].content")


# -- prompt / completion ---------------------------------------------------------------


def test_prompt_completion_rules() -> None:
    p = first_error({"prompt": "a", "completion": ""})
    assert (p.code, p.field) == ("missing_content", "completion")
    p = first_error({"prompt": "a"})
    assert (p.code, p.field) == ("missing_content", "completion")
    p = first_error({"prompt": 1, "completion": "b"})
    assert (p.code, p.field) == ("invalid_content", "prompt")
    p = first_error({"prompt": "a", "completion": "b", "label": 1})
    assert (p.code, p.field) == ("unknown_field", "label")
    assert validate({"prompt": "", "completion": "b"}) == []


# -- validate_object -------------------------------------------------------------------


def test_validate_object_not_an_object_and_no_prefix_for_line_zero() -> None:
    fmt, probs = v.validate_object([1, 2])
    assert fmt is None
    assert [p.code for p in probs] == ["not_an_object"]
    assert probs[0].line == 0
    assert not probs[0].message.startswith("line")
    fmt, probs = v.validate_object(chat(USER, {"role": "robot", "content": "x"}), 9)
    assert fmt == "chat"
    assert probs[0].message.startswith("line 9: ")


def test_validate_object_never_raises_on_odd_values() -> None:
    odd: list[Any] = [
        {"messages": [{"role": {"a": 1}, "content": {"b": 2}, "weight": [1], "name": None}]},
        {"messages": [None, 1, [], {}]},
        {"input": None, "preferred_output": None},
        {"prompt": None, "completion": None},
        {
            "messages": [{"role": "assistant", "tool_calls": [{"function": {"name": None}}]}],
            "tools": [None],
        },
    ]
    for obj in odd:
        fmt, probs = v.validate_object(obj, 1)
        assert fmt is not None
        assert probs
        assert len(probs) <= v.MAX_PROBLEMS_PER_LINE
