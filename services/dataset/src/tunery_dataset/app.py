"""Wiring: settings -> store, NATS, service, gRPC server."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from nats.aio.client import Client as NATS

from tunery.dataset.v1 import dataset_pb2, dataset_pb2_grpc
from tunery.runtime import events
from tunery.runtime.server import GrpcServer, Registration
from tunery.runtime.store import init_schema, make_engine
from tunery_dataset import models  # noqa: F401 - registers the tables
from tunery_dataset.publish import NatsDatasetEvents
from tunery_dataset.server import DatasetServicer
from tunery_dataset.service import DatasetService
from tunery_dataset.settings import DatasetSettings
from tunery_dataset.store import DatasetStore

log = logging.getLogger("tunery.dataset")
SERVICE_NAME = dataset_pb2.DESCRIPTOR.services_by_name["DatasetService"].full_name


@dataclass
class DatasetApp:
    settings: DatasetSettings
    server: GrpcServer
    service: DatasetService
    nc: NATS

    @property
    def port(self) -> int:
        return self.server.port

    async def stop(self) -> None:
        await self.server.stop()
        await self.close()

    async def close(self) -> None:
        if not self.nc.is_closed:
            await self.nc.drain()
        self.service.store.engine.dispose()


async def start(settings: DatasetSettings) -> DatasetApp:
    settings.service_dir.mkdir(parents=True, exist_ok=True)
    engine = make_engine(settings.sqlalchemy_url())
    init_schema(engine)
    nc = await events.connect(settings.nats_url, name="tunery-dataset")
    await events.ensure_stream(nc)
    service = DatasetService(settings, DatasetStore(engine), NatsDatasetEvents(nc))
    server = GrpcServer(
        [Registration(DatasetServicer(service), dataset_pb2_grpc.add_DatasetServiceServicer_to_server, SERVICE_NAME)],
        settings.address,
        grace=settings.grace_seconds,
        drain_delay=settings.drain_delay_seconds,
    )
    await server.start()
    log.info("dataset service listening on %s:%d", settings.host, server.port)
    return DatasetApp(settings, server, service, nc)
