"""The evaluation work queue: JetStream stream TUNERY_EVALS (work-queue retention) and one durable pull consumer
shared by every evaluator process, read through core's `PullConsumer`.

Each process runs up to ``max_running`` evaluations at once (that many fetch loops on the shared consumer). While a
run goes on, ``in_progress()`` heartbeats keep its message; a process that dies stops them, and the message comes
back after ``ack_wait`` to whichever process fetches it, which resumes the run from its stored results.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, RetentionPolicy, StorageType, StreamConfig

from tunery.errors import NotFound
from tunery.runtime.consumer import LEAVE, Outcome, PullConsumer, ensure_consumer, ensure_stream
from tunery_evaluator import convert

log = logging.getLogger("tunery.evaluator")

EVALS_STREAM = "TUNERY_EVALS"
EVALS_SUBJECT = "tunery.evals.run"
CONSUMER = "evaluator-workers"


def consumer_config(*, ack_wait: float, max_deliver: int) -> ConsumerConfig:
    # One delivery more than the runner allows attempts, so the last one can mark the evaluation failed.
    return ConsumerConfig(durable_name=CONSUMER, ack_policy=AckPolicy.EXPLICIT, ack_wait=ack_wait,
                          max_deliver=max_deliver + 1, max_ack_pending=1000)


class EvaluationQueue:
    """The stream and its consumer (the service's `WorkQueue`); `ensure()` creates what is missing."""

    def __init__(self, js: JetStreamContext) -> None:
        self.js = js

    async def ensure(self, *, ack_wait: float, max_deliver: int) -> None:
        await ensure_stream(self.js, StreamConfig(name=EVALS_STREAM, subjects=[EVALS_SUBJECT],
                                                  retention=RetentionPolicy.WORK_QUEUE, storage=StorageType.FILE,
                                                  duplicate_window=120))
        await ensure_consumer(self.js, EVALS_STREAM, consumer_config(ack_wait=ack_wait, max_deliver=max_deliver))

    async def enqueue(self, evaluation_id: str) -> None:
        """The same evaluation queued twice within two minutes is one message (Nats-Msg-Id)."""
        await self.js.publish(EVALS_SUBJECT, convert.task(evaluation_id), headers={"Nats-Msg-Id": evaluation_id})


class Workers:
    """``count`` fetch loops on the shared consumer, each running one evaluation at a time."""

    def __init__(self, js: JetStreamContext, run: Callable[[str], Awaitable[object]], *, count: int,
                 ack_wait: float, max_deliver: int) -> None:
        self.run = run
        self._running: set[str] = set()
        config = consumer_config(ack_wait=ack_wait, max_deliver=max_deliver)
        self.consumers = [PullConsumer(js, EVALS_STREAM, config, self.handle, batch=1, nak_delay=2.0,
                                       heartbeat=max(0.2, ack_wait / 4)) for _ in range(count)]

    async def handle(self, msg: Msg) -> Outcome:
        evaluation_id = convert.task_id(msg.data)
        if not evaluation_id:
            return None
        if evaluation_id in self._running:
            # Redelivered while this process still runs it: left unacked, so it comes back (to any process) should
            # this one die before its run acks the message.
            return LEAVE
        self._running.add(evaluation_id)
        try:
            ev = await self.run(evaluation_id)
            log.info("evaluation %s ended %s", evaluation_id, getattr(ev, "state", "?"))
        except NotFound:
            log.info("evaluation %s was deleted before it ran", evaluation_id)
        finally:
            self._running.discard(evaluation_id)
        return None

    async def start(self) -> None:
        for c in self.consumers:
            await c.start()

    async def stop(self) -> None:
        for c in self.consumers:
            c.request_stop()
        for c in self.consumers:
            await c.stop()
