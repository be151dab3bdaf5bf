"""What is trained, what is served and what is counted are the same tokens (issue 8, item 1).

The same conversations go through (a) the trainer's tokenization (`encode_sft`, what every backend trains on), (b) the
gateway's prompt building (the chat request model, then the transformers engine's prompt), for the conversation up to
each assistant turn, and (c) the dataset service's token counts, all with the real SmolLM2 tokenizer (converted from
the packaged GGUF). Trainer and dataset ids are identical; each served prompt is a prefix of the trained ids that ends
where the assistant turn's tokens begin; trained-token counts agree.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest

from tunery.chatformat import IGNORE_INDEX
from tunery.errors import InvalidArgument
from tunery.models import resolve, tokenizer_source
from tunery_dataset import tokens
from tunery_gateway.engines.base import GenerationRequest, SamplingParams
from tunery_gateway.engines.transformers.prompt import encode_request
from tunery_gateway.openai.chat.protocol import ChatCompletionRequest
from tunery_trainer.data import encode_sft

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Current weather in a city",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
        },
    }
]
CALL = {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}
TOOL_TURNS = [
    {"role": "user", "content": "Weather in Paris?"},
    {"role": "assistant", "content": None, "tool_calls": [CALL]},
    {"role": "tool", "tool_call_id": "call_1", "content": '{"sky": "sunny", "celsius": 21}'},
    {"role": "assistant", "content": "Sunny, 21 °C."},
]

CONVERSATIONS: dict[str, dict[str, Any]] = {
    "multi-turn, weight 0, content parts": {
        "messages": [
            {"role": "system", "content": "You are a terse assistant."},
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": "Hello! How can I help?", "weight": 0},
            {"role": "user", "content": [{"type": "text", "text": "What is "}, {"type": "text", "text": "2+2?"}]},
            {"role": "assistant", "content": [{"type": "text", "text": "4"}], "weight": 1},
            {"role": "user", "content": "And 3+3?", "name": "bob"},
            {"role": "assistant", "content": "6"},
        ]
    },
    "developer role": {
        "messages": [
            {"role": "developer", "content": "Answer in French."},
            {"role": "user", "content": "Thanks!"},
            {"role": "assistant", "content": "De rien."},
        ]
    },
    "tool calls in the history": {"messages": copy.deepcopy(TOOL_TURNS)},
    "tool calls and tool definitions": {
        "messages": [{"role": "system", "content": "Use tools when they help."}, *copy.deepcopy(TOOL_TURNS)],
        "tools": TOOLS,
    },
    "tool definitions, no system message": {"messages": copy.deepcopy(TOOL_TURNS), "tools": TOOLS},
}


@pytest.fixture(scope="module")
def tok(tmp_path_factory: pytest.TempPathFactory) -> Any:
    from transformers import AutoTokenizer

    source = tokenizer_source(resolve("smollm2-135m-instruct"), tmp_path_factory.mktemp("models"))
    return AutoTokenizer.from_pretrained(source)


def trainer_encoding(tok: Any, example: dict[str, Any]) -> tuple[list[int], list[int]]:
    enc = encode_sft(tok, [example], max_seq_length=1_000_000)
    assert len(enc.examples) == 1
    return enc.examples[0].input_ids, enc.examples[0].labels


def served_prompt(tok: Any, body: dict[str, Any]) -> list[int]:
    """The gateway's path: request model, the unsupported-parameter check, engine request, engine prompt."""
    request = ChatCompletionRequest.model_validate({"model": "smollm2-135m-instruct", **body})
    assert request.unsupported() is None
    gen = GenerationRequest("chatcmpl-test", "smollm2-135m-instruct", SamplingParams(),
                            messages=request.template_messages())
    return encode_request(tok, gen, "smollm2-135m-instruct")


def text_of(content: Any) -> str:
    return content if isinstance(content, str) else "".join(p["text"] for p in content or [])


@pytest.mark.parametrize("name", list(CONVERSATIONS))
def test_trained_served_and_counted_tokens_are_the_same(tok: Any, name: str) -> None:
    example = CONVERSATIONS[name]
    ids, labels = trainer_encoding(tok, example)

    # (c) the dataset service: the same ids and labels, and counts that match them
    [counted] = list(tokens.encode(tok, [example]))
    assert (counted.input_ids, counted.labels) == (ids, labels)
    n_trained = sum(1 for x in labels if x != IGNORE_INDEX)
    assert list(tokens.count(tok, [example])) == [(len(ids), n_trained)]

    # (b) the gateway, up to each assistant turn
    messages = example["messages"]
    served_trained = 0
    for i, m in enumerate(messages):
        if m["role"] != "assistant":
            continue
        history = {"messages": messages[:i]}
        if "tools" in example:
            # Tool definitions are not served (the gateway cannot return tool calls yet): refused, never misformatted.
            refused = ChatCompletionRequest.model_validate({"model": "m", "tools": example["tools"], **history})
            assert refused.unsupported() == "tools"
            continue
        prompt = served_prompt(tok, history)
        assert ids[: len(prompt)] == prompt, f"turn {i}: the served prompt is not what was trained"
        weight = m.get("weight", 1)
        turn = labels[len(prompt) :]
        if weight == 0:
            assert turn[0] == IGNORE_INDEX
            continue
        # Trained from the first token after the prompt through the end-of-turn token, nothing in between skipped.
        end = next((k for k, x in enumerate(turn) if x == IGNORE_INDEX), len(turn))
        answer = tok.decode(turn[:end])
        assert answer.endswith("<|im_end|>")
        assert text_of(m["content"]) in answer
        if m.get("tool_calls"):
            assert answer.startswith("<tool_call>") and '"city": "Paris"' in answer
        served_trained += end
    if "tools" not in example:
        assert served_trained == n_trained  # every trained token belongs to one of the served turns


def test_roles_and_tools_are_rendered_once_for_all(tok: Any) -> None:
    ids, _ = trainer_encoding(tok, CONVERSATIONS["developer role"])
    text = tok.decode(ids)
    assert text.startswith("<|im_start|>system\nAnswer in French.<|im_end|>") and "developer" not in text
    ids, _ = trainer_encoding(tok, CONVERSATIONS["tool definitions, no system message"])
    text = tok.decode(ids)
    assert text.startswith("<|im_start|>system\nYou can call these tools:\n<tools>\n") and '"get_weather"' in text
    ids, _ = trainer_encoding(tok, CONVERSATIONS["tool calls and tool definitions"])
    assert tok.decode(ids).startswith("<|im_start|>system\nUse tools when they help.\n\nYou can call these tools:")


def test_non_text_content_is_refused_everywhere(tok: Any) -> None:
    image = {"type": "image_url", "image_url": {"url": "http://127.0.0.1/x.png"}}
    example = {"messages": [{"role": "user", "content": [image]}, {"role": "assistant", "content": "a cat"}]}
    for encode in (lambda: trainer_encoding(tok, example), lambda: list(tokens.count(tok, [example])),
                   lambda: served_prompt(tok, {"messages": example["messages"][:1]})):
        with pytest.raises(InvalidArgument) as err:
            encode()
        assert err.value.code == "unsupported_content" and err.value.field == "messages[0].content"

