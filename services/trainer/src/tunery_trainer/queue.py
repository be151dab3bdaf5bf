"""The job work queue (JetStream, work-queue retention, one durable pull consumer shared by all workers) and the
per-job control flags (a JetStream key-value bucket), so any worker anywhere sees cancel and pause."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, KeyValueConfig, RetentionPolicy, StorageType, StreamConfig
from nats.js.errors import BadRequestError, BucketNotFoundError, KeyNotFoundError, NotFoundError

from tunery.trainer.v1 import trainer_pb2 as pb

JOBS_STREAM = "TUNERY_JOBS"
JOBS_SUBJECT = "tunery.jobs.train"
CONSUMER = "trainer-workers"
CONTROL_BUCKET = "TUNERY_JOB_CONTROL"


async def ensure_queue(js: JetStreamContext, *, ack_wait: float, max_deliver: int) -> None:
    try:
        await js.stream_info(JOBS_STREAM)
    except NotFoundError:
        try:
            await js.add_stream(
                StreamConfig(
                    name=JOBS_STREAM,
                    subjects=[JOBS_SUBJECT],
                    retention=RetentionPolicy.WORK_QUEUE,
                    storage=StorageType.FILE,
                    duplicate_window=120,
                )
            )
        except BadRequestError:
            await js.stream_info(JOBS_STREAM)
    config = ConsumerConfig(
        durable_name=CONSUMER,
        ack_policy=AckPolicy.EXPLICIT,
        ack_wait=ack_wait,
        max_deliver=max_deliver,
        max_ack_pending=1000,
    )
    try:
        await js.consumer_info(JOBS_STREAM, CONSUMER)
    except NotFoundError:
        try:
            await js.add_consumer(JOBS_STREAM, config)
        except BadRequestError:
            await js.consumer_info(JOBS_STREAM, CONSUMER)
    try:
        await js.key_value(CONTROL_BUCKET)
    except BucketNotFoundError:
        try:
            await js.create_key_value(KeyValueConfig(bucket=CONTROL_BUCKET, history=1, storage=StorageType.FILE))
        except BadRequestError:
            await js.key_value(CONTROL_BUCKET)


async def enqueue(js: JetStreamContext, task: pb.TrainTask) -> None:
    msg_id = f"{task.job.id}-g{task.generation}"
    await js.publish(JOBS_SUBJECT, task.SerializeToString(), headers={"Nats-Msg-Id": msg_id})


@dataclass(frozen=True, slots=True)
class ControlFlag:
    action: str = "run"  # "run", "cancel" or "pause"
    generation: int = 0

    def encode(self) -> bytes:
        return json.dumps({"action": self.action, "generation": self.generation}).encode()

    @classmethod
    def decode(cls, data: bytes | None) -> ControlFlag:
        if not data:
            return cls()
        obj: dict[str, Any] = json.loads(data)
        return cls(str(obj.get("action", "run")), int(obj.get("generation", 0)))


async def set_control(js: JetStreamContext, job_id: str, flag: ControlFlag) -> None:
    kv = await js.key_value(CONTROL_BUCKET)
    await kv.put(job_id, flag.encode())


async def get_control(js: JetStreamContext, job_id: str) -> ControlFlag:
    kv = await js.key_value(CONTROL_BUCKET)
    try:
        entry = await kv.get(job_id)
    except KeyNotFoundError:
        return ControlFlag()
    return ControlFlag.decode(entry.value)


async def take_lease(js: JetStreamContext, job_id: str, holder: str) -> None:
    """Record who trains the job now; an earlier holder that sees another name stops (it lost its delivery)."""
    kv = await js.key_value(CONTROL_BUCKET)
    await kv.put(f"lease.{job_id}", holder.encode())


async def lease_holder(js: JetStreamContext, job_id: str) -> str:
    kv = await js.key_value(CONTROL_BUCKET)
    try:
        entry = await kv.get(f"lease.{job_id}")
    except KeyNotFoundError:
        return ""
    return (entry.value or b"").decode()
