"""The NATS edge of the dataset service: plain dataset/version records become `tunery.dataset.v1.DatasetEvent`
payloads on the shared event stream (protobuf stays out of the domain)."""

from __future__ import annotations

from nats.aio.client import Client as NATS

from tunery.runtime import events
from tunery_dataset import convert
from tunery_dataset.records import DatasetInfo, VersionInfo


class NatsDatasetEvents:
    """Implements `service.DatasetEvents` with core's JetStream publisher (retries, Nats-Msg-Id de-duplication)."""

    def __init__(self, nc: NATS) -> None:
        self.publisher = events.EventPublisher(nc, source="dataset")

    async def publish(
        self, event_type: str, ds: DatasetInfo, version: VersionInfo | None, event_id: str | None
    ) -> None:
        await self.publisher.publish(event_type, ds.id, convert.dataset_event(ds, version), event_id=event_id)
