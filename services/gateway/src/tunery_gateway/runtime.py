"""Everything one gateway process holds, in one object that routes reach through `request.app.state.gateway`."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

import grpc
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import Tracer
from sqlalchemy.engine import Engine

from tunery_gateway.engines.base import InferenceEngine
from tunery_gateway.jobwatch import JobWatcher
from tunery_gateway.keys import KeyStore, RateLimiter
from tunery_gateway.registry import ModelRegistry
from tunery_gateway.settings import GatewaySettings
from tunery_gateway.store import LogStore, LogWriter
from tunery_gateway.telemetry import Metrics

T = TypeVar("T")


@dataclass(eq=False)
class Gateway:
    settings: GatewaySettings
    db_engine: Engine
    engine: InferenceEngine
    registry: ModelRegistry
    keys: KeyStore
    log_store: LogStore
    logs: LogWriter | None
    metrics: Metrics
    tracer_provider: TracerProvider
    tracer: Tracer
    limiter: RateLimiter = field(default_factory=RateLimiter)
    watcher: JobWatcher | None = None
    owns_tracer_provider: bool = True
    draining: bool = False
    ready: bool = False
    _dataset_channel: grpc.aio.Channel | None = None
    # Database calls leave the event loop on their own small pool, so a slow query never starves tokenization.
    db_pool: ThreadPoolExecutor = field(default_factory=lambda: ThreadPoolExecutor(8, thread_name_prefix="db"))

    async def db(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.db_pool, functools.partial(fn, *args, **kwargs))

    def dataset_channel(self) -> grpc.aio.Channel:
        from tunery.runtime.client import aio_channel

        if self._dataset_channel is None:
            self._dataset_channel = aio_channel(self.settings.dataset_addr, timeout=120)
        return self._dataset_channel

    async def close(self) -> None:
        if self.watcher is not None:
            await self.watcher.stop()
        await self.engine.stop()
        if self.logs is not None:
            await asyncio.to_thread(self.logs.close)
        if self._dataset_channel is not None:
            await self._dataset_channel.close()
        self.db_pool.shutdown(wait=True)
        self.keys.close()
        if self.owns_tracer_provider:
            self.tracer_provider.shutdown()
        self.db_engine.dispose()
