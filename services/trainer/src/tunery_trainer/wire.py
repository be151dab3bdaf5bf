"""What the trainer puts on NATS and reads back, as bytes: job events (in `tunery.common.v1.Event` envelopes) and
the TrainTask on the work queue. The only NATS code that knows protobuf; everything else passes domain objects."""

from __future__ import annotations

from nats.aio.client import Client as NATS

from tunery.runtime import events
from tunery.trainer.v1 import trainer_pb2 as pb
from tunery_trainer import convert
from tunery_trainer.domain import JobEvent, TrainTask

EVENT_TYPE = "job.event"


def encode_task(task: TrainTask) -> bytes:
    return convert.task_to_pb(task).SerializeToString()


def decode_task(data: bytes) -> TrainTask:
    msg = pb.TrainTask()
    msg.ParseFromString(data)
    return convert.task_from_pb(msg)


def decode_event(data: bytes) -> tuple[str, JobEvent | None]:
    """(event id, the job event); None for an envelope that holds something else."""
    envelope = events.decode(data)
    ev = pb.JobEvent()
    if not envelope.payload.Unpack(ev):
        return envelope.id, None
    return envelope.id, convert.event_from_pb(ev)


def decode_stored_event(data: bytes) -> JobEvent:
    """A serialized JobEvent as the store kept them before it stored JSON."""
    ev = pb.JobEvent()
    ev.ParseFromString(data)
    return convert.event_from_pb(ev)


class EventPublisher:
    """Publishes job events (type `job.event`) through the core publisher, de-duplicated by event id."""

    def __init__(self, nc: NATS, *, source: str) -> None:
        self.inner = events.EventPublisher(nc, source=source)
        self.source = source

    async def publish(self, event: JobEvent, event_id: str, *, attempts: int = 5) -> None:
        await self.inner.publish(
            EVENT_TYPE, event.job_id, convert.event_to_pb(event), event_id=event_id, attempts=attempts
        )
