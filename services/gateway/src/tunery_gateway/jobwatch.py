"""A job that succeeds becomes servable without a restart: the gateway follows job events on NATS.

A durable JetStream consumer on `tunery.events.job.*.event` sees every `state_change` to JOB_STATE_SUCCEEDED,
including those published while the gateway was down. The adapter folder (`adapter_path`, relative to the artifact
root) carries `tunery_metadata.json` with the fine-tuned model's name and base model; the model is checked and
stored, and the event is acked only after that (a database hiccup is retried; an adapter that can never be served is
logged and acked, so it does not come back forever). Replicas share the consumer and the database, and look names up
in the database on a miss (registry.py), so one replica's registration serves them all. The consumer is named after
the database, so two gateways with separate databases on one NATS (staging and production, tests) each see every
event instead of splitting them.

NATS being down at start is no reason not to serve: the watcher connects in the background and keeps trying.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from typing import Any

from nats.aio.client import Client as NATS
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import BadRequestError, NotFoundError

from tunery.common.v1 import common_pb2
from tunery.errors import TuneryError
from tunery.runtime import events
from tunery.runtime.artifacts import LocalArtifactStore
from tunery.trainer.v1 import trainer_pb2 as tpb
from tunery_gateway.engines.base import AdapterRef, read_metadata
from tunery_gateway.registry import ModelRegistry

log = logging.getLogger("tunery.gateway.jobwatch")
DURABLE = "gateway-models"


def durable_name(database: str) -> str:
    """One consumer per gateway database: replicas that share a database share the work, others do not."""
    from sqlalchemy.engine import make_url

    ident = make_url(database).render_as_string(hide_password=True)
    return f"{DURABLE}-{hashlib.sha1(ident.encode()).hexdigest()[:12]}"
SUBJECT = "tunery.events.job.*.event"


class JobWatcher:
    def __init__(self, url: str, registry: ModelRegistry, artifacts: LocalArtifactStore,
                 durable: str = DURABLE) -> None:
        self.url = url
        self.durable = durable
        self.registry = registry
        self.artifacts = artifacts
        self.nc: NATS | None = None
        self.task: asyncio.Task[None] | None = None
        self.registered = 0
        self.ready = asyncio.Event()

    def start(self) -> None:
        self.task = asyncio.get_running_loop().create_task(self._main(), name="job-watcher")

    async def _connect(self) -> Any:
        delay = 0.5
        while True:
            try:
                self.nc = await events.connect(self.url, name="tunery-gateway")
                await events.ensure_stream(self.nc)
                js = self.nc.jetstream()
                config = ConsumerConfig(durable_name=self.durable, ack_policy=AckPolicy.EXPLICIT,
                                        deliver_policy=DeliverPolicy.ALL, filter_subject=SUBJECT, ack_wait=60,
                                        max_ack_pending=1000)
                try:
                    await js.consumer_info(events.STREAM, self.durable)
                except NotFoundError:
                    with contextlib.suppress(BadRequestError):
                        await js.add_consumer(events.STREAM, config)
                return await js.pull_subscribe(SUBJECT, durable=self.durable, stream=events.STREAM)
            except asyncio.CancelledError:
                raise
            except Exception as err:
                log.warning("cannot follow job events on NATS (%s: %s); fine-tuned models that succeed now are "
                            "served once it is back; retrying in %.0f s", type(err).__name__, err, delay)
                if self.nc is not None:
                    with contextlib.suppress(Exception):
                        await self.nc.close()
                    self.nc = None
                await asyncio.sleep(delay)
                delay = min(30.0, delay * 2)

    async def _main(self) -> None:
        sub = await self._connect()
        self.ready.set()
        while True:
            try:
                msgs = await sub.fetch(64, timeout=1.0)
            except TimeoutError:
                continue
            except asyncio.CancelledError:
                raise
            except Exception as err:
                log.warning("job event fetch failed: %s", err)
                await asyncio.sleep(1.0)
                continue
            for msg in msgs:
                await self._handle(msg)

    async def _handle(self, msg: Any) -> None:
        try:
            envelope: common_pb2.Event = events.decode(msg.data)
            ev = tpb.JobEvent()
            if envelope.payload.Unpack(ev) and ev.WhichOneof("data") == "state_change":
                sc = ev.state_change
                if sc.to_state == common_pb2.JOB_STATE_SUCCEEDED and sc.adapter_path:
                    await self._succeeded(ev.job_id, sc.adapter_path)
            await msg.ack()
        except TuneryError as err:  # the adapter can never be served as it is: say why, do not retry forever
            log.error("job event on %s: %s", msg.subject, err.message)
            await msg.ack()
        except Exception:
            log.exception("could not handle the job event on %s; will retry", msg.subject)
            await msg.nak(delay=2)

    async def _succeeded(self, job_id: str, adapter_path: str) -> None:
        path = self.artifacts.path(adapter_path)
        meta = read_metadata(AdapterRef(job_id, path))
        model_id = str(meta.get("fine_tuned_model") or "")
        if not model_id:
            log.error("job %s succeeded, but %s/tunery_metadata.json names no fine_tuned_model; not served",
                      job_id, path)
            return
        base = str(meta.get("base_model", ""))
        if base and self.registry.base_for(base) is None:
            log.warning("job %s produced %s on base model %s, which this gateway does not serve (it serves %s)",
                        job_id, model_id, base, ", ".join(self.registry.bases))
            return
        await self.registry.register(model_id, path, job_id=job_id, source="job_event")
        self.registered += 1

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self.task
        if self.nc is not None and not self.nc.is_closed:  # nothing to drain: every message is acked when handled
            with contextlib.suppress(Exception):
                await self.nc.close()
