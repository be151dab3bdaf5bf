"""One way to turn OpenAI-format messages into a model's chat-template input and token ids, for every service.

The trainer trains on `encode_example`, the gateway serves `encode_prompt`, the dataset service counts
`encode_examples`; all three go through `template_input`, so what is trained, served and counted are the same tokens
(tests/test_chat_format.py checks it). The rules, decided once:

- roles: `developer` is OpenAI's newer name of `system` and is rendered as `system` (templates know `system`);
- content: a string, or text parts joined; any other part type is refused (`unsupported_content`);
- keys: `role`, `content`, `name`, `tool_calls`, `tool_call_id` reach the template; `weight` only decides what is
  trained; anything else is dropped;
- tool calls: a template that knows `tool_calls` gets them with `arguments` as an object (the transformers
  convention; OpenAI sends a JSON string, which such templates would encode twice). A template that knows nothing of
  tools (SmolLM2's) would silently drop calls and definitions, so calls are written into the content as
  `<tool_call>{json}</tool_call>` and definitions into the system message as `<tools>[json]</tools>` (the Hermes
  convention SmolLM2 was tuned on);
- labels: assistant tokens through the end-of-turn token (so the model learns to stop), not the whitespace after it,
  skipping assistant turns with `weight: 0`. Spans are found by rendering conversation prefixes with the model's own
  template and mapping characters to tokens through the tokenizer's offsets: that works for any template that renders
  a conversation as the concatenation of its turns (nearly all), without the `{% generation %}` markers most templates
  (SmolLM2's included) lack; templates that re-render earlier turns fall back to locating the content.

No torch here (the dataset service has none): the tokenizer is a parameter, any fast transformers tokenizer.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from tunery.errors import InvalidArgument

__all__ = [
    "IGNORE_INDEX",
    "Rendered",
    "Tokenized",
    "encode_chat",
    "encode_example",
    "encode_examples",
    "encode_prompt",
    "encode_prompt_completion",
    "normalize_messages",
    "render_chat",
    "render_example",
    "render_prompt",
    "template_input",
    "text_of",
]

IGNORE_INDEX = -100
_KEPT = ("name", "tool_calls", "tool_call_id")
BATCH = 256


@dataclass(frozen=True, slots=True)
class Tokenized:
    input_ids: list[int]
    labels: list[int]  # aligned with input_ids (not shifted); IGNORE_INDEX where nothing is trained

    @property
    def n_trained(self) -> int:
        return sum(1 for t in self.labels if t != IGNORE_INDEX)


@dataclass(frozen=True, slots=True)
class Rendered:
    """An example as text, the character spans that are trained, and how to tokenize it."""

    text: str
    spans: list[tuple[int, int]]
    add_special_tokens: bool = False  # chat text carries its own special tokens; raw prompt/completion text does not
    append_eos: bool = False


# ---- messages ----


def text_of(content: Any, field: str = "content") -> str:
    """Content as one string: text parts joined; any other part is refused (`field` names the content in errors)."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise InvalidArgument(
            f"{field} must be a string or an array of text parts", code="invalid_content", field=field
        )
    parts = []
    for j, part in enumerate(content):
        kind = part.get("type") if isinstance(part, Mapping) else type(part).__name__
        text = part.get("text") if isinstance(part, Mapping) else None
        if kind != "text" or not isinstance(text, str):
            raise InvalidArgument(
                f"{field}[{j}] is of type {kind!r}; only text parts are supported",
                code="unsupported_content",
                field=field,
            )
        parts.append(text)
    return "".join(parts)


def normalize_messages(messages: Sequence[Mapping[str, Any]], field: str = "messages") -> list[dict[str, Any]]:
    """OpenAI messages as plain template-neutral dicts: `developer` as `system`, string content, known keys only.

    What an engine that applies its own template (TGI) is sent; `template_input` adds the per-template rewriting.
    """
    out: list[dict[str, Any]] = []
    for i, m in enumerate(messages):
        role = m.get("role")
        msg: dict[str, Any] = {
            "role": "system" if role == "developer" else role,
            "content": text_of(m.get("content"), f"{field}[{i}].content"),
        }
        for key in _KEPT:
            if m.get(key) is not None and (key != "tool_calls" or m[key]):
                msg[key] = m[key]
        out.append(msg)
    return out


def _template_text(tokenizer: Any) -> str:
    template = getattr(tokenizer, "chat_template", None) or ""
    return template if isinstance(template, str) else json.dumps(template)


def _arguments(args: Any) -> Any:
    if isinstance(args, str):
        try:
            return json.loads(args)
        except ValueError:
            return args
    return args if args is not None else {}


def _call_json(tc: Mapping[str, Any]) -> dict[str, Any]:
    fn = tc.get("function", tc)
    return {"name": fn.get("name", ""), "arguments": _arguments(fn.get("arguments"))}


def _native_call(tc: Mapping[str, Any]) -> dict[str, Any]:
    if "function" not in tc:  # already the flat {name, arguments} shape
        return {**tc, "arguments": _arguments(tc.get("arguments"))}
    fn = tc["function"]
    return {**tc, "function": {**fn, "arguments": _arguments(fn.get("arguments"))}}


def template_input(
    tokenizer: Any,
    messages: Sequence[Mapping[str, Any]],
    tools: Sequence[Mapping[str, Any]] | None = None,
    field: str = "messages",
) -> tuple[list[dict[str, Any]], list[dict[str, Any]] | None]:
    """(messages, tools) exactly as this tokenizer's chat template is given them (see the module docstring)."""
    template = _template_text(tokenizer)
    knows_calls, knows_tools = "tool_calls" in template, "tools" in template.replace("tool_calls", "")
    out = normalize_messages(messages, field)
    for msg in out:
        calls = msg.get("tool_calls")
        if not calls:
            continue
        if knows_calls:
            msg["tool_calls"] = [_native_call(tc) for tc in calls]
        else:
            del msg["tool_calls"]
            text = "\n".join(
                f"<tool_call>\n{json.dumps(_call_json(tc), ensure_ascii=False)}\n</tool_call>" for tc in calls
            )
            msg["content"] = f"{msg['content']}\n{text}" if msg["content"] else text
    tool_list = [dict(t) for t in tools] if tools else None
    if tool_list and not knows_tools:
        spec = f"You can call these tools:\n<tools>\n{json.dumps(tool_list, ensure_ascii=False)}\n</tools>"
        if out and out[0]["role"] == "system":
            out[0] = {**out[0], "content": f"{out[0]['content']}\n\n{spec}"}
        else:
            out.insert(0, {"role": "system", "content": spec})
        tool_list = None
    return out, tool_list


def _apply(
    tokenizer: Any, messages: list[dict[str, Any]], tools: Any, gen_prompt: bool = False, model: str = ""
) -> str:
    if not getattr(tokenizer, "chat_template", None):
        raise InvalidArgument(
            f"{model or 'this model'} has no chat template", code="no_chat_template", field="messages"
        )
    try:
        text = tokenizer.apply_chat_template(messages, tools=tools, tokenize=False, add_generation_prompt=gen_prompt)
    except Exception as err:  # jinja2.TemplateError, raise_exception() in the template, type errors
        of = f" of {model}" if model else ""
        raise InvalidArgument(
            f"the chat template{of} cannot render these messages: {err}", code="invalid_messages", field="messages"
        ) from err
    return str(text)


# ---- serving: the prompt up to the next assistant turn ----


def render_prompt(
    tokenizer: Any,
    messages: Sequence[Mapping[str, Any]],
    tools: Sequence[Mapping[str, Any]] | None = None,
    model: str = "",
) -> str:
    """The conversation with the template's generation prompt: what the model continues with an assistant turn."""
    msgs, tool_list = template_input(tokenizer, messages, tools)
    return _apply(tokenizer, msgs, tool_list, gen_prompt=True, model=model)


def encode_prompt(
    tokenizer: Any,
    messages: Sequence[Mapping[str, Any]],
    tools: Sequence[Mapping[str, Any]] | None = None,
    model: str = "",
) -> list[int]:
    """Token ids of `render_prompt`; a prefix of what `encode_chat` trains when the conversation goes on."""
    return list(tokenizer(render_prompt(tokenizer, messages, tools, model), add_special_tokens=False)["input_ids"])


# ---- training and counting: the whole example, with its trained spans ----


def _chat_spans(
    tokenizer: Any, messages: list[dict[str, Any]], trained: list[bool], tools: Any
) -> tuple[str, list[tuple[int, int]]]:
    """The rendered conversation and the character spans to train (assistant content through end-of-turn)."""
    full = _apply(tokenizer, messages, tools)
    spans: list[tuple[int, int]] = []
    cursor = 0
    for i, m in enumerate(messages):
        if m["role"] != "assistant" or not trained[i]:
            continue
        try:
            before = _apply(tokenizer, messages[:i], tools, gen_prompt=True) if i else ""
            upto = _apply(tokenizer, messages[: i + 1], tools)
        except InvalidArgument:  # some templates refuse a prefix (e.g. "conversation must start with a user")
            before = upto = ""
        span: tuple[int, int] | None
        if upto and full.startswith(upto) and upto.startswith(before) and len(upto) > len(before):
            # The tail after end-of-turn is whitespace only ("<|im_end|>\n"): never generated, so not trained.
            span = (len(before), len(upto.rstrip()))
        else:
            span = _locate(tokenizer, full, m["content"], cursor)
        if span is not None:
            spans.append(span)
            cursor = span[1]
    return full, spans


def _locate(tokenizer: Any, full: str, content: str, cursor: int) -> tuple[int, int] | None:
    """Fallback for templates that re-render earlier turns: the content, then through the next special token when
    only whitespace separates them (the end-of-turn marker)."""
    if not content:
        return None
    start = full.find(content, cursor)
    if start < 0:
        return None
    end = start + len(content)
    hits = [(j, len(s)) for s in tokenizer.all_special_tokens if s and (j := full.find(s, end)) >= 0]
    if hits:
        j, n = min(hits)
        if not full[end:j].strip():
            end = j + n
    return start, end


def render_chat(
    tokenizer: Any,
    messages: Sequence[Mapping[str, Any]],
    tools: Sequence[Mapping[str, Any]] | None = None,
    trained: Sequence[bool] | None = None,
) -> Rendered:
    """One conversation; `trained[i]` says whether message i is learnt (default: assistant turns with weight != 0)."""
    if trained is None:
        trained = [m.get("role") == "assistant" and m.get("weight", 1) != 0 for m in messages]
    msgs, tool_list = template_input(tokenizer, messages, tools)
    flags = list(trained)
    if len(msgs) > len(messages):  # a system message with tool definitions was inserted
        flags.insert(0, False)
    text, spans = _chat_spans(tokenizer, msgs, flags, tool_list)
    return Rendered(text, spans)


def render_example(tokenizer: Any, example: Mapping[str, Any]) -> Rendered:
    """Any of the three OpenAI fine-tuning formats; a preference example trains its preferred output."""
    if "messages" in example:
        return render_chat(tokenizer, example["messages"], example.get("tools"))
    if "input" in example:
        prompt = list(example["input"]["messages"])
        chosen = list(example["preferred_output"])
        return render_chat(
            tokenizer, prompt + chosen, example["input"].get("tools"), [False] * len(prompt) + [True] * len(chosen)
        )
    if "prompt" in example:
        # Legacy format: raw text, no template; loss on the completion and an appended EOS (so it learns to stop).
        before, after = text_of(example["prompt"], "prompt"), text_of(example.get("completion"), "completion")
        return Rendered(before + after, [(len(before), len(before + after))], True, True)
    raise InvalidArgument(f"unknown example format with keys {sorted(example)}", code="invalid_example_format")


def _label(tokenizer: Any, rendered: Sequence[Rendered]) -> list[Tokenized]:
    """Tokenize in one call per kind (the fast tokenizer batches in Rust) and label the tokens inside the spans."""
    out: list[Tokenized | None] = [None] * len(rendered)
    for special in (False, True):
        idx = [k for k, r in enumerate(rendered) if r.add_special_tokens == special]
        if not idx:
            continue
        enc = tokenizer([rendered[k].text for k in idx], add_special_tokens=special, return_offsets_mapping=True)
        for k, ids, offsets in zip(idx, enc["input_ids"], enc["offset_mapping"], strict=True):
            r = rendered[k]
            ids = list(ids)
            labels = [IGNORE_INDEX] * len(ids)
            for t, (a, b) in enumerate(offsets):
                if b > a and any(s <= a < e for s, e in r.spans):
                    labels[t] = ids[t]
            eos = tokenizer.eos_token_id
            if r.append_eos and eos is not None and (not ids or ids[-1] != eos):
                ids, labels = [*ids, eos], [*labels, eos]
            out[k] = Tokenized(ids, labels)
    return [t for t in out if t is not None]


def encode_chat(
    tokenizer: Any,
    messages: Sequence[Mapping[str, Any]],
    tools: Sequence[Mapping[str, Any]] | None = None,
    trained: Sequence[bool] | None = None,
) -> Tokenized:
    return _label(tokenizer, [render_chat(tokenizer, messages, tools, trained)])[0]


def encode_prompt_completion(tokenizer: Any, prompt: str, completion: str) -> Tokenized:
    return encode_example(tokenizer, {"prompt": prompt, "completion": completion})


def encode_example(tokenizer: Any, example: Mapping[str, Any]) -> Tokenized:
    """Token ids and labels of one example, as every backend trains it."""
    return _label(tokenizer, [render_example(tokenizer, example)])[0]


def encode_examples(tokenizer: Any, examples: Iterable[Mapping[str, Any]], batch: int = BATCH) -> Iterator[Tokenized]:
    """`encode_example` of each, tokenizing `batch` examples per call (the same ids, several times faster)."""
    pending: list[Rendered] = []
    for ex in examples:
        pending.append(render_example(tokenizer, ex))
        if len(pending) >= batch:
            yield from _label(tokenizer, pending)
            pending = []
    if pending:
        yield from _label(tokenizer, pending)
