"""OpenAI Evals placeholders in grader settings: ``{{sample.output_text}}``, ``{{item.reference}}``, ….

Namespaces and fields:

- ``sample.output_text``: the model's answer (``sample.model``: its label). Pairwise graders use ``sample_a.*`` and
  ``sample_b.*`` for the two answers.
- ``item.reference``: the example's last assistant turn (empty when it has none).
- ``item.messages``: the conversation given to the models, one ``role: content`` line per turn.
- ``item.input``: the content of its last user turn.
- ``item.example_id``, ``item.index``.
- ``item.metadata.KEY`` or plainly ``item.KEY``: a field of the example's metadata (dotted paths reach nested ones).

A template is checked when the grader is built (an unknown namespace or a malformed ``{{…}}`` is an
``InvalidArgument`` naming the setting); a metadata key that one example lacks is a ``MissingField`` at render time,
which the grader turns into that example's error, not the run's.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from tunery.errors import InvalidArgument
from tunery_evaluator.graders.base import Answer, Item

_PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\.([A-Za-z0-9_][A-Za-z0-9_.\-]*)\s*\}\}")
_SAMPLE_FIELDS = {"output_text", "model"}
_ITEM_FIELDS = {"reference", "messages", "input", "example_id", "index"}

SAMPLE_NAMESPACES = frozenset({"sample"})
PAIR_NAMESPACES = frozenset({"sample_a", "sample_b"})


class MissingField(KeyError):
    """A placeholder names a metadata field that this example does not have."""

    def __init__(self, placeholder: str) -> None:
        super().__init__(placeholder)
        self.placeholder = placeholder

    def __str__(self) -> str:
        return f"the example has no field for {{{{{self.placeholder}}}}}"


@dataclass(frozen=True, slots=True)
class Template:
    """A checked template string."""

    text: str

    @classmethod
    def parse(cls, text: Any, field: str, grader: str, samples: frozenset[str] = SAMPLE_NAMESPACES) -> Template:
        """Check ``text`` (a setting of grader ``grader`` at ``field``) and return it as a Template."""
        if not isinstance(text, str):
            raise InvalidArgument(f"{grader}: {field} must be a string", code="invalid_grader_config", field=field)
        rest = _PLACEHOLDER.sub("", text)
        if "{{" in rest or "}}" in rest:
            raise InvalidArgument(
                f"{grader}: {field} has a malformed placeholder; write {{{{item.reference}}}} or "
                f"{{{{sample.output_text}}}}", code="invalid_template", field=field)
        for m in _PLACEHOLDER.finditer(text):
            space, name = m.group(1), m.group(2)
            if space in samples:
                if name not in _SAMPLE_FIELDS:
                    raise InvalidArgument(
                        f"{grader}: {field} uses {{{{{space}.{name}}}}}; {space} has "
                        f"{', '.join(sorted(_SAMPLE_FIELDS))}", code="invalid_template", field=field)
            elif space != "item":
                valid = ", ".join(sorted({"item", *samples}))
                raise InvalidArgument(f"{grader}: {field} uses an unknown namespace {space!r} (valid: {valid})",
                                      code="invalid_template", field=field)
        return cls(text)

    @property
    def uses_reference(self) -> bool:
        return any(m.group(1) == "item" and m.group(2) == "reference" for m in _PLACEHOLDER.finditer(self.text))

    def render(self, item: Item, samples: dict[str, Answer]) -> str:
        """Fill the placeholders; raises MissingField for a metadata key the example lacks."""

        def one(m: re.Match[str]) -> str:
            space, name = m.group(1), m.group(2)
            if space == "item":
                return _item_field(item, name)
            answer = samples[space]
            return answer.content if name == "output_text" else answer.model

        return _PLACEHOLDER.sub(one, self.text)


def transcript(messages: list[dict[str, Any]]) -> str:
    """A conversation as ``role: content`` lines (non-text content parts are shown as JSON)."""
    lines = []
    for m in messages:
        content = m.get("content", "")
        if not isinstance(content, str):
            content = json.dumps(content, ensure_ascii=False)
        lines.append(f"{m.get('role', '')}: {content}")
    return "\n".join(lines)


def _item_field(item: Item, name: str) -> str:
    if name == "reference":
        return item.reference
    if name == "messages":
        return transcript(item.messages)
    if name == "input":
        users = [m for m in item.messages if m.get("role") == "user"]
        content = users[-1].get("content", "") if users else ""
        return content if isinstance(content, str) else json.dumps(content, ensure_ascii=False)
    if name == "example_id":
        return item.example_id
    if name == "index":
        return str(item.index)
    path = name.split(".")
    if path[0] == "metadata" and len(path) > 1:
        path = path[1:]
    value: Any = item.metadata
    for key in path:
        if not isinstance(value, dict) or key not in value:
            raise MissingField(f"item.{name}")
        value = value[key]
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


__all__ = ["PAIR_NAMESPACES", "SAMPLE_NAMESPACES", "MissingField", "Template", "transcript"]
