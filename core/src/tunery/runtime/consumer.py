"""Durable JetStream pull consumers, the one way every Tunery service reads a stream.

The trainer's event ingest and work queue and the gateway's job watcher all need the same things, written once
here: the stream, consumer (and key-value bucket) created if missing, with a concurrent creation by another process
tolerated; a fetch loop that backs off while NATS is away; a handler per message; `in_progress()` heartbeats while a
long handler runs (so the server does not redeliver the message meanwhile); an ack only after the handler returned,
that is after its side effect is committed (nats.py's advice); a nak with a delay when the handler raised; and a
clean stop that lets the current handler finish.

A handler says what to do with its message by what it returns: `None` acks it, `Nak(delay)` hands it back, `LEAVE`
does neither (the message comes back after ack_wait, e.g. when the work was taken over by another consumer).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Final

from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import ConsumerConfig, KeyValueConfig, StreamConfig
from nats.js.errors import BadRequestError, BucketNotFoundError, NotFoundError
from nats.js.kv import KeyValue

log = logging.getLogger("tunery.consumer")

__all__ = ["LEAVE", "Leave", "Nak", "PullConsumer", "ensure_consumer", "ensure_key_value", "ensure_stream"]


async def ensure_stream(js: JetStreamContext, config: StreamConfig) -> None:
    """Create the stream unless it exists; another process creating it at the same time is fine."""
    assert config.name
    try:
        await js.stream_info(config.name)
    except NotFoundError:
        try:
            await js.add_stream(config)
        except BadRequestError:  # created concurrently (with another config: the first one stands)
            await js.stream_info(config.name)


async def ensure_consumer(js: JetStreamContext, stream: str, config: ConsumerConfig) -> None:
    """Create the durable consumer unless it exists; a concurrent creation by another process is fine."""
    assert config.durable_name
    try:
        await js.consumer_info(stream, config.durable_name)
    except NotFoundError:
        try:
            await js.add_consumer(stream, config)
        except BadRequestError:
            await js.consumer_info(stream, config.durable_name)


async def ensure_key_value(js: JetStreamContext, config: KeyValueConfig) -> KeyValue:
    """The bucket, created unless it exists; a concurrent creation by another process is fine."""
    try:
        return await js.key_value(config.bucket)
    except BucketNotFoundError:
        try:
            return await js.create_key_value(config)
        except BadRequestError:
            return await js.key_value(config.bucket)


@dataclass(frozen=True, slots=True)
class Nak:
    """Hand the message back: redelivered after `delay` seconds (None: at once)."""

    delay: float | None = None


class Leave:
    """Neither ack nor nak: the message is redelivered once its ack_wait runs out."""

    def __repr__(self) -> str:
        return "LEAVE"


LEAVE: Final = Leave()
Outcome = Nak | Leave | None
Handler = Callable[[Msg], Awaitable[Outcome]]
# Called before each heartbeat while a handler runs; returning False stops the heartbeats for this message.
BeatHook = Callable[[Msg], Awaitable[bool]]


class PullConsumer:
    """One durable pull consumer of `stream` and its fetch loop; see the module docstring for the contract.

    `start()` subscribes (errors raise, so a service that cannot subscribe does not start) and fetches in a task of
    its own; `run()` does the same in the calling task until `request_stop()` or `stop()`.
    """

    def __init__(
        self,
        js: JetStreamContext,
        stream: str,
        config: ConsumerConfig,
        handler: Handler,
        *,
        batch: int = 64,
        fetch_timeout: float = 1.0,
        nak_delay: float = 1.0,
        heartbeat: float | None = None,
        on_heartbeat: BeatHook | None = None,
        sync_ack: bool = False,
        max_backoff: float = 10.0,
    ) -> None:
        assert config.durable_name, "a durable consumer needs a durable_name"
        self.js = js
        self.stream = stream
        self.config = config
        self.durable: str = config.durable_name
        self.handler = handler
        self.batch = batch
        self.fetch_timeout = fetch_timeout
        self.nak_delay = nak_delay
        self.heartbeat = heartbeat
        self.on_heartbeat = on_heartbeat
        self.sync_ack = sync_ack
        self.max_backoff = max_backoff
        self.sub: JetStreamContext.PullSubscription | None = None
        self.task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()
        self._busy = False

    async def subscribe(self) -> None:
        if self.sub is None:
            await ensure_consumer(self.js, self.stream, self.config)
            self.sub = await self.js.pull_subscribe_bind(durable=self.durable, stream=self.stream)

    async def start(self) -> None:
        await self.subscribe()
        self.task = asyncio.get_running_loop().create_task(self.run(), name=f"consumer-{self.durable}")

    async def run(self) -> None:
        await self.subscribe()
        assert self.sub is not None
        delay = 0.5
        while not self._stopping.is_set():
            try:
                msgs = await self.sub.fetch(self.batch, timeout=self.fetch_timeout)
            except TimeoutError:
                continue
            except Exception as err:  # NATS away or JetStream recovering: try again, less often
                log.warning(
                    "%s: fetch failed (%s: %s); retrying in %.1f s", self.durable, type(err).__name__, err, delay
                )
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), delay)
                delay = min(self.max_backoff, delay * 2)
                continue
            delay = 0.5
            for msg in msgs:
                self._busy = True
                try:
                    await self._handle(msg)
                finally:
                    self._busy = False

    async def _handle(self, msg: Msg) -> None:
        beat = asyncio.get_running_loop().create_task(self._beat(msg)) if self.heartbeat else None
        try:
            outcome = await self.handler(msg)
        except Exception:
            log.exception(
                "%s: handling the message on %s failed; it is redelivered in %.1f s",
                self.durable,
                msg.subject,
                self.nak_delay,
            )
            outcome = Nak(self.nak_delay)
        finally:
            if beat is not None:
                beat.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await beat
        try:
            if outcome is None:
                await (msg.ack_sync() if self.sync_ack else msg.ack())
            elif isinstance(outcome, Nak):
                await msg.nak(delay=outcome.delay)
        except Exception as err:  # the message comes back after ack_wait; handlers must be idempotent anyway
            log.warning(
                "%s: could not %s the message on %s: %s",
                self.durable,
                "ack" if outcome is None else "nak",
                msg.subject,
                err,
            )

    async def _beat(self, msg: Msg) -> None:
        assert self.heartbeat
        while True:
            await asyncio.sleep(self.heartbeat)
            try:
                if self.on_heartbeat is not None and not await self.on_heartbeat(msg):
                    return
                await msg.in_progress()
            except Exception as err:
                log.warning("%s: heartbeat for the message on %s failed: %s", self.durable, msg.subject, err)

    def request_stop(self) -> None:
        """Fetch no more; the message being handled is finished first (safe to call from a signal handler)."""
        self._stopping.set()

    async def stop(self) -> None:
        """Stop fetching, let the current handler finish, and unsubscribe."""
        self.request_stop()
        if self.task is not None:
            if not self._busy:  # waiting in fetch or a backoff: nothing to finish
                self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
            self.task = None
        await self.unsubscribe()

    async def unsubscribe(self) -> None:
        if self.sub is not None:
            with contextlib.suppress(Exception):
                await self.sub.unsubscribe()
            self.sub = None
