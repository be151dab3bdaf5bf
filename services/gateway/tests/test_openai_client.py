"""The official openai client, unchanged, against the running gateway: chat, streaming, completions, models."""

from __future__ import annotations

from typing import Any

import openai
import pytest

HELLO = [{"role": "user", "content": "Say hello."}]


def test_models_list_and_retrieve(gw: Any) -> None:
    client = gw.client()
    ids = [m.id for m in client.models.list()]
    assert gw.base in ids
    model = client.models.retrieve(gw.base)
    assert model.id == gw.base and model.object == "model"
    with pytest.raises(openai.NotFoundError) as err:
        client.models.retrieve("no-such-model")
    assert err.value.body["code"] == "model_not_found"  # type: ignore[index]


def test_chat_completion(gw: Any) -> None:
    r = gw.client().chat.completions.create(model=gw.base, messages=HELLO, max_tokens=6, temperature=0)
    assert r.object == "chat.completion" and r.id.startswith("chatcmpl-")
    assert r.model == gw.base
    choice = r.choices[0]
    assert choice.message.role == "assistant" and isinstance(choice.message.content, str)
    assert choice.finish_reason in ("stop", "length")
    assert r.usage is not None and r.usage.prompt_tokens > 5
    assert 1 <= r.usage.completion_tokens <= 6
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens
    # Greedy decoding is deterministic: same input, same output.
    again = gw.client().chat.completions.create(model=gw.base, messages=HELLO, max_tokens=6, temperature=0)
    assert again.choices[0].message.content == choice.message.content


def test_chat_stream_with_usage(gw: Any) -> None:
    client = gw.client()
    full = client.chat.completions.create(model=gw.base, messages=HELLO, max_completion_tokens=8, temperature=0)
    chunks = list(client.chat.completions.create(model=gw.base, messages=HELLO, max_completion_tokens=8,
                                                 temperature=0, stream=True, stream_options={"include_usage": True}))
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == full.choices[0].message.content
    finals = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finals == [full.choices[0].finish_reason]
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == full.usage.completion_tokens  # type: ignore[union-attr]
    assert all(c.usage is None for c in chunks[:-1])
    assert len({c.id for c in chunks}) == 1


def test_stream_ends_with_done(gw: Any) -> None:
    """The raw wire format: server-sent events, the last one `data: [DONE]`."""
    r = gw.http("POST", "/v1/chat/completions", json={"model": gw.base, "messages": HELLO, "max_tokens": 3,
                                                      "stream": True})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    events = [line for line in r.text.split("\n\n") if line]
    assert events[-1] == "data: [DONE]"
    assert all(e.startswith("data: ") for e in events)


def test_completions(gw: Any) -> None:
    client = gw.client()
    r = client.completions.create(model=gw.base, prompt="Once upon a time", max_tokens=5, temperature=0)
    assert r.object == "text_completion" and r.choices[0].finish_reason in ("stop", "length")
    assert r.usage is not None and r.usage.completion_tokens <= 5
    streamed = "".join(c.choices[0].text for c in client.completions.create(
        model=gw.base, prompt="Once upon a time", max_tokens=5, temperature=0, stream=True) if c.choices)
    assert streamed == r.choices[0].text


def test_n_and_seed(gw: Any) -> None:
    client = gw.client()
    kw: dict[str, Any] = dict(model=gw.base, messages=HELLO, max_tokens=8, temperature=1.0, n=3, seed=1234)
    a = client.chat.completions.create(**kw)
    b = client.chat.completions.create(**kw)
    assert [c.index for c in a.choices] == [0, 1, 2]
    assert [c.message.content for c in a.choices] == [c.message.content for c in b.choices]
    assert len({c.message.content for c in a.choices}) > 1  # each choice has its own random stream
    assert a.usage is not None and 3 <= a.usage.completion_tokens <= 24  # summed over the choices
    streamed = list(client.chat.completions.create(**kw, stream=True))
    texts = ["", "", ""]
    for c in streamed:
        for ch in c.choices:
            texts[ch.index] += ch.delta.content or ""
    assert texts == [c.message.content for c in a.choices]


def test_stop_sequence(gw: Any) -> None:
    client = gw.client()
    kw: dict[str, Any] = dict(model=gw.base, messages=HELLO, max_tokens=16, temperature=1.0, seed=7)
    text = client.chat.completions.create(**kw).choices[0].message.content or ""
    words = [w for w in text.split() if len(w) > 2]
    assert words, f"the tiny model sampled no word: {text!r}"
    stop = words[min(1, len(words) - 1)]
    r = client.chat.completions.create(**kw, stop=[stop])
    assert r.choices[0].finish_reason == "stop"
    assert r.choices[0].message.content == text[:text.index(stop)]
    streamed = "".join(c.choices[0].delta.content or "" for c in client.chat.completions.create(
        **kw, stop=[stop], stream=True) if c.choices)
    assert streamed == r.choices[0].message.content  # not one character of the stop sequence leaked


def test_developer_role_and_content_parts(gw: Any) -> None:
    r = gw.client().chat.completions.create(
        model=gw.base, max_tokens=3,
        messages=[{"role": "developer", "content": "Be brief."},
                  {"role": "user", "content": [{"type": "text", "text": "Hi "}, {"type": "text", "text": "there"}]}])
    assert r.choices[0].message.content is not None


def test_x_request_id_matches_log(gw: Any) -> None:
    raw = gw.client().chat.completions.with_raw_response.create(model=gw.base, messages=HELLO, max_tokens=2)
    assert raw.headers["x-request-id"] == raw.parse().id
