"""OpenAI-format examples to training tensors, shared by every backend so they all train on the same tokens.

Labels: assistant tokens only, through the end-of-turn token (so the model learns to stop), skipping assistant turns
with `weight: 0`. Assistant spans are found by rendering the conversation prefixes with the model's own chat
template and mapping character spans to tokens through the tokenizer's offsets: that works for any template that
renders a conversation as the concatenation of its turns (nearly all), without the `{% generation %}` markers most
templates (SmolLM2's included) lack; templates that re-render earlier turns fall back to locating the content.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from itertools import chain
from typing import Any

import torch

IGNORE_INDEX = -100


@dataclass(frozen=True, slots=True)
class Tokenized:
    input_ids: list[int]
    labels: list[int]  # aligned with input_ids (not shifted); IGNORE_INDEX where nothing is trained

    @property
    def n_trained(self) -> int:
        return sum(1 for t in self.labels if t != IGNORE_INDEX)


@dataclass(slots=True)
class EncodedDataset:
    examples: list[Tokenized] = field(default_factory=list)
    truncated: int = 0  # examples cut to max_seq_length
    dropped: int = 0  # examples with no trained token (all weights 0, or everything trained was cut off)

    @property
    def tokens(self) -> int:
        return sum(len(e.input_ids) for e in self.examples)

    @property
    def trained_tokens(self) -> int:
        return sum(e.n_trained for e in self.examples)


def _text(content: Any) -> str:
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict))
    return content or ""


def template_messages(
    tokenizer: Any, messages: Sequence[dict[str, Any]], tools: list[dict[str, Any]] | None = None
) -> tuple[list[dict[str, Any]], list[dict[str, Any]] | None]:
    """Messages and tools as the chat template can take them: string content, no unknown keys.

    A template that knows nothing of tools (SmolLM2's) would silently drop tool calls and tool definitions, training
    the model on empty turns; for those, calls are written into the content as `<tool_call>{json}</tool_call>` and
    definitions into the system message as `<tools>[json]</tools>` (the Hermes convention SmolLM2 was tuned on).
    Inference must format prompts the same way, so this is public.
    """
    template = getattr(tokenizer, "chat_template", None) or ""
    if not isinstance(template, str):
        template = json.dumps(template)
    knows_calls, knows_tools = "tool_calls" in template, "tools" in template.replace("tool_calls", "")
    out: list[dict[str, Any]] = []
    for m in messages:
        msg: dict[str, Any] = {"role": m["role"], "content": _text(m.get("content"))}
        if m.get("tool_calls"):
            if knows_calls:
                msg["tool_calls"] = m["tool_calls"]
            else:
                calls = "\n".join(
                    f"<tool_call>\n{json.dumps(_call_json(tc), ensure_ascii=False)}\n</tool_call>"
                    for tc in m["tool_calls"]
                )
                msg["content"] = f"{msg['content']}\n{calls}" if msg["content"] else calls
        for key in ("tool_call_id", "name"):
            if key in m:
                msg[key] = m[key]
        out.append(msg)
    if tools and not knows_tools:
        spec = f"You can call these tools:\n<tools>\n{json.dumps(tools, ensure_ascii=False)}\n</tools>"
        if out and out[0]["role"] == "system":
            out[0] = {**out[0], "content": f"{out[0]['content']}\n\n{spec}"}
        else:
            out.insert(0, {"role": "system", "content": spec})
        tools = None
    return out, tools


def _call_json(tc: dict[str, Any]) -> dict[str, Any]:
    fn = tc.get("function", tc)
    args = fn.get("arguments", {})
    if isinstance(args, str):
        try:
            args = json.loads(args)
        except ValueError:
            pass
    return {"name": fn.get("name", ""), "arguments": args}


def _render(tokenizer: Any, messages: list[dict[str, Any]], tools: Any, gen_prompt: bool = False) -> str:
    return str(tokenizer.apply_chat_template(messages, tools=tools, tokenize=False, add_generation_prompt=gen_prompt))


def _chat_spans(
    tokenizer: Any, messages: list[dict[str, Any]], trained: list[bool], tools: Any
) -> tuple[str, list[tuple[int, int]]]:
    """The rendered conversation and the character spans to train (assistant content through end-of-turn)."""
    full = _render(tokenizer, messages, tools)
    spans: list[tuple[int, int]] = []
    cursor = 0
    for i, m in enumerate(messages):
        if m["role"] != "assistant" or not trained[i]:
            continue
        span = None
        try:
            before = _render(tokenizer, messages[:i], tools, gen_prompt=True) if i else ""
            upto = _render(tokenizer, messages[: i + 1], tools)
        except Exception:  # some templates refuse a prefix (e.g. "conversation must start with a user")
            before = upto = ""
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


def _label(tokenizer: Any, text: str, spans: list[tuple[int, int]], add_special_tokens: bool) -> Tokenized:
    enc = tokenizer(text, add_special_tokens=add_special_tokens, return_offsets_mapping=True)
    ids: list[int] = list(enc["input_ids"])
    labels = [IGNORE_INDEX] * len(ids)
    for k, (a, b) in enumerate(enc["offset_mapping"]):
        if b > a and any(s <= a < e for s, e in spans):
            labels[k] = ids[k]
    return Tokenized(ids, labels)


def encode_chat(
    tokenizer: Any,
    messages: Sequence[dict[str, Any]],
    tools: list[dict[str, Any]] | None = None,
    trained: Sequence[bool] | None = None,
) -> Tokenized:
    """One conversation; `trained[i]` says whether message i is learnt (default: assistant turns with weight != 0)."""
    if trained is None:
        trained = [m["role"] == "assistant" and m.get("weight", 1) != 0 for m in messages]
    msgs, tools = template_messages(tokenizer, messages, tools)
    flags = list(trained)
    if len(msgs) > len(messages):  # a system message with tool definitions was inserted
        flags.insert(0, False)
    text, spans = _chat_spans(tokenizer, msgs, flags, tools)
    return _label(tokenizer, text, spans, add_special_tokens=False)


def encode_prompt_completion(tokenizer: Any, prompt: str, completion: str) -> Tokenized:
    """Legacy format: raw text, no template; loss on the completion and an appended EOS (so it learns to stop)."""
    text = prompt + completion
    tok = _label(tokenizer, text, [(len(prompt), len(text))], add_special_tokens=True)
    eos = tokenizer.eos_token_id
    if eos is not None and (not tok.input_ids or tok.input_ids[-1] != eos):
        return Tokenized([*tok.input_ids, eos], [*tok.labels, eos])
    return tok


def encode_example(tokenizer: Any, example: dict[str, Any]) -> Tokenized:
    """Any of the three formats; a preference example trains its preferred output (SFT on the chosen answer)."""
    if "messages" in example:
        return encode_chat(tokenizer, example["messages"], example.get("tools"))
    if "input" in example:
        prompt = list(example["input"]["messages"])
        chosen = list(example["preferred_output"])
        return encode_chat(
            tokenizer,
            prompt + chosen,
            example["input"].get("tools"),
            trained=[False] * len(prompt) + [True] * len(chosen),
        )
    if "prompt" in example:
        return encode_prompt_completion(tokenizer, _text(example["prompt"]), _text(example.get("completion")))
    raise ValueError(f"unknown example format with keys {sorted(example)}")


def encode_sft(tokenizer: Any, examples: Iterable[dict[str, Any]], max_seq_length: int) -> EncodedDataset:
    """Encode, truncate to `max_seq_length` (keeping the start) and drop examples left with nothing to train."""
    out = EncodedDataset()
    for ex in examples:
        tok = encode_example(tokenizer, ex)
        if len(tok.input_ids) > max_seq_length:
            out.truncated += 1
            tok = Tokenized(tok.input_ids[:max_seq_length], tok.labels[:max_seq_length])
        if tok.n_trained == 0:
            out.dropped += 1
            continue
        out.examples.append(tok)
    return out


def preference_rows(examples: Iterable[dict[str, Any]], tokenizer: Any | None = None) -> list[dict[str, Any]]:
    """OpenAI preference examples as TRL's conversational prompt/chosen/rejected rows (+ tools).

    With a tokenizer, messages are first made template-ready (see `template_messages`).
    """
    rows = []
    for ex in examples:
        prompt, tools = list(ex["input"]["messages"]), ex["input"].get("tools")
        chosen, rejected = list(ex["preferred_output"]), list(ex["non_preferred_output"])
        if tokenizer is not None:
            prompt, tools = template_messages(tokenizer, prompt, tools)
            chosen = template_messages(tokenizer, chosen)[0]
            rejected = template_messages(tokenizer, rejected)[0]
        row: dict[str, Any] = {"prompt": prompt, "chosen": chosen, "rejected": rejected}
        if tools:
            row["tools"] = tools
        rows.append(row)
    return rows


# ---- batching ----


def collate_padding_free(batch: Sequence[Tokenized]) -> dict[str, torch.Tensor]:
    """One row, no padding: examples end to end with `position_ids` restarting at 0 for each.

    With `attention_mask=None`, transformers detects the restarts and masks attention block-diagonally, so no token
    attends across examples (checked by a test against separate forwards). The first label of every example is
    ignored, so no example is trained to predict its successor's first token.
    """
    ids = torch.tensor(list(chain.from_iterable(e.input_ids for e in batch)), dtype=torch.long)
    labels = torch.tensor(list(chain.from_iterable(e.labels for e in batch)), dtype=torch.long)
    pos = torch.cat([torch.arange(len(e.input_ids), dtype=torch.long) for e in batch])
    labels[pos == 0] = IGNORE_INDEX
    return {"input_ids": ids[None], "labels": labels[None], "position_ids": pos[None]}


def collate_padded(
    batch: Sequence[Tokenized], pad_token_id: int, pad_to_multiple_of: int = 1
) -> dict[str, torch.Tensor]:
    """Right-padded rows with an attention mask (the classic layout, for attention kernels without packing)."""
    width = max(len(e.input_ids) for e in batch)
    width = -(-width // pad_to_multiple_of) * pad_to_multiple_of
    ids = torch.full((len(batch), width), pad_token_id, dtype=torch.long)
    labels = torch.full((len(batch), width), IGNORE_INDEX, dtype=torch.long)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    for r, e in enumerate(batch):
        n = len(e.input_ids)
        ids[r, :n] = torch.tensor(e.input_ids)
        labels[r, :n] = torch.tensor(e.labels)
        mask[r, :n] = 1
    return {"input_ids": ids, "labels": labels, "attention_mask": mask}


def shuffled_batches(
    lengths: Sequence[int], batch_size: int, seed: int, group_by_length: bool = False, mega: int = 50
) -> list[list[int]]:
    """A deterministic shuffle of example indices into batches, a function of `seed` alone (so resume can replay it).

    `group_by_length` sorts each window of `mega` batches by length before cutting it, so padded batches hold
    similar lengths (less padding), then shuffles the batch order so lengths don't trend through the epoch.
    """
    g = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(lengths), generator=g).tolist()
    if not group_by_length:
        return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    window = batch_size * mega
    batches: list[list[int]] = []
    for w in range(0, len(order), window):
        chunk = sorted(order[w : w + window], key=lambda i: -lengths[i])
        batches.extend(chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size))
    perm = torch.randperm(len(batches), generator=g).tolist()
    return [batches[i] for i in perm]
