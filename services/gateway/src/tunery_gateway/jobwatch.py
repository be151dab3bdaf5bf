"""A job that succeeds becomes servable without a restart: the gateway follows job events on NATS.

A durable JetStream consumer (tunery.runtime.consumer) on `tunery.events.job.*.event` sees every `state_change` to
JOB_STATE_SUCCEEDED, including those published while the gateway was down. The event names the fine-tuned model, its
base model and the adapter folder (`adapter_path`, relative to the artifact root); the registry checks the adapter
once and stores it, and the event is acked only after that (a database hiccup is retried; an adapter that can never
be served is logged and acked, so it does not come back forever). Replicas share the consumer and the database, and
look names up in the database on a miss (registry.py), so one replica's registration serves them all. The consumer
is named after the database, so two gateways with separate databases on one NATS (staging and production, tests)
each see every event instead of splitting them.

NATS being down at start is no reason not to serve: the watcher connects in the background and keeps trying.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging

from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from tunery.common.v1 import common_pb2
from tunery.errors import TuneryError
from tunery.runtime import events
from tunery.runtime.artifacts import LocalArtifactStore
from tunery.runtime.consumer import PullConsumer
from tunery.trainer.v1 import trainer_pb2 as tpb
from tunery_gateway.registry import ModelRegistry

log = logging.getLogger("tunery.gateway.jobwatch")
DURABLE = "gateway-models"
SUBJECT = "tunery.events.job.*.event"


def durable_name(database: str) -> str:
    """One consumer per gateway database: replicas that share a database share the work, others do not."""
    from sqlalchemy.engine import make_url

    ident = make_url(database).render_as_string(hide_password=True)
    return f"{DURABLE}-{hashlib.sha1(ident.encode()).hexdigest()[:12]}"


class JobWatcher:
    def __init__(self, url: str, registry: ModelRegistry, artifacts: LocalArtifactStore,
                 durable: str = DURABLE) -> None:
        self.url = url
        self.durable = durable
        self.registry = registry
        self.artifacts = artifacts
        self.nc: NATS | None = None
        self.consumer: PullConsumer | None = None
        self.task: asyncio.Task[None] | None = None
        self.registered = 0
        self.ready = asyncio.Event()

    def start(self) -> None:
        self.task = asyncio.get_running_loop().create_task(self._main(), name="job-watcher")

    async def _connect(self) -> PullConsumer:
        delay = 0.5
        while True:
            try:
                self.nc = await events.connect(self.url, name="tunery-gateway")
                await events.ensure_stream(self.nc)
                config = ConsumerConfig(durable_name=self.durable, ack_policy=AckPolicy.EXPLICIT,
                                        deliver_policy=DeliverPolicy.ALL, filter_subject=SUBJECT, ack_wait=60,
                                        max_ack_pending=1000)
                consumer = PullConsumer(self.nc.jetstream(), events.STREAM, config, self._handle, batch=64,
                                        fetch_timeout=1.0, nak_delay=2.0, heartbeat=15.0)
                await consumer.subscribe()
                return consumer
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
        self.consumer = await self._connect()
        self.ready.set()
        await self.consumer.run()

    async def _handle(self, msg: Msg) -> None:
        """Register the model of a succeeded job; other events are acked as they are."""
        ev = tpb.JobEvent()
        if not events.decode(msg.data).payload.Unpack(ev) or ev.WhichOneof("data") != "state_change":
            return
        sc = ev.state_change
        if sc.to_state != common_pb2.JOB_STATE_SUCCEEDED or not sc.adapter_path:
            return
        try:
            await self._succeeded(ev.job_id, sc)
        except TuneryError as err:  # the adapter can never be served as it is: say why, do not retry forever
            log.error("job event on %s: %s", msg.subject, err.message)

    async def _succeeded(self, job_id: str, sc: tpb.StateChange) -> None:
        """The event names the model and its base; trainers from before those fields leave them to the adapter's
        metadata, which the registry reads while checking the adapter (the one time it is opened)."""
        if sc.base_model and self.registry.base_for(sc.base_model) is None:
            log.warning("job %s produced %s on base model %s, which this gateway does not serve (it serves %s)",
                        job_id, sc.fine_tuned_model, sc.base_model, ", ".join(self.registry.bases))
            return
        await self.registry.register(sc.fine_tuned_model, self.artifacts.path(sc.adapter_path),
                                     base_model=sc.base_model, job_id=job_id, source="job_event")
        self.registered += 1

    async def stop(self) -> None:
        if self.consumer is not None:
            self.consumer.request_stop()
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self.task
        if self.consumer is not None:
            await self.consumer.unsubscribe()
        if self.nc is not None and not self.nc.is_closed:  # nothing to drain: every message is acked when handled
            with contextlib.suppress(Exception):
                await self.nc.close()
