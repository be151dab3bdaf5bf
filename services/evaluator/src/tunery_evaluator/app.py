"""Wiring: settings -> store, NATS (events, queue), dataset and trainer clients, model client, service, gRPC server,
and the queue workers that run evaluations in the same process."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import grpc
from nats.aio.client import Client as NATS

from tunery.evaluator.v1 import evaluator_pb2, evaluator_pb2_grpc
from tunery.runtime import events
from tunery.runtime.client import aio_channel
from tunery.runtime.server import GrpcServer, Registration
from tunery.runtime.store import init_schema, make_engine
from tunery_evaluator import models  # noqa: F401 - registers the tables
from tunery_evaluator.client import OpenAIModelClient
from tunery_evaluator.publish import NatsEvaluationEvents
from tunery_evaluator.queue import EvaluationQueue, Workers
from tunery_evaluator.server import EvaluatorServicer
from tunery_evaluator.service import EvaluatorService
from tunery_evaluator.settings import EvaluatorSettings
from tunery_evaluator.store import EvaluationStore
from tunery_evaluator.upstream import GrpcDatasetClient, GrpcTrainerClient

log = logging.getLogger("tunery.evaluator")
SERVICE_NAME = evaluator_pb2.DESCRIPTOR.services_by_name["EvaluatorService"].full_name


@dataclass
class EvaluatorApp:
    settings: EvaluatorSettings
    server: GrpcServer
    service: EvaluatorService
    workers: Workers
    nc: NATS
    channels: list[grpc.aio.Channel]

    @property
    def port(self) -> int:
        return self.server.port

    async def stop(self) -> None:
        await self.server.stop()
        await self.close()

    async def close(self) -> None:
        await self.workers.stop()
        await self.service.client.close()
        for ch in self.channels:
            await ch.close()
        if not self.nc.is_closed:
            await self.nc.drain()
        self.service.store.engine.dispose()


async def start(settings: EvaluatorSettings) -> EvaluatorApp:
    settings.service_dir.mkdir(parents=True, exist_ok=True)
    engine = make_engine(settings.sqlalchemy_url())
    init_schema(engine)
    nc = await events.connect(settings.nats_url, name="tunery-evaluator")
    await events.ensure_stream(nc)
    queue = EvaluationQueue(nc.jetstream())
    await queue.ensure(ack_wait=settings.ack_wait_seconds, max_deliver=settings.max_deliver)
    ds_channel, tr_channel = aio_channel(settings.dataset_addr), aio_channel(settings.trainer_addr)
    client = OpenAIModelClient(settings.gateway_url, settings.gateway_api_key.get_secret_value(),
                               timeout=settings.request_timeout_seconds)
    service = EvaluatorService(settings, EvaluationStore(engine), NatsEvaluationEvents(nc), queue, client,
                               GrpcDatasetClient(ds_channel, settings.dataset_addr),
                               GrpcTrainerClient(tr_channel, settings.trainer_addr))
    server = GrpcServer(
        [Registration(EvaluatorServicer(service), evaluator_pb2_grpc.add_EvaluatorServiceServicer_to_server,
                      SERVICE_NAME)],
        settings.address,
        grace=settings.grace_seconds,
        drain_delay=settings.drain_delay_seconds,
    )
    await server.start()
    workers = Workers(nc.jetstream(), service.run, count=settings.max_running, ack_wait=settings.ack_wait_seconds,
                      max_deliver=settings.max_deliver)
    await workers.start()
    log.info("evaluator service listening on %s:%d (models through %s)", settings.host, server.port,
             settings.gateway_url)
    return EvaluatorApp(settings, server, service, workers, nc, [ds_channel, tr_channel])
