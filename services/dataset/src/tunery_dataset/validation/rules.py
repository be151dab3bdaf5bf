"""What makes one fine-tuning example valid: OpenAI's chat, preference and legacy prompt/completion formats.

`validate_object` checks one parsed example and names every problem by its JSON path (``messages[2].role``); the
streaming upload validator (`stream.JsonlValidator`) runs it on every line, and the service runs it on an example
added or edited by hand. Most uploads are plain chat, so `is_plain_chat` accepts those in one tight loop and only
the rest pays for the full check.
"""

from __future__ import annotations

from typing import Any, Final, Literal

from tunery.errors import Problem, Severity

__all__ = ["MAX_PROBLEMS_PER_LINE", "ExampleFormat", "detect_format", "is_plain_chat", "validate_object"]

ExampleFormat = Literal["chat", "prompt_completion", "preference"]

MAX_PROBLEMS_PER_LINE: Final = 5
"""One broken line must not flood the report and hide problems on later lines."""

_ROLES: Final = frozenset({"system", "user", "assistant", "tool"})
_ROLE_LIST: Final = "system, user, assistant, tool"
_FAST_ROLES: Final = frozenset({"system", "user", "assistant"})
_MESSAGE_KEYS: Final = frozenset({"role", "content", "name", "weight", "tool_calls", "tool_call_id"})
_PROMPT_COMPLETION_KEYS: Final = frozenset({"prompt", "completion"})
_FORMATS_HINT: Final = (
    'expected one of the accepted formats: chat ({"messages": [...]}), preference '
    '({"input": {"messages": [...]}, "preferred_output": [...], '
    '"non_preferred_output": [...]}) or prompt/completion '
    '({"prompt": ..., "completion": ...})'
)


class _LineFull(Exception):
    """Internal: the per-line problem cap was reached, stop checking this line."""


class _Problems:
    """Collects one line's problems; stops validation once the cap is reached."""

    __slots__ = ("file", "items", "line")

    def __init__(self, line: int, file: str) -> None:
        self.line = line
        self.file = file
        self.items: list[Problem] = []

    def add(self, code: str, message: str, field: str = "", severity: Severity = "error") -> None:
        if self.line:
            message = f"line {self.line}: {message}"
        self.items.append(Problem(code, message, field, self.line, self.file, severity))
        if len(self.items) >= MAX_PROBLEMS_PER_LINE:
            raise _LineFull


def _json_type(value: Any) -> str:
    """JSON name of a value's type: messages speak the user's language, not Python's."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, dict):
        return "object"
    if isinstance(value, list):
        return "array"
    if isinstance(value, str):
        return "string"
    if isinstance(value, int | float):
        return "number"
    return type(value).__name__


def _show(value: Any, limit: int = 40) -> str:
    """Short rendering of a bad value: contents can be megabytes, messages must not."""
    if isinstance(value, dict | list):
        return f"a JSON {_json_type(value)}"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    text = f"'{value}'" if isinstance(value, str) else repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def detect_format(obj: dict[str, Any]) -> ExampleFormat | None:
    """Guess which format an example is meant to be in from its top-level keys.

    Detection is deliberately loose (any characteristic key counts) so that an example
    with a missing part gets a precise error about that part instead of a generic
    "unknown format".
    """
    if "messages" in obj:
        return "chat"
    if "input" in obj or "preferred_output" in obj or "non_preferred_output" in obj:
        return "preference"
    if "prompt" in obj or "completion" in obj:
        return "prompt_completion"
    return None


def validate_object(obj: Any, line: int = 0, file: str = "") -> tuple[ExampleFormat | None, list[Problem]]:
    """Validate one parsed example; returns its format and its errors and warnings.

    Used for every uploaded line (``line`` and ``file`` say where it came from) and directly when a user adds or
    edits one example by hand. At most ``MAX_PROBLEMS_PER_LINE`` problems are returned.
    """
    probs = _Problems(line, file)
    fmt: ExampleFormat | None = None
    try:
        if not isinstance(obj, dict):
            probs.add("not_an_object", f"expected a JSON object but found a JSON {_json_type(obj)}")
            return None, probs.items
        fmt = detect_format(obj)
        if fmt == "chat":
            _check_chat(obj, probs)
        elif fmt == "preference":
            _check_preference(obj, probs)
        elif fmt == "prompt_completion":
            _check_prompt_completion(obj, probs)
        else:
            probs.add("missing_messages", f"no 'messages' key; {_FORMATS_HINT}", "messages")
    except _LineFull:
        pass
    return fmt, probs.items


def is_plain_chat(obj: dict[str, Any]) -> bool:
    """Tell whether a chat example is certainly valid and warning-free.

    Most uploads are just ``{"messages": [{"role": ..., "content": "..."}, ...]}``;
    one tight loop accepts those, and anything else (tools, weights, odd values) falls
    back to the full, slower check.  Short examples are dominated by per-line overhead,
    so this path is what keeps throughput up for them.
    """
    if len(obj) != 1:
        return False
    messages = obj.get("messages")
    if type(messages) is not list:
        return False
    user = assistant = False
    for m in messages:
        if type(m) is not dict or len(m) != 2 or type(m.get("content")) is not str:
            return False
        role = m.get("role")
        if role == "assistant":
            assistant = True
        elif role == "user":
            user = True
        elif role != "system":
            return False
    return user and assistant


def _check_chat(obj: dict[str, Any], probs: _Problems) -> None:
    messages = obj["messages"]
    if not isinstance(messages, list):
        probs.add(
            "missing_messages",
            f"messages must be an array of messages, found a JSON {_json_type(messages)}",
            "messages",
        )
    elif not messages:
        probs.add("empty_messages", "messages is empty; add at least one message", "messages")
    else:
        roles, weights = _check_messages(messages, "messages", probs)
        if "assistant" not in roles:
            probs.add(
                "no_assistant_message", "messages has no assistant message, so there is nothing to train on", "messages"
            )
        elif weights and not any(weights) and len(weights) == roles.count("assistant"):
            probs.add(
                "all_weights_zero",
                "every assistant message has weight 0, so this example teaches nothing",
                "messages",
                "warning",
            )
        if roles and "user" not in roles:
            probs.add("no_user_message", "messages has no user message", "messages", "warning")
    _check_tools_fields(obj, "", probs)


def _check_tools_fields(obj: dict[str, Any], prefix: str, probs: _Problems) -> None:
    """Check the optional ``tools`` and ``parallel_tool_calls`` beside messages."""
    tools = obj.get("tools")
    if tools is not None:
        _check_tools(tools, prefix + "tools", probs)
    ptc = obj.get("parallel_tool_calls")
    if ptc is not None and not isinstance(ptc, bool):
        path = prefix + "parallel_tool_calls"
        probs.add("invalid_tools", f"{path} must be true or false, found {_show(ptc)}", path)


def _check_tools(tools: Any, path: str, probs: _Problems) -> None:
    if not isinstance(tools, list):
        probs.add("invalid_tools", f"{path} must be an array, found a JSON {_json_type(tools)}", path)
        return
    for i, tool in enumerate(tools):
        p = f"{path}[{i}]"
        if not isinstance(tool, dict):
            probs.add("invalid_tools", f"{p} must be an object, found a JSON {_json_type(tool)}", p)
            continue
        if tool.get("type") != "function":
            probs.add("invalid_tools", f"{p}.type is {_show(tool.get('type'))}; expected 'function'", p + ".type")
        fn = tool.get("function")
        if not isinstance(fn, dict):
            probs.add("invalid_tools", f"{p}.function must be an object", p + ".function")
            continue
        name = fn.get("name")
        if not isinstance(name, str) or not name:
            probs.add("invalid_tools", f"{p}.function.name must be a non-empty string", p + ".function.name")
        desc = fn.get("description")
        if desc is not None and not isinstance(desc, str):
            probs.add("invalid_tools", f"{p}.function.description must be a string", p + ".function.description")
        params = fn.get("parameters")
        if params is not None and not isinstance(params, dict):
            probs.add(
                "invalid_tools", f"{p}.function.parameters must be a JSON schema object", p + ".function.parameters"
            )


def _check_messages(messages: list[Any], path: str, probs: _Problems) -> tuple[list[str], list[int]]:
    """Check a message list; returns the valid roles and the assistant weights seen."""
    roles: list[str] = []
    weights: list[int] = []
    for i, msg in enumerate(messages):
        # Fast path: the overwhelmingly common {"role": ..., "content": "..."} shape.
        if type(msg) is dict and len(msg) == 2:
            role = msg.get("role")
            if type(role) is str and role in _FAST_ROLES and type(msg.get("content")) is str:
                roles.append(role)
                continue
        role = _check_message(msg, f"{path}[{i}]", probs, weights)
        if role is not None:
            roles.append(role)
    return roles, weights


def _check_message(
    msg: Any,
    p: str,
    probs: _Problems,
    weights: list[int],
    required_role: str | None = None,
) -> str | None:
    """Full check of one message; returns its role if recognised."""
    if not isinstance(msg, dict):
        probs.add("invalid_message", f"{p} must be an object, found a JSON {_json_type(msg)}", p)
        return None
    if not _MESSAGE_KEYS.issuperset(msg):
        for key in msg:
            if key not in _MESSAGE_KEYS:
                probs.add(
                    "unknown_field",
                    f"{p}.{key} is not a recognised message field; allowed: " + ", ".join(sorted(_MESSAGE_KEYS)),
                    f"{p}.{key}",
                )
    role: str | None = msg.get("role")
    if "role" not in msg:
        probs.add("missing_role", f"{p} has no role", f"{p}.role")
        role = None
    elif not isinstance(role, str) or role not in _ROLES:
        probs.add("unrecognized_role", f"{p}.role is {_show(role)}; expected one of {_ROLE_LIST}", f"{p}.role")
        role = None
    if required_role is not None and role is not None and role != required_role:
        probs.add(
            "invalid_preference_output",
            f"{p}.role is '{role}'; preference outputs must be {required_role} messages",
            f"{p}.role",
        )

    tool_calls = msg.get("tool_calls")
    has_tool_calls = False
    if tool_calls is not None:
        if role is not None and role != "assistant":
            probs.add(
                "invalid_tool_calls",
                f"{p}.tool_calls is only allowed on assistant messages, not {role}",
                f"{p}.tool_calls",
            )
        has_tool_calls = _check_tool_calls(tool_calls, f"{p}.tool_calls", probs)

    content = msg.get("content")
    if isinstance(content, str):
        pass
    elif isinstance(content, list):
        _check_content_parts(content, f"{p}.content", probs)
    elif content is None:
        if role == "assistant":
            if not has_tool_calls:
                probs.add(
                    "missing_content",
                    f"{p} is an assistant message with neither content nor tool_calls",
                    f"{p}.content",
                )
        elif role is not None:
            probs.add("missing_content", f"{p} ({role}) must have string content", f"{p}.content")
    else:
        probs.add(
            "invalid_content",
            f"{p}.content must be a string or an array of text parts, found a JSON {_json_type(content)}",
            f"{p}.content",
        )

    if "name" in msg and not isinstance(msg["name"], str):
        probs.add("invalid_name", f"{p}.name must be a string, found {_show(msg['name'])}", f"{p}.name")

    if "weight" in msg:
        weight = msg["weight"]
        if role is not None and role != "assistant":
            probs.add("invalid_weight", f"{p}.weight is only allowed on assistant messages, not {role}", f"{p}.weight")
        elif type(weight) is not int or weight not in (0, 1):
            probs.add("invalid_weight", f"{p}.weight is {_show(weight)}; expected 0 or 1", f"{p}.weight")
        else:
            weights.append(weight)

    if role == "tool":
        tcid = msg.get("tool_call_id")
        if not isinstance(tcid, str) or not tcid:
            probs.add(
                "missing_tool_call_id", f"{p} is a tool message without a string tool_call_id", f"{p}.tool_call_id"
            )
    return role


def _check_content_parts(parts: list[Any], p: str, probs: _Problems) -> None:
    if not parts:
        probs.add("invalid_content", f"{p} is an empty array", p)
    for j, part in enumerate(parts):
        pp = f"{p}[{j}]"
        if not isinstance(part, dict):
            probs.add("invalid_content", f"{pp} must be an object, found a JSON {_json_type(part)}", pp)
        elif part.get("type") != "text":
            probs.add(
                "invalid_content",
                f"{pp}.type is {_show(part.get('type'))}; only 'text' content parts are supported",
                f"{pp}.type",
            )
        elif not isinstance(part.get("text"), str):
            probs.add("invalid_content", f"{pp}.text must be a string", f"{pp}.text")


def _check_tool_calls(tool_calls: Any, p: str, probs: _Problems) -> bool:
    """Check tool calls; return whether there is one (it can replace content)."""
    if not isinstance(tool_calls, list):
        probs.add("invalid_tool_calls", f"{p} must be an array, found a JSON {_json_type(tool_calls)}", p)
        return False
    if not tool_calls:
        probs.add("invalid_tool_calls", f"{p} is an empty array", p)
        return False
    for k, call in enumerate(tool_calls):
        cp = f"{p}[{k}]"
        if not isinstance(call, dict):
            probs.add("invalid_tool_calls", f"{cp} must be an object, found a JSON {_json_type(call)}", cp)
            continue
        if not isinstance(call.get("id"), str):
            probs.add("invalid_tool_calls", f"{cp}.id must be a string", f"{cp}.id")
        if call.get("type") != "function":
            probs.add(
                "invalid_tool_calls", f"{cp}.type is {_show(call.get('type'))}; expected 'function'", f"{cp}.type"
            )
        fn = call.get("function")
        if not isinstance(fn, dict):
            probs.add("invalid_tool_calls", f"{cp}.function must be an object", f"{cp}.function")
            continue
        for key in ("name", "arguments"):
            if not isinstance(fn.get(key), str):
                probs.add(
                    "invalid_tool_calls",
                    f"{cp}.function.{key} must be a string, found {_show(fn.get(key))}",
                    f"{cp}.function.{key}",
                )
    return True


def _check_preference(obj: dict[str, Any], probs: _Problems) -> None:
    inp = obj.get("input")
    if not isinstance(inp, dict) or "messages" not in inp:
        probs.add(
            "missing_messages",
            "preference examples need input.messages (the conversation before the outputs)",
            "input.messages",
        )
    else:
        messages = inp["messages"]
        if not isinstance(messages, list):
            probs.add(
                "missing_messages",
                f"input.messages must be an array, found a JSON {_json_type(messages)}",
                "input.messages",
            )
        elif not messages:
            probs.add("empty_messages", "input.messages is empty", "input.messages")
        else:
            _check_messages(messages, "input.messages", probs)
        _check_tools_fields(inp, "input.", probs)
    for key in ("preferred_output", "non_preferred_output"):
        out = obj.get(key)
        if not isinstance(out, list) or not out:
            found = "missing" if key not in obj else f"a JSON {_json_type(out)}"
            if isinstance(out, list):
                found = "empty"
            probs.add(
                "invalid_preference_output", f"{key} must be a non-empty array of assistant messages ({found})", key
            )
            continue
        weights: list[int] = []
        for i, msg in enumerate(out):
            _check_message(msg, f"{key}[{i}]", probs, weights, required_role="assistant")


def _check_prompt_completion(obj: dict[str, Any], probs: _Problems) -> None:
    for key in obj:
        if key not in _PROMPT_COMPLETION_KEYS:
            probs.add("unknown_field", f"{key} is not a prompt/completion field; allowed: prompt, completion", key)
    for key in ("prompt", "completion"):
        if key not in obj:
            probs.add("missing_content", f"{key} is missing", key)
            continue
        value = obj[key]
        if not isinstance(value, str):
            probs.add("invalid_content", f"{key} must be a string, found a JSON {_json_type(value)}", key)
        elif key == "completion" and not value:
            probs.add("missing_content", "completion is empty", key)
