"""The job work queue (JetStream, work-queue retention, one durable pull consumer shared by all workers) and the
per-job control flags and leases (a JetStream key-value bucket), so any worker anywhere sees cancel and pause."""

from __future__ import annotations

import json
from typing import Any

from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, KeyValueConfig, RetentionPolicy, StorageType, StreamConfig
from nats.js.errors import KeyNotFoundError
from nats.js.kv import KeyValue

from tunery.runtime.consumer import ensure_consumer, ensure_key_value, ensure_stream
from tunery_trainer import wire
from tunery_trainer.domain import ControlFlag, TrainTask

JOBS_STREAM = "TUNERY_JOBS"
JOBS_SUBJECT = "tunery.jobs.train"
CONSUMER = "trainer-workers"
CONTROL_BUCKET = "TUNERY_JOB_CONTROL"


def consumer_config(*, ack_wait: float, max_deliver: int) -> ConsumerConfig:
    """The workers' shared durable consumer: a job whose worker is silent for ack_wait is redelivered."""
    return ConsumerConfig(
        durable_name=CONSUMER,
        ack_policy=AckPolicy.EXPLICIT,
        ack_wait=ack_wait,
        max_deliver=max_deliver,
        max_ack_pending=1000,
    )


def encode_flag(flag: ControlFlag) -> bytes:
    return json.dumps({"action": flag.action, "generation": flag.generation}).encode()


def decode_flag(data: bytes | None) -> ControlFlag:
    if not data:
        return ControlFlag()
    obj: dict[str, Any] = json.loads(data)
    action = str(obj.get("action", "run"))
    return ControlFlag(action if action in ("cancel", "pause") else "run", int(obj.get("generation", 0)))  # type: ignore[arg-type]


class JobQueue:
    """The queue and the control bucket of one JetStream (the service's `domain.WorkQueue`); `ensure()` creates what
    is missing (idempotent)."""

    def __init__(self, js: JetStreamContext) -> None:
        self.js = js
        self._kv: KeyValue | None = None

    async def ensure(self, *, ack_wait: float, max_deliver: int) -> None:
        await ensure_stream(
            self.js,
            StreamConfig(
                name=JOBS_STREAM,
                subjects=[JOBS_SUBJECT],
                retention=RetentionPolicy.WORK_QUEUE,
                storage=StorageType.FILE,
                duplicate_window=120,
            ),
        )
        await ensure_consumer(self.js, JOBS_STREAM, consumer_config(ack_wait=ack_wait, max_deliver=max_deliver))
        self._kv = await ensure_key_value(
            self.js, KeyValueConfig(bucket=CONTROL_BUCKET, history=1, storage=StorageType.FILE)
        )

    async def _bucket(self) -> KeyValue:
        if self._kv is None:
            self._kv = await self.js.key_value(CONTROL_BUCKET)
        return self._kv

    async def enqueue(self, task: TrainTask) -> None:
        """Publish the task; the same job and generation twice is one message (Nats-Msg-Id)."""
        msg_id = f"{task.job_id}-g{task.generation}"
        await self.js.publish(JOBS_SUBJECT, wire.encode_task(task), headers={"Nats-Msg-Id": msg_id})

    async def task_at(self, stream_seq: int) -> TrainTask:
        raw = await self.js.get_msg(JOBS_STREAM, stream_seq)
        return wire.decode_task(raw.data or b"")

    async def delete(self, stream_seq: int) -> None:
        await self.js.delete_msg(JOBS_STREAM, stream_seq)

    async def set_control(self, job_id: str, flag: ControlFlag) -> None:
        await (await self._bucket()).put(job_id, encode_flag(flag))

    async def get_control(self, job_id: str) -> ControlFlag:
        try:
            entry = await (await self._bucket()).get(job_id)
        except KeyNotFoundError:
            return ControlFlag()
        return decode_flag(entry.value)

    async def take_lease(self, job_id: str, holder: str) -> None:
        """Record who trains the job now; an earlier holder that sees another name stops (it lost its delivery)."""
        await (await self._bucket()).put(f"lease.{job_id}", holder.encode())

    async def lease_holder(self, job_id: str) -> str:
        try:
            entry = await (await self._bucket()).get(f"lease.{job_id}")
        except KeyNotFoundError:
            return ""
        return (entry.value or b"").decode()
