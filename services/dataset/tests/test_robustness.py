"""Bad input in bulk against the dataset service as its own process: it keeps answering and its memory stays flat."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from tunery.dataset.v1 import dataset_pb2 as pb
from tunery.dataset.v1 import dataset_pb2_grpc
from tunery.runtime import client
from tunery.runtime.grpcerrors import from_rpc_error
from tunery.runtime.natsd import free_port, wait_port
from tunery.testing import nats_server, wait_exit

GOOD = {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def upload(stub: dataset_pb2_grpc.DatasetServiceStub, ds: str, data: bytes, **header: object) -> None:
    def reqs() -> Iterator[pb.UploadExamplesRequest]:
        yield pb.UploadExamplesRequest(header=pb.UploadHeader(dataset=ds, filename="bad.jsonl", **header))  # type: ignore[arg-type]
        for i in range(0, len(data), 1 << 20):
            yield pb.UploadExamplesRequest(chunk=data[i : i + (1 << 20)])

    stub.UploadExamples(reqs())


BAD_FILES: list[bytes] = [
    b"",
    b"\n\n",
    b"\xff\xfe\x00garbage\n",
    b"[1, 2, 3]\n" * 500,
    (json.dumps({"messages": [{"role": "robot", "content": "x"}]}) + "\n").encode() * 2000,
    (
        json.dumps({"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "weight": 2, "content": "a"}]})
        + "\n"
    ).encode()
    * 2000,
    json.dumps(GOOD).encode() + b"\n" + b'{"messages": [{"role": "user", "content": "trunc',
    b'{"messages": [{"role": "user", "content": "' + b"x" * (9 * 1024 * 1024) + b'"}]}\n',
]


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    tmp = tmp_path_factory.mktemp("robust")
    with nats_server(tmp) as nats:
        port = free_port()
        env = {
            **os.environ,
            "TUNERY_DATA_DIR": str(tmp),
            "TUNERY_NATS_URL": nats.url,
            "TUNERY_DATASET_PORT": str(port),
            "TUNERY_DATASET_LOG_LEVEL": "WARNING",
        }
        env.pop("TUNERY_DATABASE_URL", None)
        proc = subprocess.Popen([sys.executable, "-m", "tunery_dataset"], env=env, stdout=subprocess.DEVNULL)
        try:
            assert wait_port("127.0.0.1", port, 30)
            yield proc, f"127.0.0.1:{port}"
        finally:
            proc.terminate()
            wait_exit(proc, "the dataset service")


def test_bad_input_in_bulk_neither_crashes_nor_leaks(service: tuple[subprocess.Popen[bytes], str]) -> None:
    proc, addr = service
    ch = client.channel(addr, timeout=60)
    stub = dataset_pb2_grpc.DatasetServiceStub(ch)
    ds = stub.CreateDataset(pb.CreateDatasetRequest(name="robust")).dataset.id

    def round_of_bad_input() -> None:
        for data in BAD_FILES:
            with pytest.raises(grpc.RpcError) as info:
                upload(stub, ds, data)
            assert info.value.code() in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.RESOURCE_EXHAUSTED)
        with pytest.raises(grpc.RpcError) as info:
            upload(stub, ds, b"", size_bytes=10**12)
        assert from_rpc_error(info.value).code == "file_too_large"
        for name in ("../x", "a\x00b", "\x1b[31m", ""):
            with pytest.raises(grpc.RpcError):
                stub.CreateDataset(pb.CreateDatasetRequest(name=name))
        with pytest.raises(grpc.RpcError):
            stub.AddExample(pb.AddExampleRequest(dataset=ds, json="{"))

    round_of_bad_input()  # warm-up: allocator arenas, caches
    round_of_bad_input()
    before = rss_mb(proc.pid)
    for _ in range(4):
        round_of_bad_input()
    after = rss_mb(proc.pid)
    print(f"RSS {before:.1f} -> {after:.1f} MB")
    assert proc.poll() is None, "the service is still running"
    assert after - before < 40, f"RSS grew from {before:.0f} MB to {after:.0f} MB over 4 rounds of bad input"
    assert stub.GetDataset(pb.GetDatasetRequest(dataset=ds)).dataset.draft_example_count == 0, "nothing was stored"
    upload(stub, ds, json.dumps(GOOD).encode() + b"\n")  # and good input still works
    assert stub.GetDataset(pb.GetDatasetRequest(dataset=ds)).dataset.draft_example_count == 1
    ch.close()
