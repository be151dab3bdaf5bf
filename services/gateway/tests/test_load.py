"""Concurrency: 64 calls at once are all answered (or shed with 429/503, never hung), clients that leave stop their
generation and are logged as such, and a failing generation fails only its own calls."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from typing import Any

import httpx
import pytest

Result = tuple[int, str, dict[str, str]]


async def fire(url: str, key: str, model: str, n: int, *, max_tokens: int = 12) -> list[Result]:
    limits = httpx.Limits(max_connections=n + 8, max_keepalive_connections=n + 8)
    async with httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=120,
                                 limits=limits) as client:

        async def one(i: int) -> Result:
            body = {"model": model, "messages": [{"role": "user", "content": f"request {i} " + "word " * (i % 7)}],
                    "max_tokens": max_tokens, "temperature": 0.8, "seed": i, "stream": i % 2 == 0}
            r = await client.post("/v1/chat/completions", json=body)
            return r.status_code, r.text, dict(r.headers)

        return await asyncio.gather(*(one(i) for i in range(n)))


def test_64_concurrent_calls_all_answered(gw: Any) -> None:
    worker = gw.gateway.engine.workers[gw.base]
    steps, rows = worker.counters["steps"], worker.counters["rows_stepped"]
    t = time.monotonic()
    results = asyncio.run(fire(gw.url, gw.admin_key, gw.base, 64))
    elapsed = time.monotonic() - t
    codes = Counter(code for code, _, _ in results)
    assert codes == {200: 64}, codes
    streamed = [text for code, text, _ in results if "data: [DONE]" in text]
    assert len(streamed) == 32
    mean_batch = (worker.counters["rows_stepped"] - rows) / max(1, worker.counters["steps"] - steps)
    assert mean_batch > 4, f"calls were not batched: {mean_batch:.1f} sequences per step"
    assert elapsed < 90
    assert gw.http("GET", "/health").status_code == 200


def test_overload_is_shed_with_503(gw: Any, extra_gateway: Any) -> None:
    server, _ = extra_gateway("gw-small", base_models=str(gw.shared.tiny), max_queue=4, max_batch_size=2,
                              listen_job_events=False)
    results = asyncio.run(fire(server.url, gw.admin_key, gw.base, 64, max_tokens=24))
    codes = Counter(code for code, _, _ in results)
    assert set(codes) <= {200, 503} and codes[503] > 0 and codes[200] > 0, codes
    for code, text, headers in results:
        if code == 503:
            assert '"code":"overloaded"' in text and int(headers["retry-after"]) >= 1
    assert httpx.get(f"{server.url}/health").status_code == 200
    stats = server.app.state.gateway.engine.stats()[gw.base]
    assert stats["running"] == 0 and stats["queued"] == 0


def _wait_idle(gw: Any) -> None:
    """Until the engine has nothing running or queued. Whether generation stopped *early* is judged by the tokens
    it generated (the assertions), not by how fast this returns: a bound on time would fail on a busy machine."""
    worker = gw.gateway.engine.workers[gw.base]
    deadline = time.monotonic() + 120  # far longer than generating all 2000 tokens takes
    while worker.stats()["running"] or worker.stats()["queued"]:
        assert time.monotonic() < deadline, f"generation still running: {worker.stats()}"
        time.sleep(0.02)


def _log(gw: Any, request_id: str) -> dict[str, Any]:
    """The call's request log; it is written when the gateway notices the client left, so poll for it."""
    deadline = time.monotonic() + 60
    while (r := gw.http("GET", f"/v1/logs/{request_id}")).status_code != 200:
        assert r.status_code == 404 and time.monotonic() < deadline, f"no request log {request_id}: {r.text}"
        time.sleep(0.05)
    return r.json()  # type: ignore[no-any-return]


def test_stream_disconnect_stops_generation(gw: Any) -> None:
    worker = gw.gateway.engine.workers[gw.base]
    _wait_idle(gw)
    stepped = worker.counters["rows_stepped"]  # one per token of each running call; only this call runs now
    body = {"model": gw.base, "messages": [{"role": "user", "content": "go on forever"}], "max_tokens": 2000,
            "stream": True, "temperature": 1.0, "seed": 1}
    with httpx.stream("POST", f"{gw.url}/v1/chat/completions", json=body, timeout=60,
                      headers={"Authorization": f"Bearer {gw.admin_key}"}) as r:
        request_id = r.headers["x-request-id"]
        for i, _ in enumerate(r.iter_lines()):
            if i >= 6:
                break
        assert worker.stats()["running"] == 1
    _wait_idle(gw)
    # All 2000 tokens would be one prefill and 1999 decode steps: the client left long before that.
    generated = worker.counters["rows_stepped"] - stepped
    assert generated < 1999, f"all {generated + 1} tokens were generated for a client that had left"
    log = _log(gw, request_id)
    assert log["status"] == "cancelled" and log["http_status"] == 499
    assert log["error"]["code"] == "client_disconnected"
    assert log["completion"] and log["completion"][0]  # what was sent before the client left


def test_non_stream_disconnect_stops_generation(gw: Any) -> None:
    body = {"model": gw.base, "messages": [{"role": "user", "content": "go on forever"}], "max_tokens": 2000,
            "temperature": 1.0, "seed": 2, "metadata": {"case": "non-stream-disconnect"}}
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(f"{gw.url}/v1/chat/completions", json=body, timeout=httpx.Timeout(60, read=0.5),
                   headers={"Authorization": f"Bearer {gw.admin_key}"})
    _wait_idle(gw)
    logs = gw.http("GET", "/v1/logs", params={"metadata.case": "non-stream-disconnect"}).json()["data"]
    assert logs and logs[0]["status"] == "cancelled"
    assert logs[0]["usage"]["completion_tokens"] < 2000


def test_failed_generation_fails_only_its_calls(gw: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    worker = gw.gateway.engine.workers[gw.base]
    real = worker._forward
    calls = {"n": 0}

    def broken(*args: Any, **kwargs: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("simulated out of memory")
        return real(*args, **kwargs)

    monkeypatch.setattr(worker, "_forward", broken)
    r = gw.chat()
    assert r.status_code == 500 and r.json()["error"]["code"] == "generation_failed"
    assert "simulated" not in r.text  # internals stay in the log
    assert gw.chat().status_code == 200
