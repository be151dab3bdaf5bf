"""Wiring of the trainer service: store, NATS (events, queue, ingest), dataset client, gRPC server."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import grpc
from nats.aio.client import Client as NATS

from tunery.runtime import events
from tunery.runtime.client import aio_channel
from tunery.runtime.server import GrpcServer, Registration
from tunery.runtime.store import init_schema, make_engine
from tunery.trainer.v1 import trainer_pb2, trainer_pb2_grpc
from tunery_trainer import (
    models,  # noqa: F401 - registers the tables
    wire,
)
from tunery_trainer.datasetclient import GrpcDatasetClient
from tunery_trainer.evaluatorclient import GrpcEvaluatorClient
from tunery_trainer.ingest import Ingest
from tunery_trainer.queue import JobQueue
from tunery_trainer.server import TrainerServicer
from tunery_trainer.service import TrainerService
from tunery_trainer.settings import TrainerSettings
from tunery_trainer.store import JobStore

log = logging.getLogger("tunery.trainer")
SERVICE_NAME = trainer_pb2.DESCRIPTOR.services_by_name["TrainerService"].full_name


@dataclass
class TrainerApp:
    settings: TrainerSettings
    server: GrpcServer
    service: TrainerService
    ingest: Ingest
    nc: NATS
    channel: grpc.aio.Channel
    evaluator: GrpcEvaluatorClient
    evaluator_channel: grpc.aio.Channel

    @property
    def port(self) -> int:
        return self.server.port

    async def stop(self) -> None:
        await self.server.stop()
        await self.close()

    async def close(self) -> None:
        await self.ingest.stop()
        await self.service.close()
        await self.evaluator.stop()
        await self.channel.close()
        await self.evaluator_channel.close()
        if not self.nc.is_closed:
            await self.nc.drain()
        self.service.store.engine.dispose()


async def start(settings: TrainerSettings) -> TrainerApp:
    settings.service_dir.mkdir(parents=True, exist_ok=True)
    engine = make_engine(settings.sqlalchemy_url())
    init_schema(engine)
    nc = await events.connect(settings.nats_url, name="tunery-trainer")
    await events.ensure_stream(nc)
    jobs = JobQueue(nc.jetstream())
    await jobs.ensure(ack_wait=settings.ack_wait_seconds, max_deliver=settings.max_deliver)
    channel = aio_channel(settings.dataset_addr)
    evaluator_channel = aio_channel(settings.evaluator_addr)
    evaluator = GrpcEvaluatorClient(evaluator_channel, settings.evaluator_addr, nc)
    await evaluator.start()
    service = TrainerService(
        settings,
        JobStore(engine, legacy_event=wire.decode_stored_event),
        wire.EventPublisher(nc, source="trainer"),
        jobs,
        GrpcDatasetClient(channel, settings.dataset_addr),
        evaluator,
    )
    ingest = Ingest(service, nc, jobs)
    await ingest.start()
    server = GrpcServer(
        [Registration(TrainerServicer(service), trainer_pb2_grpc.add_TrainerServiceServicer_to_server, SERVICE_NAME)],
        settings.address,
        grace=settings.grace_seconds,
        drain_delay=settings.drain_delay_seconds,
    )
    await server.start()
    await service.recover()
    log.info("trainer service listening on %s:%d", settings.host, server.port)
    return TrainerApp(settings, server, service, ingest, nc, channel, evaluator, evaluator_channel)
