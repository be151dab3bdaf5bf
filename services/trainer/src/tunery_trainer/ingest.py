"""Persists job events from NATS (from the service itself and from every worker) and folds them into job records.

One durable consumer, so events published while the service was down are stored when it comes back; an event id
already stored is skipped, so redeliveries are harmless.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import Any

from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from tunery.errors import FailedPrecondition
from tunery.runtime import events
from tunery.runtime.consumer import PullConsumer
from tunery_trainer import queue, wire
from tunery_trainer.domain import Checkpoint, JobEvent, StateChange, StepLog, Validation, now
from tunery_trainer.service import TrainerService
from tunery_trainer.store import JobStore

log = logging.getLogger("tunery.trainer.ingest")
DURABLE = "trainer-ingest"
SUBJECT = "tunery.events.job.>"


def _state_change(store: JobStore, ev: JobEvent, sc: StateChange) -> bool:
    """Apply a worker's state change if it is legal from the job's current state; False when it was ignored."""
    new = sc.to_state
    job = store.get(ev.job_id)
    if job.state == new:
        if new == "running":  # a redelivery to another worker: same state, one more attempt
            store.update(ev.job_id, attempts=job.attempts + 1, worker=sc.worker)
        return True
    extra: dict[str, Any] = {}
    if new == "running":
        extra = {"started_at": job.started_at or now(), "attempts": job.attempts + 1, "worker": sc.worker}
    elif new == "failed" and sc.error is not None:
        extra = {"error_code": sc.error.code, "error_message": sc.error.message, "error_param": sc.error.param}
    elif new == "succeeded":
        extra = {"adapter_path": sc.adapter_path, "trained_tokens": sc.trained_tokens}
        # final metrics win over the last step's, but a backend may not report all of them
        if sc.metrics is not None:
            for name in ("train_loss", "valid_loss", "valid_token_accuracy"):
                if getattr(sc.metrics, name):
                    extra[name] = getattr(sc.metrics, name)
    try:
        store.transition(ev.job_id, new, **extra)
    except FailedPrecondition:
        log.info("ignored %s -> %s for %s (now %s)", "event", new, ev.job_id, job.state)
        return False
    return True


def apply(store: JobStore, event_id: str, ev: JobEvent, from_service: bool = False) -> JobEvent | None:
    """Store the event and update the job (synchronous: runs in a thread); None when it was stored before or ignored.

    State changes the service made itself are already in the job row (the service answers the caller from it), so
    they are only recorded; those from workers are proposals, applied only when legal from the current state.
    """
    d = ev.data
    if isinstance(d, StateChange):
        if not from_service and not _state_change(store, ev, d):
            return None
        if d.to_state == "succeeded" and store.get(ev.job_id).spec.evaluation is not None:
            store.ask_evaluation(ev.job_id)  # before the event is stored: a restart finds it due (recover)
    elif isinstance(d, StepLog):
        store.update(
            ev.job_id,
            step=d.step,
            total_steps=d.total_steps,
            epoch=d.epoch,
            train_loss=d.train_loss,
            tokens_per_second=d.tokens_per_second,
            eta_seconds=d.eta_seconds,
        )
    elif isinstance(d, Validation):
        store.update(ev.job_id, valid_loss=d.valid_loss, valid_token_accuracy=d.valid_token_accuracy)
    elif isinstance(d, Checkpoint):
        store.add_checkpoint(ev.job_id, d)
    return store.append_event(event_id, ev)


class Ingest:
    def __init__(self, service: TrainerService, nc: NATS, jobs: queue.JobQueue) -> None:
        self.service = service
        self.nc = nc
        self.jobs = jobs
        config = ConsumerConfig(
            durable_name=DURABLE,
            ack_policy=AckPolicy.EXPLICIT,
            deliver_policy=DeliverPolicy.ALL,
            filter_subject=SUBJECT,
            ack_wait=30,
            max_ack_pending=10_000,
        )
        self.consumer = PullConsumer(nc.jetstream(), events.STREAM, config, self._handle, batch=200, fetch_timeout=0.2)
        self.advisories: Any = None

    async def start(self) -> None:
        await self.consumer.start()
        advisory = f"$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.{queue.JOBS_STREAM}.{queue.CONSUMER}"
        self.advisories = await self.nc.subscribe(advisory, cb=self._max_deliveries)

    async def _max_deliveries(self, msg: Msg) -> None:
        """A job whose workers died max_deliver times (killed, out of memory) ends failed instead of hanging."""
        try:
            info = json.loads(msg.data)
            seq = int(info["stream_seq"])
            task = await self.jobs.task_at(seq)
            n = int(info.get("deliveries", 0))
            await self.service.fail(
                task.job_id,
                "worker_lost",
                f"the workers running this job stopped {n} times without reporting back (killed or out of memory?); "
                "it was not retried again. Resume it from its latest checkpoint by creating a new job, or look at the "
                "worker logs",
                "",
            )
            await self.jobs.delete(seq)
        except Exception:
            log.exception("could not handle a max-deliveries advisory")

    async def _handle(self, msg: Msg) -> None:
        event_id, ev = wire.decode_event(msg.data)
        if ev is None:
            return  # not a job event: nothing to store
        source = (msg.headers or {}).get("Tunery-Source", "")
        from_service = source == self.service.events.source
        if await asyncio.to_thread(apply, self.service.store, event_id, ev, from_service) is not None:
            self.service.notify(ev.job_id)
        if isinstance(ev.data, StateChange) and ev.data.to_state == "succeeded":
            job = await asyncio.to_thread(self.service.store.get, ev.job_id)
            if job.spec.evaluation is not None and job.state == "succeeded":
                self.service.evaluations.start(ev.job_id)

    async def stop(self) -> None:
        await self.consumer.stop()
        if self.advisories is not None:
            with contextlib.suppress(Exception):
                await self.advisories.unsubscribe()
