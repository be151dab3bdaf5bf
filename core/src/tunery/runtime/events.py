"""Protobuf events on a JetStream stream: subject per domain, resource and type; de-duplicated by Nats-Msg-Id."""

from __future__ import annotations

import asyncio
import logging
import uuid
from datetime import UTC, datetime

import nats
from google.protobuf import any_pb2, timestamp_pb2
from google.protobuf.message import Message
from nats.aio.client import Client as NATS
from nats.js.api import RetentionPolicy, StorageType, StreamConfig

from tunery.common.v1 import common_pb2
from tunery.runtime import consumer

log = logging.getLogger("tunery.events")

STREAM = "TUNERY_EVENTS"
SUBJECT_PREFIX = "tunery.events"


def subject_for(event_type: str, resource_id: str) -> str:
    """`dataset.version.frozen` about `ds_1` -> `tunery.events.dataset.ds_1.version.frozen`."""
    domain, _, rest = event_type.partition(".")
    if not rest:
        raise ValueError(f"event type {event_type!r} must look like '<domain>.<what>'")
    if not resource_id or any(c in resource_id for c in ".*> \t\r\n"):
        raise ValueError(f"resource id {resource_id!r} cannot be part of a NATS subject")
    return f"{SUBJECT_PREFIX}.{domain}.{resource_id}.{rest}"


async def connect(url: str, *, name: str) -> NATS:
    """Connect and keep reconnecting forever: a service outlives a NATS restart (and says so in its log)."""
    nc = NATS()

    async def lost() -> None:
        if not nc.is_closed:  # also called on a deliberate close
            log.warning("%s lost the connection to NATS at %s; reconnecting", name, url)

    async def back() -> None:
        log.info("%s reconnected to NATS at %s", name, url)

    # nats-py's default error callback logs a whole traceback on every failed attempt (twice a second while NATS is
    # down); one line when the error changes, then a reminder every 30 s, says the same.
    said: dict[str, float] = {"at": 0.0}
    last = [""]

    async def error(err: Exception) -> None:
        text = f"{type(err).__name__}: {err}"
        now = asyncio.get_running_loop().time()
        if text != last[0] or now - said["at"] >= 30:
            log.warning("%s cannot reach NATS at %s (%s); retrying", name, url, text)
            said["at"], last[0] = now, text

    await nc.connect(
        url,
        name=name,
        max_reconnect_attempts=-1,
        reconnect_time_wait=0.5,
        connect_timeout=5,
        allow_reconnect=True,
        disconnected_cb=lost,
        reconnected_cb=back,
        error_cb=error,
    )
    return nc


async def ensure_stream(nc: NATS) -> None:
    await consumer.ensure_stream(
        nc.jetstream(),
        StreamConfig(
            name=STREAM,
            subjects=[f"{SUBJECT_PREFIX}.>"],
            retention=RetentionPolicy.LIMITS,
            storage=StorageType.FILE,
            max_age=30 * 24 * 3600,
            duplicate_window=120,
        ),
    )


class EventPublisher:
    """Publishes `tunery.common.v1.Event` envelopes; retries while NATS reconnects, never blocks forever."""

    def __init__(self, nc: NATS, *, source: str) -> None:
        self.nc = nc
        self.js = nc.jetstream()
        self.source = source

    async def publish(
        self,
        event_type: str,
        resource_id: str,
        payload: Message,
        *,
        event_id: str | None = None,
        sequence: int = 0,
        traceparent: str = "",
        attempts: int = 5,
    ) -> common_pb2.Event:
        body = any_pb2.Any()
        body.Pack(payload)
        ts = timestamp_pb2.Timestamp()
        ts.FromDatetime(datetime.now(UTC))
        event = common_pb2.Event(
            id=event_id or f"{event_type}.{resource_id}.{uuid.uuid4().hex}",
            type=event_type,
            resource_id=resource_id,
            time=ts,
            sequence=sequence,
            payload=body,
            traceparent=traceparent,
        )
        subject = subject_for(event_type, resource_id)
        data = event.SerializeToString()
        for attempt in range(attempts):
            try:
                await self.js.publish(subject, data, headers={"Nats-Msg-Id": event.id, "Tunery-Source": self.source})
                return event
            except (nats.errors.Error, TimeoutError) as err:
                # Everything NATS raises while it reconnects, or while JetStream recovers after a restart (503s,
                # timeouts, no responders), is worth retrying: the same Nats-Msg-Id makes a retry harmless.
                if attempt == attempts - 1:
                    log.error("could not publish %s on %s: %s", event.type, subject, err)
                    raise
                await asyncio.sleep(min(2.0, 0.2 * 2**attempt))
        raise AssertionError("unreachable")


def decode(data: bytes) -> common_pb2.Event:
    event = common_pb2.Event()
    event.ParseFromString(data)
    return event
