"""Token counts with a base model's own tokenizer and chat template (what the trainer will actually see)."""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator
from functools import lru_cache
from pathlib import Path
from typing import Any

from tunery.errors import FailedPrecondition
from tunery.models import BaseModelSpec, tokenizer_source

BATCH = 256
_lock = threading.Lock()


@lru_cache(maxsize=4)
def _load(source: str) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(source)


def load_tokenizer(spec: BaseModelSpec, data_dir: Path) -> Any:
    with _lock:  # one conversion/load at a time; later calls hit the cache
        try:
            return _load(tokenizer_source(spec, data_dir))
        except OSError as err:
            raise FailedPrecondition(
                f"cannot load the tokenizer of {spec.name}: {err}", code="tokenizer_unavailable", field="base_model"
            ) from err


def _text(content: Any) -> str:
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict))
    return content or ""


def _plain_messages(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Chat templates expect string content; text parts are joined and unknown keys dropped."""
    out = []
    for m in messages:
        msg: dict[str, Any] = {"role": m["role"], "content": _text(m.get("content"))}
        for key in ("tool_calls", "tool_call_id", "name"):
            if key in m:
                msg[key] = m[key]
        out.append(msg)
    return out


def _render(tok: Any, data: dict[str, Any]) -> tuple[str, list[str]]:
    """(full text as trained, texts of the trained assistant turns)."""
    if "prompt" in data:
        return data["prompt"] + data["completion"], [data["completion"]]
    if "input" in data:
        msgs = _plain_messages(data["input"]["messages"] + data["preferred_output"])
        trained = [_text(m.get("content")) for m in data["preferred_output"]]
        tools = data["input"].get("tools")
    else:
        msgs = _plain_messages(data["messages"])
        trained = [
            _text(m.get("content")) + "".join(str(tc) for tc in m.get("tool_calls") or [])
            for m in data["messages"]
            if m["role"] == "assistant" and m.get("weight", 1) != 0
        ]
        tools = data.get("tools")
    if getattr(tok, "chat_template", None):
        text = tok.apply_chat_template(msgs, tools=tools, tokenize=False)
    else:
        text = "\n".join(f"{m['role']}: {m['content']}" for m in msgs)
    return text, trained


def count(tok: Any, examples: Iterable[dict[str, Any]]) -> Iterator[tuple[int, int]]:
    """(tokens in the example, trained tokens) per example, tokenizing in batches with the fast tokenizer."""
    batch: list[dict[str, Any]] = []

    def flush() -> Iterator[tuple[int, int]]:
        rendered = [_render(tok, d) for d in batch]
        full = tok([r[0] for r in rendered], add_special_tokens=False)["input_ids"]
        flat = [t for r in rendered for t in r[1]]
        trained_ids = tok(flat, add_special_tokens=False)["input_ids"] if flat else []
        k = 0
        for (_, parts), ids in zip(rendered, full, strict=True):
            n = sum(len(trained_ids[k + j]) + 1 for j in range(len(parts)))  # +1: the end-of-turn token is trained
            k += len(parts)
            yield len(ids), n

    for d in examples:
        batch.append(d)
        if len(batch) >= BATCH:
            yield from flush()
            batch = []
    if batch:
        yield from flush()
