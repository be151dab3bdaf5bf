"""Fine-tuned models: servable when their job's success event arrives on NATS (no restart), one base with many
adapters (LRU beyond max_adapters=2), adapters of one base sharing a batch, and adapters that do not fit refused."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from tunery.common.v1 import common_pb2
from tunery.runtime import events
from tunery.trainer.v1 import trainer_pb2 as tpb
from tunery_gateway.testing import make_adapter

HELLO = [{"role": "user", "content": "Tell me something."}]


def publish_success(gw: Any, job_id: str, adapter_path: str) -> None:
    async def go() -> None:
        nc = await events.connect(gw.nats_url, name="test-trainer")
        try:
            await events.ensure_stream(nc)
            ev = tpb.JobEvent(job_id=job_id, sequence=9, level="info", message="done",
                              state_change=tpb.StateChange(from_state=common_pb2.JOB_STATE_RUNNING,
                                                           to_state=common_pb2.JOB_STATE_SUCCEEDED,
                                                           adapter_path=adapter_path))
            await events.EventPublisher(nc, source="trainer").publish("job.event", job_id, ev,
                                                                      event_id=f"job.{job_id}.test.succeeded")
        finally:
            await nc.close()

    gw.loop.run(go())


def wait_for_model(gw: Any, model_id: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if model_id in [m["id"] for m in gw.http("GET", "/v1/models").json()["data"]]:
            return
        time.sleep(0.1)
    raise AssertionError(f"{model_id} was not served within {timeout} s")


def greedy(gw: Any, model: str) -> str:
    r = gw.client().chat.completions.create(model=model, messages=HELLO, max_tokens=8, temperature=0)
    return r.choices[0].message.content or ""


@pytest.fixture(scope="module")
def adapters(gw: Any) -> dict[str, str]:
    """Three fine-tuned models of the tiny base, made servable through job events like the trainer's."""
    root = Path(gw.settings.artifact_root)
    spec_name = str(gw.shared.tiny.resolve())
    out = {}
    for i in range(3):
        job = f"ftjob-test{i}"
        model_id = f"ft:{gw.base}:a{i}:{job}"
        make_adapter(gw.shared.tiny, root / "jobs" / job / "adapter", seed=i, base_model=spec_name,
                     fine_tuned_model=model_id, job_id=job)
        publish_success(gw, job, f"jobs/{job}/adapter")
        out[f"a{i}"] = model_id
    for model_id in out.values():
        wait_for_model(gw, model_id)
    return out


def test_job_event_makes_model_servable(gw: Any, adapters: dict[str, str]) -> None:
    models = {m["id"]: m for m in gw.client().models.list().model_dump()["data"]}
    a0 = models[adapters["a0"]]
    assert a0["parent"] == gw.base and a0["root"] == gw.base
    assert models[gw.base]["parent"] is None
    assert gw.client().models.retrieve(adapters["a0"]).id == adapters["a0"]
    # The adapter changes what the model says (its LoRA weights are not zero).
    assert greedy(gw, adapters["a0"]) != greedy(gw, gw.base)
    # Served through the openai client, streaming included.
    chunks = list(gw.client().chat.completions.create(model=adapters["a0"], messages=HELLO, max_tokens=8,
                                                      temperature=0, stream=True))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == greedy(gw, adapters["a0"])


def test_lru_eviction_keeps_answers_the_same(gw: Any, adapters: dict[str, str]) -> None:
    worker = gw.gateway.engine.workers[gw.base]
    first = {name: greedy(gw, model) for name, model in adapters.items()}  # 3 adapters, room for 2
    evictions = worker.counters["adapter_evictions"]
    assert evictions >= 1 and len(worker.loaded) == 2
    again = {name: greedy(gw, model) for name, model in adapters.items()}  # each reloaded after an eviction
    assert again == first
    assert worker.counters["adapter_evictions"] > evictions
    assert len(set(first.values())) == 3  # three different adapters, three different answers


def test_adapters_share_a_batch(gw: Any, adapters: dict[str, str]) -> None:
    """Concurrent calls for the base and two adapters run in one batch, and each still gets its own answer."""
    worker = gw.gateway.engine.workers[gw.base]
    names = [gw.base, adapters["a0"], adapters["a1"]]
    alone = {m: greedy(gw, m) for m in names}
    mixed = worker.counters["mixed_steps"]
    with ThreadPoolExecutor(6) as pool:
        together = list(pool.map(lambda m: (m, greedy(gw, m)), names * 2))
    assert all(text == alone[m] for m, text in together)
    assert worker.counters["mixed_steps"] > mixed


def test_adapter_for_another_base_is_refused(gw: Any, tmp_path: Path) -> None:
    spec_name = str(gw.shared.tiny.resolve())
    # Trained on a narrower model, but its metadata claims the tiny base: the tensor shapes give it away.
    wrong_shape = make_adapter(gw.shared.other_tiny, tmp_path / "wrong-shape", seed=5, base_model=spec_name)
    r = gw.http("POST", "/v1/models", json={"id": "ft:wrong-shape", "adapter_path": str(wrong_shape)})
    assert r.status_code == 400 and r.json()["error"]["code"] == "adapter_base_mismatch", r.text
    assert "q_proj" in r.json()["error"]["message"]
    # Metadata that names another base model.
    other = make_adapter(gw.shared.other_tiny, tmp_path / "other", seed=6, base_model="other-tiny")
    r = gw.http("POST", "/v1/models", json={"id": "ft:other", "adapter_path": str(other), "base_model": gw.base})
    assert r.status_code == 400 and r.json()["error"]["code"] == "adapter_base_mismatch", r.text
    # The same folder on its own base is fine.
    r = gw.http("POST", "/v1/models", json={"id": "ft:other", "adapter_path": str(other)})
    assert r.status_code == 201 and r.json()["parent"] == "other-tiny", r.text
    assert gw.chat(model="ft:other").status_code == 200
    # Not a folder, not an adapter.
    assert gw.http("POST", "/v1/models", json={"id": "ft:x", "adapter_path": "/nonexistent"}).status_code == 400
    r = gw.http("POST", "/v1/models", json={"id": "ft:x", "adapter_path": str(tmp_path)})
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_adapter"
    assert "ft:wrong-shape" not in [m["id"] for m in gw.http("GET", "/v1/models").json()["data"]]


def test_job_event_for_unserved_base_is_skipped(gw: Any) -> None:
    root = Path(gw.settings.artifact_root)
    job = "ftjob-elsewhere"
    make_adapter(gw.shared.tiny, root / "jobs" / job / "adapter", seed=9, base_model="some-other-base",
                 fine_tuned_model=f"ft:some-other-base::{job}", job_id=job)
    before = gw.gateway.watcher.registered
    publish_success(gw, job, f"jobs/{job}/adapter")
    publish_success(gw, "ftjob-sentinel-none", "jobs/does-not-exist/adapter")  # no metadata: logged, acked
    # The watcher handles events in stream order: once an adapter published after those two is served, both of
    # them have been handled.
    after = "ftjob-after-skipped"
    served = f"ft:{gw.base}:after-skipped:{after}"
    make_adapter(gw.shared.tiny, root / "jobs" / after / "adapter", seed=10, base_model=str(gw.shared.tiny.resolve()),
                 fine_tuned_model=served, job_id=after)
    publish_success(gw, after, f"jobs/{after}/adapter")
    wait_for_model(gw, served)
    assert gw.gateway.watcher.registered == before + 1
    assert f"ft:some-other-base::{job}" not in [m["id"] for m in gw.http("GET", "/v1/models").json()["data"]]


def test_delete_fine_tuned_model(gw: Any, tmp_path: Path) -> None:
    folder = make_adapter(gw.shared.tiny, tmp_path / "temp", seed=11, base_model=str(gw.shared.tiny.resolve()))
    assert gw.http("POST", "/v1/models", json={"id": "ft:temp", "adapter_path": str(folder)}).status_code == 201
    assert gw.client().models.delete("ft:temp").deleted
    assert gw.chat(model="ft:temp").status_code == 404
    assert gw.http("DELETE", f"/v1/models/{gw.base}").status_code == 400
