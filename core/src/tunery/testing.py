"""Helpers for tests of every service: a real nats-server, a fresh database, a service on its own event loop."""

from __future__ import annotations

import asyncio
import os
import subprocess
import threading
import uuid
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import nats
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from tunery.runtime import events
from tunery.runtime.natsd import NatsServer

T = TypeVar("T")


@contextmanager
def nats_server(tmp: Path) -> Iterator[NatsServer]:
    server = NatsServer(tmp / "nats").start()
    try:
        yield server
    finally:
        server.stop()


@contextmanager
def fresh_postgres_database(admin_url: str) -> Iterator[str]:
    """Create a uniquely named database for one test session and drop it afterwards."""
    url = make_url(admin_url)
    if url.drivername == "postgresql":
        url = url.set(drivername="postgresql+psycopg")
    name = f"tunery_test_{uuid.uuid4().hex[:10]}"
    admin = create_engine(url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield url.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def postgres_admin_url() -> str:
    return os.environ.get("TUNERY_TEST_DATABASE_URL", "")


class LoopThread:
    """An asyncio loop on its own thread, so blocking gRPC clients in tests can talk to async servers."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True, name="service-loop")
        self.thread.start()

    def run(self, coro: Awaitable[T], timeout: float = 120) -> T:
        fut: Future[T] = asyncio.run_coroutine_threadsafe(coro, self.loop)  # type: ignore[arg-type]
        return fut.result(timeout)

    def call(self, fn: Callable[[], Any]) -> Any:
        return self.run(asyncio.to_thread(fn))

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


class EventLog:
    """Subscribes to events through a real NATS connection and records them, for assertions."""

    def __init__(self, loop: LoopThread, url: str, subject: str = "tunery.events.>") -> None:
        self.loop = loop
        self.items: list[tuple[str, Any, dict[str, str]]] = []

        async def setup() -> Any:
            nc = await nats.connect(url)
            await nc.subscribe(subject, cb=self._on)
            return nc

        self.nc = loop.run(setup())

    async def _on(self, msg: Any) -> None:
        self.items.append((msg.subject, events.decode(msg.data), dict(msg.headers or {})))

    def wait_for(self, event_type: str, resource_id: str, timeout: float = 10) -> tuple[str, Any, dict[str, str]]:
        async def poll() -> tuple[str, Any, dict[str, str]]:
            for _ in range(int(timeout / 0.05)):
                for item in self.items:
                    if item[1].type == event_type and item[1].resource_id == resource_id:
                        return item
                await asyncio.sleep(0.05)
            seen = [(i[1].type, i[1].resource_id) for i in self.items]
            raise AssertionError(f"no {event_type} event for {resource_id}; seen {seen}")

        return self.loop.run(poll())

    def close(self) -> None:
        self.loop.run(self.nc.close())


def build_tiny_llama(out: Path, seed: int = 0, data_dir: Path | None = None) -> Path:
    """A random 3M-parameter Llama with SmolLM2's tokenizer: the real chat template at a fraction of a second a step.

    For the trainer's and the gateway's tests alike (no test imports another service's package). The tokenizer is
    converted from the packaged GGUF into `data_dir` (a temporary folder when not given). Needs torch and
    transformers, imported here only: the dataset service's tests never call it.
    """
    import tempfile

    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from tunery.models import DEFAULT_MODEL, resolve, tokenizer_source

    with tempfile.TemporaryDirectory() as scratch:
        tok = AutoTokenizer.from_pretrained(tokenizer_source(resolve(DEFAULT_MODEL), data_dir or Path(scratch)))
    config = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=2048,
        tie_word_embeddings=True,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
    )
    with torch.random.fork_rng(devices=[]):  # leave the caller's RNG alone
        torch.manual_seed(seed)
        model = LlamaForCausalLM(config)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(out), safe_serialization=True)
    tok.save_pretrained(str(out))
    return out


EXIT_SECONDS = float(os.environ.get("TUNERY_TEST_EXIT_SECONDS", "240"))
"""How long a test waits for a process it stopped to exit. Only a hang guard: on a loaded 2-core machine a process
with torch loaded was seen to need more than 30 s to exit after SIGTERM, so a short bound failed by timing."""


def wait_exit(proc: subprocess.Popen[Any], what: str = "") -> int:
    """Wait until ``proc`` (asked to stop, or killed) has exited; its exit status. Fails naming it if it hangs."""
    try:
        return proc.wait(EXIT_SECONDS)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise AssertionError(f"{what or proc.args} did not exit within {EXIT_SECONDS:.0f} s of being stopped") from None
