"""The NATS edge of the evaluator: evaluations become `tunery.evaluator.v1.EvaluationEvent` payloads on the shared
event stream, subject ``tunery.events.evaluation.<id>.<type>`` (created, state_changed, progress, waiting, succeeded,
failed, cancelled; the summary rides on the last three)."""

from __future__ import annotations

from nats.aio.client import Client as NATS

from tunery.runtime import events
from tunery_evaluator import convert
from tunery_evaluator.domain import Evaluation


class NatsEvaluationEvents:
    """Implements `runner.EvaluationEvents` with core's JetStream publisher (retries, Nats-Msg-Id de-duplication)."""

    def __init__(self, nc: NATS) -> None:
        self.publisher = events.EventPublisher(nc, source="evaluator")

    async def publish(self, event_type: str, ev: Evaluation) -> None:
        # Progress events are unique per finished count, the others per state and attempt: a retried publish of the
        # same event is dropped by JetStream, a new one never is.
        key = ev.finished_examples if event_type == "evaluation.progress" else f"{ev.state}.a{ev.attempts}"
        event_id = f"{event_type}.{ev.id}.{key}" if event_type != "evaluation.waiting" else None
        await self.publisher.publish(event_type, ev.id, convert.event(ev), event_id=event_id,
                                     sequence=ev.finished_examples)
