"""One real gateway for the session: uvicorn on a free port, the tiny Llama as base model, a real nats-server (job
events), a real dataset service (log imports), SQLite, and an in-memory span exporter to assert traces."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from tunery.runtime.natsd import free_port
from tunery.testing import LoopThread, nats_server
from tunery_gateway.app import create_app
from tunery_gateway.runtime import Gateway
from tunery_gateway.settings import GatewaySettings
from tunery_gateway.testing import ServerThread

ADMIN_KEY = "tny-000000000000-admin-key-for-the-test-session-only"
NO_SYSTEM_TEMPLATE = (
    "{% for m in messages %}{% if m['role'] == 'system' %}{{ raise_exception('System role not supported') }}"
    "{% endif %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "smollm2: serves the real SmolLM2-135M (converted from the packaged GGUF)")


@dataclass
class Shared:
    tmp: Path
    tiny: Path
    other_tiny: Path


@dataclass
class GW:
    url: str
    settings: GatewaySettings
    server: ServerThread
    spans: InMemorySpanExporter
    shared: Shared
    nats_url: str
    loop: LoopThread
    dataset_addr: str
    admin_key: str = ADMIN_KEY

    @property
    def gateway(self) -> Gateway:
        return self.server.app.state.gateway  # type: ignore[no-any-return]

    @property
    def base(self) -> str:
        return self.shared.tiny.name

    def client(self, key: str = ADMIN_KEY, **kw: Any) -> openai.OpenAI:
        return openai.OpenAI(base_url=f"{self.url}/v1", api_key=key, max_retries=0, timeout=120, **kw)

    def http(self, method: str, path: str, key: str | None = ADMIN_KEY, **kw: Any) -> httpx.Response:
        headers = dict(kw.pop("headers", {}) or {})
        if key is not None:
            headers["Authorization"] = f"Bearer {key}"
        return httpx.request(method, f"{self.url}{path}", headers=headers, timeout=120, **kw)

    def chat(self, key: str = ADMIN_KEY, **body: Any) -> httpx.Response:
        body.setdefault("model", self.base)
        body.setdefault("messages", [{"role": "user", "content": "hello"}])
        body.setdefault("max_tokens", 4)
        return self.http("POST", "/v1/chat/completions", key, json=body)


@pytest.fixture(scope="session")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Shared:
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig

    from tunery.testing import build_tiny_llama

    tmp = tmp_path_factory.mktemp("gateway")
    tiny = build_tiny_llama(tmp / "tiny-llama", data_dir=tmp)
    # A second base of another width: its adapters do not fit the first one (the shape check has to catch that).
    other = tmp / "other-tiny"
    config = LlamaConfig.from_pretrained(str(tiny))
    config.hidden_size, config.intermediate_size = 32, 64
    AutoModelForCausalLM.from_config(config).save_pretrained(str(other))
    tok = AutoTokenizer.from_pretrained(str(tiny))
    tok.chat_template = NO_SYSTEM_TEMPLATE  # like several real templates (Gemma's, Mistral's): no system role
    tok.save_pretrained(str(other))
    return Shared(tmp, tiny, other)


@pytest.fixture(scope="session")
def loop() -> Iterator[LoopThread]:
    lt = LoopThread()
    yield lt
    lt.close()


@pytest.fixture(scope="session")
def nats_url(shared: Shared) -> Iterator[str]:
    with nats_server(shared.tmp) as server:
        yield server.url


@pytest.fixture(scope="session")
def dataset_addr(shared: Shared, nats_url: str, loop: LoopThread) -> Iterator[str]:
    from tunery_dataset.app import start
    from tunery_dataset.settings import DatasetSettings

    app = loop.run(start(DatasetSettings(data_dir=shared.tmp / "dataset", nats_url=nats_url, port=free_port(),
                                         database_url="")))
    yield f"127.0.0.1:{app.port}"
    loop.run(app.stop())


def start_gateway(shared: Shared, nats_url: str, dataset_addr: str, spans: InMemorySpanExporter, name: str,
                  **overrides: Any) -> ServerThread:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(spans))
    values: dict[str, Any] = dict(
        data_dir=shared.tmp / name, base_models=f"{shared.tiny},{shared.other_tiny}", nats_url=nats_url,
        database_url="", admin_api_key=ADMIN_KEY, max_adapters=2, dataset_addr=dataset_addr,
        artifacts_dir=str(shared.tmp / "artifacts"), default_max_tokens=32, max_body_bytes=2 * 1024 * 1024,
        torch_threads=1)
    values.update(overrides)
    settings = GatewaySettings(**values)
    return ServerThread(create_app(settings, tracer_provider=provider)).start()


@pytest.fixture(scope="session")
def gw(shared: Shared, nats_url: str, dataset_addr: str, loop: LoopThread) -> Iterator[GW]:
    os.environ.pop("TUNERY_GATEWAY_ALLOW_UNAUTHENTICATED", None)
    spans = InMemorySpanExporter()
    server = start_gateway(shared, nats_url, dataset_addr, spans, "gw")
    g = GW(server.url, server.app.state.gateway.settings, server, spans, shared, nats_url, loop, dataset_addr)
    try:
        yield g
    finally:
        server.stop()


@pytest.fixture(scope="session")
def extra_gateway(shared: Shared, nats_url: str, dataset_addr: str) -> Iterator[Any]:
    """Starts further gateways with other settings: `extra_gateway(name, **settings) -> (server, spans)`."""
    started: list[ServerThread] = []

    def start(name: str, **overrides: Any) -> tuple[ServerThread, InMemorySpanExporter]:
        spans = InMemorySpanExporter()
        server = start_gateway(shared, nats_url, dataset_addr, spans, name, **overrides)
        started.append(server)
        return server, spans

    yield start
    for server in started:
        server.stop()
