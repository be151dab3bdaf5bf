"""Persists job events from NATS (from the service itself and from every worker) and folds them into job records.

One durable consumer, so events published while the service was down are stored when it comes back; an event id
already stored is skipped, so redeliveries are harmless.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from datetime import UTC
from typing import Any

from nats.aio.client import Client as NATS
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import BadRequestError, NotFoundError

from tunery.errors import FailedPrecondition
from tunery.runtime import events
from tunery.trainer.v1 import trainer_pb2 as pb
from tunery_trainer import queue, states
from tunery_trainer.models import now
from tunery_trainer.service import TrainerService

log = logging.getLogger("tunery.trainer.ingest")
DURABLE = "trainer-ingest"
SUBJECT = "tunery.events.job.>"


def apply(service: TrainerService, event_id: str, ev: pb.JobEvent, from_service: bool = False) -> pb.JobEvent | None:
    """Store the event and update the job (synchronous: runs in a thread).

    State changes the service made itself are already in the job row (the service answers the caller from it), so
    they are only recorded; those from workers are proposals, applied only when legal from the current state.
    """
    store = service.store
    kind = ev.WhichOneof("data")
    if kind == "state_change" and not from_service:
        new = states.from_proto(ev.state_change.to_state)
        job = store.get(ev.job_id)
        if job.state != new:
            extra: dict[str, Any] = {}
            if new == "running":
                extra = {
                    "started_at": job.started_at or now(),
                    "attempts": job.attempts + 1,
                    "worker": ev.state_change.worker,
                }
            if new == "failed":
                err = ev.state_change.error
                extra = {"error_code": err.code, "error_message": err.message, "error_param": err.param}
            if new == "succeeded":
                sc = ev.state_change
                extra = {"adapter_path": sc.adapter_path, "trained_tokens": sc.trained_tokens}
                # final metrics win over the last step's, but a backend may not report all of them
                for name in ("train_loss", "valid_loss", "valid_token_accuracy"):
                    if getattr(sc.metrics, name):
                        extra[name] = getattr(sc.metrics, name)
            try:
                store.transition(ev.job_id, new, **extra)
            except FailedPrecondition:
                log.info("ignored %s -> %s for %s (now %s)", "event", new, ev.job_id, job.state)
                return None
        elif new == "running":  # a redelivery to another worker: same state, one more attempt
            store.update(ev.job_id, attempts=job.attempts + 1, worker=ev.state_change.worker)
    elif kind == "step":
        s = ev.step
        store.update(
            ev.job_id,
            step=s.step,
            total_steps=s.total_steps,
            epoch=s.epoch,
            train_loss=s.train_loss,
            tokens_per_second=s.tokens_per_second,
            eta_seconds=s.eta_seconds,
        )
    elif kind == "validation":
        v = ev.validation
        store.update(ev.job_id, valid_loss=v.valid_loss, valid_token_accuracy=v.valid_token_accuracy)
    elif kind == "checkpoint":
        c = ev.checkpoint
        store.add_checkpoint(ev.job_id, c.step, c.epoch, c.path, c.create_time.ToDatetime(tzinfo=UTC))
    return store.append_event(event_id, ev)


class Ingest:
    def __init__(self, service: TrainerService, nc: NATS) -> None:
        self.service = service
        self.nc = nc
        self.task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        js = self.nc.jetstream()
        config = ConsumerConfig(
            durable_name=DURABLE,
            ack_policy=AckPolicy.EXPLICIT,
            deliver_policy=DeliverPolicy.ALL,
            filter_subject=SUBJECT,
            ack_wait=30,
            max_ack_pending=10_000,
        )
        try:
            await js.consumer_info(events.STREAM, DURABLE)
        except NotFoundError:
            with contextlib.suppress(BadRequestError):
                await js.add_consumer(events.STREAM, config)
        self.sub = await js.pull_subscribe(SUBJECT, durable=DURABLE, stream=events.STREAM)
        self.task = asyncio.get_running_loop().create_task(self._loop())
        advisory = f"$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.{queue.JOBS_STREAM}.{queue.CONSUMER}"
        self.advisories = await self.nc.subscribe(advisory, cb=self._max_deliveries)

    async def _max_deliveries(self, msg: Any) -> None:
        """A job whose workers died max_deliver times (killed, out of memory) ends failed instead of hanging."""
        try:
            info = json.loads(msg.data)
            js = self.nc.jetstream()
            raw = await js.get_msg(queue.JOBS_STREAM, int(info["stream_seq"]))
            task = pb.TrainTask()
            task.ParseFromString(raw.data or b"")
            n = int(info.get("deliveries", 0))
            await self.service.fail(
                task.job.id,
                "worker_lost",
                f"the workers running this job stopped {n} times without reporting back (killed or out of memory?); "
                "it was not retried again. Resume it from its latest checkpoint by creating a new job, or look at the "
                "worker logs",
                "",
            )
            await js.delete_msg(queue.JOBS_STREAM, int(info["stream_seq"]))
        except Exception:
            log.exception("could not handle a max-deliveries advisory")

    async def _loop(self) -> None:
        while True:
            try:
                msgs = await self.sub.fetch(200, timeout=0.2)
            except TimeoutError:
                continue
            except asyncio.CancelledError:
                raise
            except Exception as err:
                log.warning("event fetch failed: %s", err)
                await asyncio.sleep(0.5)
                continue
            for msg in msgs:
                await self._handle(msg)

    async def _handle(self, msg: Any) -> None:
        try:
            envelope = events.decode(msg.data)
            ev = pb.JobEvent()
            if not envelope.payload.Unpack(ev):
                await msg.ack()
                return
            source = (msg.headers or {}).get("Tunery-Source", "")
            stored = await asyncio.to_thread(apply, self.service, envelope.id, ev, source == self.service.events.source)
            if stored is not None:
                self.service.notify(ev.job_id)
            await msg.ack()
        except Exception:
            log.exception("could not apply event on %s; will retry", msg.subject)
            await msg.nak(delay=1)

    async def stop(self) -> None:
        if self.task:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
        with contextlib.suppress(Exception):
            await self.sub.unsubscribe()
        with contextlib.suppress(Exception):
            await self.advisories.unsubscribe()
