"""The `tgi` engine against a stand-in that speaks text-generation-inference's HTTP API: adapter ids from `model`,
streaming, usage, n > 1, TGI's validation errors, and a client that leaves stopping the upstream stream."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from tunery_gateway.testing import ServerThread, fake_tgi_app

BASE = "smollm2-135m-instruct"


@pytest.fixture(scope="module")
def tgi(gw: Any, extra_gateway: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, Any, str]]:
    fake = ServerThread(fake_tgi_app(max_total_tokens=256)).start()
    server, _ = extra_gateway("gw-tgi", engine="tgi", tgi_url=fake.url, base_models=BASE, listen_job_events=False)
    # TGI loads adapters itself; the gateway checks the folder and its metadata and forwards the id.
    folder = tmp_path_factory.mktemp("tgi-adapter")
    (folder / "adapter_config.json").write_text("{}")
    (folder / "adapter_model.safetensors").write_bytes(b"")
    (folder / "tunery_metadata.json").write_text(json.dumps({"base_model": BASE, "job_id": "ftjob-tgi1"}))
    model = f"ft:{BASE}:support:ftjob-tgi1"
    r = httpx.post(f"{server.url}/v1/models", headers={"Authorization": f"Bearer {gw.admin_key}"},
                   json={"id": model, "adapter_path": str(folder)})
    assert r.status_code == 201, r.text
    yield server, fake, model
    server.stop()
    fake.stop()


def client(gw: Any, server: Any) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key=gw.admin_key, max_retries=0, timeout=30)


def test_base_and_adapter(gw: Any, tgi: tuple[Any, Any, str]) -> None:
    server, fake, model = tgi
    c = client(gw, server)
    assert {m.id for m in c.models.list()} == {BASE, model}
    r = c.chat.completions.create(model=BASE, messages=[{"role": "user", "content": "hi there"}], max_tokens=3)
    assert r.choices[0].message.content == "[tgi] w1 w2" and r.choices[0].finish_reason == "length"
    assert r.usage is not None and r.usage.completion_tokens == 3 and r.usage.prompt_tokens == 5
    r = c.chat.completions.create(model=model, messages=[{"role": "user", "content": "hi"}], max_tokens=2,
                                  temperature=0)
    assert r.choices[0].message.content == "[ftjob-tgi1] w1"  # TGI knows the adapter by its job id
    sent = fake.app.state.calls[-1]
    assert sent["model"] == "ftjob-tgi1" and sent["stream"] is True and sent["temperature"] == 0


def test_streaming_completions_and_n(gw: Any, tgi: tuple[Any, Any, str]) -> None:
    server, fake, model = tgi
    c = client(gw, server)
    chunks = list(c.chat.completions.create(model=model, messages=[{"role": "user", "content": "x"}], max_tokens=4,
                                            stream=True, stream_options={"include_usage": True}))
    assert "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices) == "[ftjob-tgi1] w1 w2 w3"
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 4
    r = c.completions.create(model=BASE, prompt="once upon", max_tokens=2)
    assert r.choices[0].text == "[tgi] w1" and fake.app.state.calls[-1]["prompt"] == "once upon"
    fake.app.state.calls.clear()
    r2 = c.chat.completions.create(model=BASE, messages=[{"role": "user", "content": "x"}], max_tokens=2, n=2, seed=5,
                                   temperature=0.8)
    assert len(r2.choices) == 2 and sorted(call["seed"] for call in fake.app.state.calls) == [5, 6]
    r3 = c.chat.completions.create(model=BASE, messages=[{"role": "user", "content": "x"}], max_tokens=9,
                                   stop=["w3"])
    assert r3.choices[0].message.content == "[tgi] w1 w2" and r3.choices[0].finish_reason == "stop"


def test_tgi_errors(gw: Any, tgi: tuple[Any, Any, str]) -> None:
    server, _, _ = tgi
    headers = {"Authorization": f"Bearer {gw.admin_key}"}
    r = httpx.post(f"{server.url}/v1/chat/completions", headers=headers,
                   json={"model": BASE, "messages": [{"role": "user", "content": "x"}], "max_tokens": 1000})
    assert r.status_code == 400 and "max_new_tokens" in r.json()["error"]["message"]
    r = httpx.post(f"{server.url}/v1/chat/completions", headers=headers,
                   json={"model": "ft:unknown", "messages": [{"role": "user", "content": "x"}]})
    assert r.status_code == 404
    mismatch = Path(server.app.state.gateway.settings.data_dir) / "mismatch"
    mismatch.mkdir()
    (mismatch / "adapter_config.json").write_text("{}")
    (mismatch / "adapter_model.safetensors").write_bytes(b"")
    (mismatch / "tunery_metadata.json").write_text(json.dumps({"base_model": "another-base"}))
    r = httpx.post(f"{server.url}/v1/models", headers=headers,
                   json={"id": "ft:mismatch", "adapter_path": str(mismatch), "base_model": BASE})
    assert r.status_code == 400 and r.json()["error"]["code"] == "adapter_base_mismatch"


def test_client_disconnect_stops_upstream(gw: Any, tgi: tuple[Any, Any, str]) -> None:
    server, fake, _ = tgi
    fake.app.state.token_delay = 0.05
    before = fake.app.state.cancelled
    try:
        with httpx.stream("POST", f"{server.url}/v1/chat/completions",
                          headers={"Authorization": f"Bearer {gw.admin_key}"}, timeout=30,
                          json={"model": BASE, "messages": [{"role": "user", "content": "x"}], "max_tokens": 200,
                                "stream": True}) as r:
            for i, _ in enumerate(r.iter_lines()):
                if i > 3:
                    break
        deadline = time.monotonic() + 60  # a poll: generating all 200 tokens takes 10 s and never counts as cancelled
        while fake.app.state.cancelled == before and time.monotonic() < deadline:
            time.sleep(0.05)
        assert fake.app.state.cancelled == before + 1
    finally:
        fake.app.state.token_delay = 0.0


def test_score_is_refused_by_an_engine_that_cannot_score(gw: Any, tgi: tuple[Any, Any, str]) -> None:
    server, _, model = tgi
    r = httpx.post(f"{server.url}/v1/score", headers={"Authorization": f"Bearer {gw.admin_key}"},
                   json={"model": model, "messages": [{"role": "user", "content": "hi"}], "reference": "hello"})
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert error["code"] == "scoring_unsupported" and "tgi" in error["message"]
    r = httpx.post(f"{server.url}/v1/score", headers={"Authorization": f"Bearer {gw.admin_key}"},
                   json={"model": "nope", "messages": [{"role": "user", "content": "hi"}], "reference": "hello"})
    assert r.status_code == 404
