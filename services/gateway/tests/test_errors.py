"""Bad input over raw HTTP: each gets OpenAI's error shape with the right status, and nothing is lost (the gateway
keeps answering, no request log is half-written)."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from tunery_gateway.keys import KeyStore


def assert_error(r: httpx.Response, status: int, code: str | None = None, param: str | None = None) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json")
    err = r.json()["error"]
    assert set(err) == {"message", "type", "param", "code"}
    assert err["message"]
    if code is not None:
        assert err["code"] == code, err
    if param is not None:
        assert err["param"] == param, err
    return err  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def keys(gw: Any) -> dict[str, str]:
    store = KeyStore(gw.gateway.db_engine)
    _, fine_tune = store.create("errors-fine-tune", "fine-tune")
    _, revoked = store.create("errors-revoked", "inference")
    store.revoke("errors-revoked")
    return {"fine_tune": fine_tune, "revoked": revoked}


def test_no_key(gw: Any) -> None:
    err = assert_error(gw.chat(key=None), 401, "missing_api_key")
    assert err["type"] == "authentication_error"


def test_wrong_key(gw: Any) -> None:
    assert_error(gw.chat(key="tny-000000000000-not-the-right-secret-at-all-nope"), 401, "invalid_api_key")
    assert_error(gw.chat(key="sk-something-else"), 401, "invalid_api_key")
    r = gw.http("POST", "/v1/chat/completions", key=None, headers={"Authorization": "Basic abc"}, json={})
    assert_error(r, 401, "invalid_api_key")


def test_revoked_key(gw: Any, keys: dict[str, str]) -> None:
    assert_error(gw.chat(key=keys["revoked"]), 401, "revoked_api_key")


def test_key_without_scope(gw: Any, keys: dict[str, str]) -> None:
    err = assert_error(gw.chat(key=keys["fine_tune"]), 403, "insufficient_scope")
    assert err["type"] == "permission_error"
    assert_error(gw.http("GET", "/v1/logs", key=keys["fine_tune"]), 403, "insufficient_scope")


def test_unknown_model(gw: Any) -> None:
    err = assert_error(gw.chat(model="ft:nothing:here:ftjob-0"), 404, "model_not_found", "model")
    assert err["type"] == "invalid_request_error"
    assert_error(gw.http("GET", "/v1/models/nope"), 404, "model_not_found")


def test_max_tokens_beyond_context(gw: Any) -> None:
    err = assert_error(gw.chat(max_tokens=100_000), 400, "context_length_exceeded", "max_tokens")
    assert "2048" in err["message"]
    assert_error(gw.chat(max_tokens=None, max_completion_tokens=100_000), 400, "context_length_exceeded")
    long_prompt = [{"role": "user", "content": "word " * 3000}]
    assert_error(gw.chat(messages=long_prompt, max_tokens=None), 400, "context_length_exceeded", "messages")


def test_empty_messages(gw: Any) -> None:
    err = assert_error(gw.chat(messages=[]), 400, "invalid_value", "messages")
    assert "at least one message" in err["message"]


def test_role_the_template_cannot_render(gw: Any) -> None:
    err = assert_error(gw.chat(messages=[{"role": "wizard", "content": "hi"}]), 400, "invalid_value",
                       "messages[0].role")
    assert "wizard" in err["message"]
    # A role OpenAI knows, but this model's chat template refuses (raise_exception in the template).
    err = assert_error(gw.chat(model="other-tiny", messages=[{"role": "system", "content": "be nice"},
                                                             {"role": "user", "content": "hi"}]),
                       400, "invalid_messages", "messages")
    assert "System role not supported" in err["message"]


def test_bad_sampling_parameters(gw: Any) -> None:
    assert_error(gw.chat(temperature=-0.5), 400, "invalid_value", "temperature")
    assert_error(gw.chat(n=9), 400, "invalid_value", "n")
    assert_error(gw.chat(top_p=0), 400, "invalid_value", "top_p")
    assert_error(gw.chat(max_tokens=0), 400, "invalid_value", "max_tokens")
    assert_error(gw.chat(stop=["a", "b", "c", "d", "e"]), 400, "invalid_value", "stop")
    assert_error(gw.chat(logprobs=True), 400, "unsupported_parameter", "logprobs")
    assert_error(gw.chat(messages=[{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]),
                 400, "unsupported_content")


def test_body_too_large(gw: Any) -> None:
    big = json.dumps({"model": gw.base, "messages": [{"role": "user", "content": "x" * (20 * 1024 * 1024)}]})
    r = gw.http("POST", "/v1/chat/completions", content=big.encode(), headers={"Content-Type": "application/json"})
    assert_error(r, 413, "request_too_large")

    def chunks() -> Any:  # no Content-Length: counted while it arrives
        for _ in range(20):
            yield b"x" * (1024 * 1024)

    r = gw.http("POST", "/v1/chat/completions", content=chunks(), headers={"Content-Type": "application/json"})
    assert_error(r, 413, "request_too_large")


def test_malformed_json(gw: Any) -> None:
    r = gw.http("POST", "/v1/chat/completions", content=b'{"model": "x", "messages": [', headers={
        "Content-Type": "application/json"})
    assert_error(r, 400, "invalid_json")
    assert_error(gw.http("POST", "/v1/chat/completions", content=b"[1, 2]"), 400, "invalid_json")


@pytest.mark.parametrize("name", ["../../etc/passwd", "ft:x/../../secret", "tiny\x00llama", "/abs/path"])
def test_model_name_with_path_or_nul(gw: Any, name: str) -> None:
    assert_error(gw.chat(model=name), 400, "invalid_model", "model")


def test_unknown_route_and_method(gw: Any) -> None:
    assert_error(gw.http("GET", "/v1/nothing"), 404, "unknown_route")
    r = gw.http("DELETE", "/v1/chat/completions")
    assert r.status_code == 405 and "error" in r.json()


def test_still_serving_after_bad_input(gw: Any) -> None:
    r = gw.chat()
    assert r.status_code == 200, r.text
    assert r.json()["choices"][0]["message"]["role"] == "assistant"
