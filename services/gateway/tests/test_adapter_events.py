"""A succeeded job's event names the fine-tuned model, its base and the adapter's folder, so the gateway serves it
from the event alone, checks the adapter once when it registers it, and trusts that record when it loads it later."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from tunery.common.v1 import common_pb2
from tunery.runtime import events
from tunery.trainer.v1 import trainer_pb2 as tpb
from tunery_gateway.testing import make_adapter

HELLO = [{"role": "user", "content": "Say something."}]


def publish_succeeded(gw: Any, job_id: str, adapter_path: str, model_id: str, base_model: str) -> None:
    """The event a trainer worker publishes when a job succeeds (trainer.v1.StateChange with the model fields)."""

    async def go() -> None:
        nc = await events.connect(gw.nats_url, name="test-trainer")
        try:
            change = tpb.StateChange(from_state=common_pb2.JOB_STATE_RUNNING, to_state=common_pb2.JOB_STATE_SUCCEEDED,
                                     adapter_path=adapter_path, fine_tuned_model=model_id, base_model=base_model)
            ev = tpb.JobEvent(job_id=job_id, level="info", message="trained", state_change=change)
            await events.EventPublisher(nc, source="trainer").publish("job.event", job_id, ev,
                                                                      event_id=f"job.{job_id}.test.succeeded")
        finally:
            await nc.close()

    gw.loop.run(go())


def served(gw: Any) -> list[str]:
    return [m["id"] for m in gw.http("GET", "/v1/models").json()["data"]]


def wait_served(gw: Any, model_id: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while model_id not in served(gw):
        assert time.monotonic() < deadline, f"{model_id} was not served within {timeout} s"
        time.sleep(0.1)


def test_the_event_alone_makes_the_model_servable_and_loads_trust_the_check(gw: Any) -> None:
    root = Path(gw.settings.artifact_root)
    job = "ftjob-eventonly"
    model_id = f"ft:{gw.base}:event:{job}"
    folder = make_adapter(gw.shared.tiny, root / "jobs" / job / "adapter", seed=21, base_model="")
    (folder / "tunery_metadata.json").unlink()  # nothing to read: the event says what the adapter is
    publish_succeeded(gw, job, f"jobs/{job}/adapter", model_id, str(gw.shared.tiny.resolve()))
    wait_served(gw, model_id)
    record = gw.client().models.retrieve(model_id)
    assert record.model_dump()["parent"] == gw.base
    # Registered means checked: a later load does not open the folder's metadata again (a broken file now would
    # have failed the check, but the record stands).
    (folder / "tunery_metadata.json").write_text("{not json")
    loads = gw.gateway.engine.workers[gw.base].counters["adapter_loads"]
    r = gw.chat(model=model_id, messages=HELLO)
    assert r.status_code == 200, r.text
    assert gw.gateway.engine.workers[gw.base].counters["adapter_loads"] == loads + 1


def test_an_event_for_a_base_this_gateway_does_not_serve_is_skipped(gw: Any) -> None:
    root = Path(gw.settings.artifact_root)
    job = "ftjob-otherbase"
    make_adapter(gw.shared.tiny, root / "jobs" / job / "adapter", seed=22, base_model="")
    before = gw.gateway.watcher.registered
    publish_succeeded(gw, job, f"jobs/{job}/adapter", f"ft:elsewhere::{job}", "elsewhere-base")
    # A sentinel after it on the same consumer: once it is served, the event before it was handled.
    sentinel, sentinel_id = "ftjob-sentinel-served", f"ft:{gw.base}:s:ftjob-sentinel-served"
    make_adapter(gw.shared.tiny, root / "jobs" / sentinel / "adapter", seed=23, base_model="")
    publish_succeeded(gw, sentinel, f"jobs/{sentinel}/adapter", sentinel_id, str(gw.shared.tiny.resolve()))
    wait_served(gw, sentinel_id)
    assert gw.gateway.watcher.registered == before + 1
    assert f"ft:elsewhere::{job}" not in served(gw)
