"""The shared runtime against real parts: a gRPC server on a port, a real nats-server, entry points on disk."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import wrappers_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from tunery import errors
from tunery.dataset.v1 import dataset_pb2 as pb
from tunery.dataset.v1 import dataset_pb2_grpc
from tunery.plugins import PluginLoadWarning, PluginRegistry
from tunery.runtime import client, events, grpcerrors
from tunery.runtime.artifacts import LocalArtifactStore
from tunery.runtime.natsd import free_port, wait_port
from tunery.runtime.server import GrpcServer, Registration
from tunery.testing import LoopThread, wait_exit

ROOT = Path(__file__).resolve().parents[2]


# ---- a tiny service with raw-bytes methods, to drive the interceptor ------------------------------------------------
def _ident(b: bytes) -> bytes:
    return b


async def _user_error(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
    raise errors.InvalidArgument(
        "line 3: bad role",
        code="validation_failed",
        field="chunk",
        problems=[errors.Problem("unrecognized_role", "line 3: bad role", "messages[0].role", 3, "f.jsonl")],
        problem_count=7,
    )


async def _bug(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
    raise KeyError("oops")


SLOW_DEADLINES: list[float | None] = []


async def _slow(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
    """Never answers: only a deadline ends the call. Records how much of its deadline the call arrived with."""
    SLOW_DEADLINES.append(context.time_remaining())
    await asyncio.get_running_loop().create_future()
    return request


async def _stream_error(request: bytes, context: grpc.aio.ServicerContext):  # type: ignore[no-untyped-def]
    yield b"one"
    raise errors.NotFound("version 9 not found", code="version_not_found", field="version")


def _add_test_service(_servicer: object, server: grpc.aio.Server) -> None:
    handlers = {
        "UserError": grpc.unary_unary_rpc_method_handler(_user_error, _ident, _ident),
        "Bug": grpc.unary_unary_rpc_method_handler(_bug, _ident, _ident),
        "Slow": grpc.unary_unary_rpc_method_handler(_slow, _ident, _ident),
        "StreamError": grpc.unary_stream_rpc_method_handler(_stream_error, _ident, _ident),
    }
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("test.Test", handlers),))


SPANS = InMemorySpanExporter()
PROVIDER = TracerProvider()
PROVIDER.add_span_processor(SimpleSpanProcessor(SPANS))


@pytest.fixture(scope="module")
def test_server(loop: LoopThread) -> Iterator[str]:
    port = free_port()
    server = GrpcServer(
        [Registration(None, _add_test_service, "test.Test")], f"127.0.0.1:{port}", grace=1, tracer_provider=PROVIDER
    )
    loop.run(server.start())
    yield f"127.0.0.1:{port}"
    loop.run(server.stop())


def _call(target: str, method: str, timeout: float = 5) -> grpc.RpcError:
    ch = client.channel(target, timeout=timeout)
    with pytest.raises(grpc.RpcError) as info:
        ch.unary_unary(f"/test.Test/{method}", _ident, _ident)(b"x")
    ch.close()
    return info.value


def test_user_errors_keep_status_and_details(test_server: str) -> None:
    rpc = _call(test_server, "UserError")
    assert rpc.code() == grpc.StatusCode.INVALID_ARGUMENT
    err = grpcerrors.from_rpc_error(rpc)
    assert isinstance(err, errors.InvalidArgument)
    assert (err.code, err.field, err.problem_count) == ("validation_failed", "chunk", 7)
    assert err.problems[0] == errors.Problem("unrecognized_role", "line 3: bad role", "messages[0].role", 3, "f.jsonl")


def test_calls_join_the_callers_trace(test_server: str) -> None:
    SPANS.clear()
    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    ch = client.channel(test_server)
    with pytest.raises(grpc.RpcError):
        ch.unary_unary("/test.Test/UserError", _ident, _ident)(
            b"x", metadata=(("traceparent", f"00-{trace_id}-00f067aa0ba902b7-01"),)
        )
    ch.close()
    deadline = time.monotonic() + 5  # the server ends its span just after the client has the status
    while not (spans := [s for s in SPANS.get_finished_spans() if format(s.context.trace_id, "032x") == trace_id]):
        assert time.monotonic() < deadline, [s.name for s in SPANS.get_finished_spans()]
        time.sleep(0.01)
    (span,) = spans
    assert format(span.context.trace_id, "032x") == trace_id
    assert format(span.parent.span_id, "016x") == "00f067aa0ba902b7"
    assert span.attributes["rpc.system"] == "grpc" and span.attributes["rpc.method"] == "UserError"
    assert span.attributes["rpc.grpc.status_code"] == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    assert span.attributes["error.type"] == "validation_failed"


def test_bugs_are_internal_without_leaking_details(test_server: str) -> None:
    rpc = _call(test_server, "Bug")
    assert rpc.code() == grpc.StatusCode.INTERNAL
    assert "KeyError" in rpc.details() and "oops" not in rpc.details()


def test_streaming_errors_are_mapped(test_server: str) -> None:
    ch = client.channel(test_server)
    it = ch.unary_stream("/test.Test/StreamError", _ident, _ident)(b"x")
    assert next(it) == b"one"
    with pytest.raises(grpc.RpcError) as info:
        next(it)
    assert grpcerrors.from_rpc_error(info.value).code == "version_not_found"
    ch.close()


def test_every_call_gets_a_deadline(test_server: str) -> None:
    SLOW_DEADLINES.clear()
    t0 = time.monotonic()
    rpc = _call(test_server, "Slow", timeout=0.3)  # the method never answers: without a deadline this would hang
    assert rpc.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert time.monotonic() - t0 < client.DEFAULT_TIMEOUT / 3  # the channel's 0.3 s, not the default deadline
    # The server saw the same deadline (unless the call only got there after it had passed).
    assert all(left is not None and left <= 0.3 for left in SLOW_DEADLINES), SLOW_DEADLINES
    err = grpcerrors.from_rpc_error(rpc)
    assert isinstance(err, errors.Unavailable) and err.code == "deadline_exceeded"


def test_health_and_reflection(test_server: str) -> None:
    ch = client.channel(test_server)
    health = health_pb2_grpc.HealthStub(ch)
    assert health.Check(health_pb2.HealthCheckRequest()).status == health_pb2.HealthCheckResponse.SERVING
    assert health.Check(health_pb2.HealthCheckRequest(service="test.Test")).status == 1
    refl = reflection_pb2_grpc.ServerReflectionStub(ch)
    resp = next(refl.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")])))
    names = {s.name for s in resp.list_services_response.service}
    assert {"test.Test", "grpc.health.v1.Health"} <= names
    ch.close()


# ---- the dataset service as a process: SIGTERM drains in-flight calls ----
def test_sigterm_drains_then_stops(tmp_path: Path, nats_url: str) -> None:
    port = free_port()
    env = {
        **os.environ,
        "TUNERY_DATA_DIR": str(tmp_path),
        "TUNERY_NATS_URL": nats_url,
        "TUNERY_DATASET_PORT": str(port),
        "TUNERY_DATASET_GRACE_SECONDS": "10",
        "TUNERY_DATASET_DRAIN_DELAY_SECONDS": "2",
    }
    env.pop("TUNERY_DATABASE_URL", None)
    proc = subprocess.Popen([sys.executable, "-m", "tunery_dataset"], env=env, stdout=subprocess.PIPE, text=True)
    try:
        assert wait_port("127.0.0.1", port, 30), "service did not start"
        ch = client.channel(f"127.0.0.1:{port}")
        stub = dataset_pb2_grpc.DatasetServiceStub(ch)
        ds = stub.CreateDataset(pb.CreateDatasetRequest(name="drain")).dataset
        release, sent = threading.Event(), threading.Event()
        line = b'{"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}\n'

        def slow() -> Iterator[pb.UploadExamplesRequest]:
            yield pb.UploadExamplesRequest(header=pb.UploadHeader(dataset=ds.id))
            yield pb.UploadExamplesRequest(chunk=line)
            sent.set()  # grpc asks for the third message only once the first two are on their way
            release.wait(60)
            yield pb.UploadExamplesRequest(chunk=line)

        inflight = stub.UploadExamples.future(slow())
        assert sent.wait(60), "the upload did not start"
        health = health_pb2_grpc.HealthStub(ch)
        assert health.Check(health_pb2.HealthCheckRequest()).status == health_pb2.HealthCheckResponse.SERVING
        proc.send_signal(signal.SIGTERM)
        # NOT_SERVING once the service has the signal, for the drain delay (2 s); it still takes calls meanwhile.
        deadline = time.monotonic() + 60
        while (status := health.Check(health_pb2.HealthCheckRequest(), timeout=5).status) != (
            health_pb2.HealthCheckResponse.NOT_SERVING
        ):
            assert status == health_pb2.HealthCheckResponse.SERVING and time.monotonic() < deadline, status
            time.sleep(0.02)
        release.set()
        assert inflight.result(20).examples_added == 2, "the in-flight upload finished during the drain"
        assert wait_exit(proc, "the draining dataset service") == 0
        ch.close()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


# ---- events ----------------------------------------------------------------------------------------------------------
def test_events_are_deduplicated_by_msg_id(loop: LoopThread, nats_url: str) -> None:
    async def scenario() -> tuple[int, str, wrappers_pb2.StringValue]:
        nc = await events.connect(nats_url, name="test")
        await events.ensure_stream(nc)
        await events.ensure_stream(nc)  # idempotent
        pub = events.EventPublisher(nc, source="test")
        for _ in range(3):
            await pub.publish("dataset.version.frozen", "ds_x1", wrappers_pb2.StringValue(value="v1"), event_id="e-1")
        # Published after the three: once it is read, every copy of e-1 the stream kept has been read too.
        await pub.publish("dataset.version.frozen", "ds_x1", wrappers_pb2.StringValue(value="end"), event_id="e-2")
        js = nc.jetstream()
        sub = await js.pull_subscribe("tunery.events.dataset.ds_x1.>", durable=None)
        msgs: list[Any] = []
        while not msgs or events.decode(msgs[-1].data).id != "e-2":
            msgs += await sub.fetch(10, timeout=30)
        first = [m for m in msgs if events.decode(m.data).id == "e-1"]
        event = events.decode(first[0].data)
        value = wrappers_pb2.StringValue()
        event.payload.Unpack(value)
        await nc.close()
        return len(first), first[0].subject, value

    n, subject, value = loop.run(scenario())
    assert n == 1
    assert subject == "tunery.events.dataset.ds_x1.version.frozen"
    assert value.value == "v1"


def test_subject_rules() -> None:
    assert events.subject_for("job.state.changed", "ftjob-1") == "tunery.events.job.ftjob-1.state.changed"
    for bad in ("a.b", "a b", "a*", ""):
        with pytest.raises(ValueError):
            events.subject_for("dataset.created", bad)
    with pytest.raises(ValueError):
        events.subject_for("created", "ds_1")


# ---- plugins: entry points of an "installed" third-party distribution ------------------------------------------------
def test_plugin_registry_loads_entry_points(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "acme_plugins.py").write_text("def good():\n    return 'good'\nraise_me = None\n")
    (tmp_path / "acme_broken.py").write_text("raise ImportError('missing dependency acme-gpu')\n")
    dist = tmp_path / "acme_plugins-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: acme-plugins\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(
        "[tunery.test_plugins]\nacme = acme_plugins:good\nbroken = acme_broken:thing\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    reg: PluginRegistry[object] = PluginRegistry("tunery.test_plugins", "test backend")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert reg.names() == ["acme"]
    assert any(issubclass(w.category, PluginLoadWarning) and "acme-gpu" in str(w.message) for w in caught)
    assert reg.get("acme")() == "good"  # type: ignore[operator]
    with pytest.raises(errors.InvalidArgument) as info:
        reg.get("nope", field="backend")
    assert "valid: acme" in info.value.message and info.value.field == "backend"
    with pytest.raises(errors.InvalidArgument) as info:
        reg.get("broken")
    assert "failed to load" in info.value.message


def test_builtin_base_model_is_an_entry_point() -> None:
    from tunery.models import BASE_MODELS, resolve

    assert "smollm2-135m-instruct" in BASE_MODELS.names()
    spec = resolve("")
    assert spec.gguf is not None and spec.gguf.exists() and spec.context_length == 8192
    with pytest.raises(errors.NotFound) as info:
        resolve("../../etc/passwd")
    assert "smollm2-135m-instruct" in info.value.message


# ---- settings and artifacts ------------------------------------------------------------------------------------------
def test_settings_from_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from pydantic import ValidationError

    from tunery_dataset.settings import DatasetSettings

    monkeypatch.setenv("TUNERY_NATS_URL", "nats://10.0.0.1:4222")
    monkeypatch.setenv("TUNERY_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("TUNERY_DATASET_PORT", "6001")
    s = DatasetSettings()
    assert (s.nats_url, s.port, s.data_dir) == ("nats://10.0.0.1:4222", 6001, tmp_path)
    monkeypatch.setenv("TUNERY_DATASET_NATS_URL", "nats://127.0.0.1:5000")
    assert DatasetSettings().nats_url == "nats://127.0.0.1:5000"  # the service's own setting wins
    assert DatasetSettings().sqlalchemy_url() == f"sqlite:///{tmp_path}/dataset/dataset.db"
    monkeypatch.setenv("TUNERY_DATASET_PORT", "http")
    with pytest.raises(ValidationError) as info:
        DatasetSettings()
    assert "port" in str(info.value)


def test_artifacts_are_atomic_and_confined(tmp_path: Path) -> None:
    store = LocalArtifactStore(tmp_path / "artifacts")
    store.put_bytes("jobs/j1/adapter.safetensors", b"abc")
    assert store.open("jobs/j1/adapter.safetensors").read() == b"abc"
    for bad in ("../x", "/etc/passwd", "a/../../b", "a\x00b", ""):
        with pytest.raises(errors.InvalidArgument):
            store.path(bad)
    with pytest.raises(RuntimeError), store.writer("jobs/j1/half") as fh:
        fh.write(b"partial")
        raise RuntimeError("disk full")
    assert not store.exists("jobs/j1/half")
    assert [p.name for p in (tmp_path / "artifacts/jobs/j1").iterdir()] == ["adapter.safetensors"]


def test_generated_code_is_fresh() -> None:
    r = subprocess.run([sys.executable, str(ROOT / "scripts/gen_protos.py"), "--check"], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
