"""Fixtures of the core tests: an event loop on its own thread and a real nats-server, one of each per module."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tunery.testing import LoopThread, nats_server


@pytest.fixture(scope="module")
def loop() -> Iterator[LoopThread]:
    lt = LoopThread()
    yield lt
    lt.close()


@pytest.fixture(scope="module")
def nats_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with nats_server(tmp_path_factory.mktemp("nats")) as server:
        yield server.url
