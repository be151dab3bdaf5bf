"""tunery.chatformat on the real SmolLM2 tokenizer, with its own template and with templates that know tools or refuse
roles (the cross-service token identity is tests/test_chat_format.py)."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from tunery.chatformat import (
    IGNORE_INDEX,
    encode_example,
    encode_examples,
    encode_prompt,
    normalize_messages,
    template_input,
)
from tunery.errors import InvalidArgument
from tunery.models import resolve, tokenizer_source

# A template that knows tools and tool calls natively (as Qwen's and Llama 3.1's do), in SmolLM2's ChatML tokens.
TOOLS_TEMPLATE = (
    "{%- if tools %}<|im_start|>system\nTOOLS {{ tools | tojson }}<|im_end|>\n{% endif %}"
    "{%- for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}"
    "{%- for tc in m.tool_calls or [] %}<call>{{ tc.function.name }} {{ tc.function.arguments | tojson }}</call>"
    "{%- endfor %}<|im_end|>\n{% endfor %}"
    "{%- if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
NO_SYSTEM_TEMPLATE = (
    "{%- for m in messages %}{% if m.role == 'system' %}{{ raise_exception('System role not supported') }}{% endif %}"
    "<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}"
    "{%- if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
TOOLS = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]
CALL = {"id": "c1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}
CHAT = {
    "messages": [
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": None, "tool_calls": [CALL]},
        {"role": "tool", "tool_call_id": "c1", "content": "sunny"},
        {"role": "assistant", "content": "Sunny."},
    ],
    "tools": TOOLS,
}


@pytest.fixture(scope="module")
def smollm2(tmp_path_factory: pytest.TempPathFactory) -> Any:
    from transformers import AutoTokenizer

    source = tokenizer_source(resolve("smollm2-135m-instruct"), tmp_path_factory.mktemp("models"))
    return AutoTokenizer.from_pretrained(source)


def with_template(tok: Any, template: str | None) -> Any:
    other = copy.deepcopy(tok)
    other.chat_template = template
    return other


def trained(tok: Any, example: dict[str, Any]) -> str:
    t = encode_example(tok, example)
    return str(tok.decode([i for i, lab in zip(t.input_ids, t.labels, strict=True) if lab != IGNORE_INDEX]))


def test_a_template_that_knows_tools_gets_them_natively(smollm2: Any) -> None:
    tok = with_template(smollm2, TOOLS_TEMPLATE)
    msgs, tools = template_input(tok, CHAT["messages"], CHAT["tools"])
    assert tools == TOOLS and msgs[0]["role"] == "user"  # no system message of ours: the template places the tools
    assert msgs[1]["tool_calls"][0]["function"]["arguments"] == {"city": "Paris"}  # an object, not a JSON string
    text = tok.decode(encode_example(tok, CHAT).input_ids)
    assert text.startswith('<|im_start|>system\nTOOLS [{"type": "function"')
    assert '<call>get_weather {"city": "Paris"}</call>' in text  # encoded once
    assert trained(tok, CHAT) == '<call>get_weather {"city": "Paris"}</call><|im_end|>Sunny.<|im_end|>'


def test_a_template_without_tools_gets_hermes_tool_calls(smollm2: Any) -> None:
    msgs, tools = template_input(smollm2, CHAT["messages"], CHAT["tools"])
    assert tools is None and msgs[0]["role"] == "system" and "<tools>" in msgs[0]["content"]
    assert "tool_calls" not in msgs[2] and msgs[2]["content"].startswith("<tool_call>\n{")
    assert trained(smollm2, CHAT).startswith('<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}')


def test_template_errors_name_the_model(smollm2: Any) -> None:
    msgs = [{"role": "developer", "content": "be nice"}, {"role": "user", "content": "hi"}]
    with pytest.raises(InvalidArgument) as err:
        encode_prompt(with_template(smollm2, NO_SYSTEM_TEMPLATE), msgs, model="other-tiny")
    assert err.value.code == "invalid_messages" and "other-tiny" in err.value.message
    assert "System role not supported" in err.value.message  # developer is system, for every template
    with pytest.raises(InvalidArgument) as err:
        encode_example(with_template(smollm2, None), {"messages": msgs})
    assert err.value.code == "no_chat_template"


def test_normalized_messages_keep_only_what_templates_take() -> None:
    msgs = [
        {"role": "developer", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}], "x": 1},
        {"role": "assistant", "content": "ok", "weight": 0, "tool_calls": [], "name": "bot", "refusal": None},
    ]
    assert normalize_messages(msgs) == [
        {"role": "system", "content": "ab"},
        {"role": "assistant", "content": "ok", "name": "bot"},
    ]
    with pytest.raises(InvalidArgument) as err:
        normalize_messages([{"role": "user", "content": [{"type": "input_audio"}]}])
    assert (err.value.code, err.value.field) == ("unsupported_content", "messages[0].content")


def test_batched_encoding_equals_one_at_a_time(smollm2: Any) -> None:
    examples = [
        CHAT,
        {"prompt": "Q: 2+2? A:", "completion": " 4"},
        {
            "input": {"messages": [{"role": "user", "content": "yes or no?"}]},
            "preferred_output": [{"role": "assistant", "content": "yes"}],
            "non_preferred_output": [{"role": "assistant", "content": "no"}],
        },
        {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello", "weight": 0}]},
    ]
    one = [encode_example(smollm2, e) for e in examples]
    assert list(encode_examples(smollm2, examples, batch=3)) == one
    assert trained(smollm2, examples[1]) == " 4<|im_end|>"  # the completion and an appended EOS
    assert trained(smollm2, examples[2]) == "yes<|im_end|>"
    assert one[3].n_trained == 0
