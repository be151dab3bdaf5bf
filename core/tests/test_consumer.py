"""The one durable pull-consumer helper (tunery.runtime.consumer) against a real nats-server: created once however
many processes race to create it, acked only after the handler succeeded, redelivered when it failed, kept alive by
heartbeats while a handler runs past ack_wait, and stopped cleanly after the message in hand."""

from __future__ import annotations

import asyncio
import uuid

import nats
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, StreamConfig

from tunery.runtime.consumer import Nak, Outcome, PullConsumer, ensure_consumer, ensure_stream
from tunery.testing import LoopThread


async def fresh_stream(js: JetStreamContext) -> tuple[str, str]:
    """A stream of this test's own (name, subject)."""
    name = f"T{uuid.uuid4().hex[:10]}"
    await ensure_stream(js, StreamConfig(name=name, subjects=[f"{name}.>"]))
    return name, f"{name}.x"


def config(durable: str = "work", ack_wait: float = 30) -> ConsumerConfig:
    return ConsumerConfig(durable_name=durable, ack_policy=AckPolicy.EXPLICIT, ack_wait=ack_wait, max_deliver=5)


def test_concurrent_creation_makes_one_stream_and_one_consumer(loop: LoopThread, nats_url: str) -> None:
    async def go() -> None:
        ncs = [await nats.connect(nats_url) for _ in range(4)]
        try:
            name = f"T{uuid.uuid4().hex[:10]}"
            stream = StreamConfig(name=name, subjects=[f"{name}.>"])
            await asyncio.gather(*(ensure_stream(nc.jetstream(), stream) for nc in ncs))
            await asyncio.gather(*(ensure_consumer(nc.jetstream(), name, config()) for nc in ncs))
            js = ncs[0].jetstream()
            assert [c.name for c in await js.consumers_info(name)] == ["work"]
            await ensure_consumer(js, name, config())  # and again, when it exists: nothing happens
            assert (await js.consumer_info(name, "work")).config.ack_wait == 30
        finally:
            for nc in ncs:
                await nc.close()

    loop.run(go())


def test_ack_after_the_handler_and_redelivery_after_a_failure(loop: LoopThread, nats_url: str) -> None:
    async def go() -> None:
        nc = await nats.connect(nats_url)
        js = nc.jetstream()
        name, subject = await fresh_stream(js)
        seen: list[tuple[bytes, int]] = []
        done = asyncio.Event()

        async def handler(msg: Msg) -> Outcome:
            seen.append((msg.data, msg.metadata.num_delivered))
            if msg.data == b"2" and msg.metadata.num_delivered == 1:
                raise RuntimeError("the side effect failed")  # nak'd with nak_delay, then redelivered
            if msg.data == b"3" and msg.metadata.num_delivered == 1:
                return Nak(0)  # handed back on purpose
            if sum(1 for d, _ in seen if d in (b"1", b"2", b"3")) == 5:
                done.set()
            return None

        consumer = PullConsumer(js, name, config(), handler, batch=10, fetch_timeout=0.5, nak_delay=0.1)
        try:
            await consumer.start()
            for i in (1, 2, 3):
                await js.publish(subject, str(i).encode())
            await asyncio.wait_for(done.wait(), 30)
            assert sorted(seen) == [(b"1", 1), (b"2", 1), (b"2", 2), (b"3", 1), (b"3", 2)]
            while (await js.consumer_info(name, "work")).num_ack_pending:  # the last ack follows the handler
                await asyncio.sleep(0.05)
            assert (await js.consumer_info(name, "work")).num_pending == 0
        finally:
            await consumer.stop()
            await nc.close()

    loop.run(go())


def test_heartbeats_keep_a_long_handler_s_message(loop: LoopThread, nats_url: str) -> None:
    """The handler outlives ack_wait three times; a second fetcher on the same consumer must not get the message."""

    async def go() -> None:
        nc = await nats.connect(nats_url)
        js = nc.jetstream()
        name, subject = await fresh_stream(js)
        cfg = config(ack_wait=1.0)
        beats = 0
        stolen: list[Msg] = []
        handled = asyncio.Event()

        async def on_beat(msg: Msg) -> bool:
            nonlocal beats
            beats += 1
            return True

        async def handler(msg: Msg) -> Outcome:
            # Meanwhile another consumer instance asks for work for 3 x ack_wait: it gets this message only if the
            # server thinks it was abandoned.
            rival = await js.pull_subscribe_bind(durable="work", stream=name)
            try:
                stolen.extend(await rival.fetch(1, timeout=3.0))
            except TimeoutError:
                pass
            finally:
                await rival.unsubscribe()
            handled.set()
            return None

        consumer = PullConsumer(js, name, cfg, handler, batch=1, fetch_timeout=0.5, heartbeat=0.2, on_heartbeat=on_beat)
        try:
            await ensure_consumer(js, name, cfg)
            await js.publish(subject, b"long")
            await consumer.start()
            await asyncio.wait_for(handled.wait(), 30)
            while (await js.consumer_info(name, "work")).num_ack_pending:  # the ack follows the handler
                await asyncio.sleep(0.05)
            assert stolen == [], "redelivered while its handler was still working on it"
            assert beats >= 5
            info = await js.consumer_info(name, "work")
            assert (info.num_redelivered, info.num_pending, info.num_ack_pending) == (0, 0, 0)
        finally:
            await consumer.stop()
            await nc.close()

    loop.run(go())


def test_stop_lets_the_current_handler_finish(loop: LoopThread, nats_url: str) -> None:
    async def go() -> None:
        nc = await nats.connect(nats_url)
        js = nc.jetstream()
        name, subject = await fresh_stream(js)
        started, release = asyncio.Event(), asyncio.Event()
        finished: list[bytes] = []

        async def handler(msg: Msg) -> Outcome:
            started.set()
            await release.wait()
            finished.append(msg.data)
            return None

        consumer = PullConsumer(js, name, config(), handler, batch=1, fetch_timeout=0.5, sync_ack=True)
        try:
            await consumer.start()
            await js.publish(subject, b"a")
            await asyncio.wait_for(started.wait(), 10)
            stopping = asyncio.ensure_future(consumer.stop())
            await asyncio.sleep(0)  # stop() has begun and is waiting for the handler
            assert not stopping.done()
            release.set()
            await asyncio.wait_for(stopping, 10)
            assert finished == [b"a"] and consumer.sub is None
            info = await js.consumer_info(name, "work")
            assert info.num_ack_pending == 0, "the message in hand was acked before the stop"
        finally:
            await nc.close()

    loop.run(go())
