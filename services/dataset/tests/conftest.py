"""A real dataset service behind a real gRPC channel, with a real nats-server and SQLite (and PostgreSQL when
TUNERY_TEST_DATABASE_URL is set)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tunery.dataset.v1 import dataset_pb2_grpc
from tunery.runtime import client
from tunery.runtime.natsd import free_port
from tunery.testing import EventLog, LoopThread, fresh_postgres_database, nats_server, postgres_admin_url
from tunery_dataset.app import start
from tunery_dataset.settings import DatasetSettings
from tunery_dataset.testing import Service

BACKENDS = ["sqlite", "postgres"]


@pytest.fixture(scope="session")
def loop() -> Iterator[LoopThread]:
    lt = LoopThread()
    yield lt
    lt.close()


@pytest.fixture(scope="session")
def nats_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with nats_server(tmp_path_factory.mktemp("nats")) as server:
        yield server.url


@pytest.fixture(scope="session")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Shared data dir for converted tokenizers, so the GGUF is converted once per session."""
    return tmp_path_factory.mktemp("shared-data")


@pytest.fixture(scope="session", params=BACKENDS)
def service(
    request: pytest.FixtureRequest,
    loop: LoopThread,
    nats_url: str,
    models_dir: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Service]:
    backend = request.param
    data_dir = models_dir
    db_ctx: Any = None
    if backend == "postgres":
        admin = postgres_admin_url()
        if not admin:
            pytest.skip("TUNERY_TEST_DATABASE_URL not set")
        db_ctx = fresh_postgres_database(admin)
        db_url = db_ctx.__enter__()
    else:
        db_url = f"sqlite:///{tmp_path_factory.mktemp('sqlite') / 'dataset.db'}"
    settings = DatasetSettings(
        data_dir=data_dir,
        nats_url=nats_url,
        database_url=db_url,
        port=free_port(),
        host="127.0.0.1",
        max_upload_bytes=32 * 1024 * 1024,
        max_problems=20,
    )
    app = loop.run(start(settings))
    channel = client.channel(f"127.0.0.1:{app.port}", timeout=120)
    try:
        yield Service(app, dataset_pb2_grpc.DatasetServiceStub(channel), channel, settings, backend)
    finally:
        channel.close()
        loop.run(app.stop())
        if db_ctx is not None:
            db_ctx.__exit__(None, None, None)


@pytest.fixture
def event_log(loop: LoopThread, nats_url: str) -> Iterator[EventLog]:
    log = EventLog(loop, nats_url, "tunery.events.dataset.>")
    yield log
    log.close()
