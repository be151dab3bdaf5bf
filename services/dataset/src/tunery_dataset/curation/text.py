"""The text of an example, as near-duplicate detection compares it.

Supported example shapes (OpenAI fine-tuning formats):

* chat: ``{"messages": [{"role": ..., "content": ...}, ...]}``
* legacy completion: ``{"prompt": ..., "completion": ...}``
* preference (DPO): ``{"input": {"messages": [...]}, "preferred_output": [...],
  "non_preferred_output": [...]}``

Message ``content`` may be a string, ``None`` (an assistant turn that only
carries ``tool_calls``) or a list of content parts such as
``{"type": "text", "text": ...}``.
"""

from __future__ import annotations

import json
from typing import Any

__all__ = ["example_text"]


def _content_text(content: Any) -> str:
    """Text of a message ``content``: a string, None, or a list of parts.

    Only parts that carry text (``{"type": "text", "text": ...}`` and friends
    such as ``input_text``/``refusal``) contribute; images and audio have no
    text to compare, so they are skipped.
    """
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        pieces: list[str] = []
        for part in content:
            if isinstance(part, str):
                pieces.append(part)
            elif isinstance(part, dict):
                for key in ("text", "refusal"):
                    value = part.get(key)
                    if isinstance(value, str):
                        pieces.append(value)
                        break
        return " ".join(pieces)
    return str(content)


def _call_text(function: Any) -> str:
    """``name(arguments)`` for a tool call / legacy function call."""
    if not isinstance(function, dict):
        return ""
    name = function.get("name") or ""
    arguments = function.get("arguments")
    if arguments is None:
        arguments = ""
    elif not isinstance(arguments, str):
        arguments = json.dumps(arguments, sort_keys=True, ensure_ascii=False)
    return f"{name}({arguments})"


def _message_line(message: Any, prefix: str = "") -> str | None:
    if not isinstance(message, dict):
        return None
    role = str(message.get("role") or "")
    pieces: list[str] = []
    text = _content_text(message.get("content"))
    if text:
        pieces.append(text)
    for call in message.get("tool_calls") or []:
        if isinstance(call, dict):
            call_text = _call_text(call.get("function"))
            if call_text:
                pieces.append(call_text)
    if message.get("function_call"):
        call_text = _call_text(message["function_call"])
        if call_text:
            pieces.append(call_text)
    return f"{prefix}{role}: {' '.join(pieces)}"


def example_text(data: dict[str, Any]) -> str:
    """All text of one example in order, one ``role: text`` line per message.

    Used for near-duplicate detection, so it includes everything that makes
    two examples different to a model: roles, message text and tool calls
    (rendered as ``name(arguments)``). Legacy prompt/completion pairs are
    rendered as ``user``/``assistant`` turns; preference examples render the
    input messages followed by the outputs, prefixed ``preferred `` and
    ``non_preferred ``. Top-level ``tools``/``functions`` definitions are left
    out: they are usually identical across a dataset and would make unrelated
    examples look alike. Unrecognised shapes yield ``""``.
    """
    lines: list[str | None] = []
    if isinstance(data.get("messages"), list):
        lines.extend(_message_line(m) for m in data["messages"])
    elif "prompt" in data or "completion" in data:
        lines.append(f"user: {_content_text(data.get('prompt'))}")
        lines.append(f"assistant: {_content_text(data.get('completion'))}")
    elif isinstance(data.get("input"), dict) or "preferred_output" in data:
        source = data.get("input")
        if isinstance(source, dict) and isinstance(source.get("messages"), list):
            lines.extend(_message_line(m) for m in source["messages"])
        for key in ("preferred_output", "non_preferred_output"):
            outputs = data.get(key)
            if isinstance(outputs, list):
                lines.extend(_message_line(m, prefix=f"{key.removesuffix('_output')} ") for m in outputs)
    return "\n".join(line for line in lines if line is not None)
