"""Upload + validation throughput of the dataset service, end to end, against a baseline in the same run.

Starts a real nats-server and the dataset service as its own process (SQLite in a temp folder), streams a generated
chat JSONL through the client-streaming UploadExamples RPC in 1 MiB chunks, and reports MB/s and the service's peak
RSS (VmHWM). Baseline, measured in the same run on the same file: reading it and `orjson.loads` of every line in one
process (the least any validating upload must do). Targets (issue 2): >= 20 MB/s end to end, peak RSS < 300 MB.

    python bench/bench_upload.py [--mb 100] [--keep FILE]
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).parent))
from gen_chat_jsonl import generate

from tunery.dataset.v1 import dataset_pb2 as pb
from tunery.dataset.v1 import dataset_pb2_grpc
from tunery.runtime.client import channel
from tunery.runtime.natsd import NatsServer, free_port, wait_port

CHUNK = 1 << 20


def vm_hwm_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def vm_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def baseline(path: Path) -> float:
    t0 = time.perf_counter()
    n = 0
    with path.open("rb") as fh:
        for line in fh:
            if line.strip():
                orjson.loads(line)
                n += 1
    return time.perf_counter() - t0


def requests(path: Path, dataset: str) -> Iterator[pb.UploadExamplesRequest]:
    yield pb.UploadExamplesRequest(
        header=pb.UploadHeader(dataset=dataset, filename=path.name, size_bytes=path.stat().st_size)
    )
    with path.open("rb") as fh:
        while chunk := fh.read(CHUNK):
            yield pb.UploadExamplesRequest(chunk=chunk)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mb", type=int, default=100)
    ap.add_argument("--keep", type=Path, default=None, help="reuse/keep the generated file here")
    ns = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp_s:
        tmp = Path(tmp_s)
        data = ns.keep or tmp / "chat.jsonl"
        if not data.exists() or data.stat().st_size < ns.mb * 1_000_000:
            print(f"generating {ns.mb} MB of chat JSONL ...", flush=True)
            generate(data, ns.mb * 1_000_000, seed=0)
        size_mb = data.stat().st_size / 1e6
        nats = NatsServer(tmp / "nats").start()
        port = free_port()
        env = {
            **os.environ,
            "TUNERY_DATA_DIR": str(tmp / "data"),
            "TUNERY_NATS_URL": nats.url,
            "TUNERY_DATASET_PORT": str(port),
            "TUNERY_DATASET_DATABASE_URL": "",
            "TUNERY_DATASET_LOG_LEVEL": "WARNING",
        }
        proc = subprocess.Popen([sys.executable, "-m", "tunery_dataset"], env=env, stdout=subprocess.DEVNULL)
        try:
            if not wait_port("127.0.0.1", port, 30):
                raise SystemExit("dataset service did not start")
            idle_rss = vm_rss_mb(proc.pid)
            base_s = baseline(data)
            stub = dataset_pb2_grpc.DatasetServiceStub(channel(f"127.0.0.1:{port}", timeout=600))
            ds = stub.CreateDataset(pb.CreateDatasetRequest(name="bench")).dataset
            t0 = time.perf_counter()
            r = stub.UploadExamples(requests(data, ds.id))
            up_s = time.perf_counter() - t0
            peak = vm_hwm_mb(proc.pid)
        finally:
            proc.terminate()
            proc.wait(30)
            nats.stop()
    mbps, base_mbps = size_mb / up_s, size_mb / base_s
    cpu = platform.processor() or platform.machine()
    print(f"\nupload benchmark  {date.today()}  {os.cpu_count()} cores  {cpu}  python {platform.python_version()}")
    print(f"  file                    {size_mb:8.1f} MB, {r.examples_added} examples")
    print(f"  baseline read+parse     {base_mbps:8.1f} MB/s  ({base_s:.2f} s)")
    print(f"  upload end to end       {mbps:8.1f} MB/s  ({up_s:.2f} s)   ratio to baseline {mbps / base_mbps:.2f}x")
    print(f"  target 20 MB/s          ratio {mbps / 20:.2f}x   {'PASS' if mbps >= 20 else 'FAIL'}")
    print(
        f"  service RSS idle / peak {idle_rss:8.1f} / {peak:.1f} MB   target < 300 MB: "
        f"{'PASS' if peak < 300 else 'FAIL'}"
    )
    return 0 if mbps >= 20 and peak < 300 else 1


if __name__ == "__main__":
    sys.exit(main())
