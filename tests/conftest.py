"""The stack of the trainer job tests (tests/test_trainer_jobs_*.py): dataset and trainer services on real gRPC, a
real nats-server (events, work queue, control bucket), trainer workers as separate processes, and a backend from a
separately installed package. One stack for the session (starting one costs seconds); test_cli*.py bring stacks of
their own (module fixtures that are also called `stack`, which take precedence there).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import struct_pb2

from tunery.common.v1 import common_pb2
from tunery.dataset.v1 import dataset_pb2 as dpb
from tunery.dataset.v1 import dataset_pb2_grpc
from tunery.errors import TuneryError
from tunery.runtime.grpcerrors import from_rpc_error
from tunery.testing import LoopThread
from tunery.trainer.v1 import trainer_pb2 as pb
from tunery.trainer.v1 import trainer_pb2_grpc

sys.path.insert(0, str(Path(__file__).parent))  # the helper modules beside this file (importlib import mode)
from evalstack import Evaluation, evaluation_side

ACK_WAIT = 3.0
EVALUATOR_RETRY = 3.0
"""How long the trainer keeps trying an evaluator that does not answer before it records the evaluation's error."""
MODEL_WAIT = 10.0
"""How long it waits for the gateway to serve a succeeded job's model (the gateway takes well under a second)."""


def chat(i: int) -> dict[str, Any]:
    return {
        "messages": [
            {"role": "system", "content": "Answer with the number doubled."},
            {"role": "user", "content": f"{i}?"},
            {"role": "assistant", "content": f"{2 * i}."},
        ]
    }


@dataclass
class Stack:
    data_dir: Path
    nats_url: str
    dataset: dataset_pb2_grpc.DatasetServiceStub
    trainer: trainer_pb2_grpc.TrainerServiceStub
    dataset_addr: str
    tiny_model: Path
    loop: LoopThread
    artifacts_on_tmpfs: bool = False
    nats: Any = None
    trainer_app: Any = None
    # Where the trainer finds the evaluator (jobs with spec.evaluation); nothing listens there until a test starts
    # one (tests/test_trainer_evaluation.py, tests/test_cli_evals.py).
    evaluator_addr: str = ""

    def worker_env(self) -> dict[str, str]:
        env = {
            **os.environ,
            "TUNERY_DATA_DIR": str(self.data_dir),
            "TUNERY_NATS_URL": self.nats_url,
            "TUNERY_TRAINER_ACK_WAIT_SECONDS": str(ACK_WAIT),
            "TUNERY_TRAINER_MAX_DELIVER": "3",
            "TUNERY_TRAINER_LOG_LEVEL": "INFO",
        }
        env.pop("TUNERY_DATABASE_URL", None)
        return env

    # ---- datasets and jobs ----------------------------------------------------------------------------------------
    def make_version(self, n: int = 24, freeze: bool = True) -> str:
        name = f"jobs-{uuid.uuid4().hex[:8]}"
        self.dataset.CreateDataset(dpb.CreateDatasetRequest(name=name))
        data = b"".join(json.dumps(chat(i)).encode() + b"\n" for i in range(n))
        header = dpb.UploadExamplesRequest(header=dpb.UploadHeader(dataset=name))
        self.dataset.UploadExamples(iter([header, dpb.UploadExamplesRequest(chunk=data)]))
        if freeze:
            self.dataset.FreezeVersion(dpb.FreezeVersionRequest(dataset=name))
        return name

    def spec(
        self, dataset: str, *, version: int = 1, backend: str = "echo", config: dict[str, Any] | None = None, **kw: Any
    ) -> pb.JobSpec:
        cfg = struct_pb2.Struct()
        cfg.update(config or {})
        hp = kw.pop("hyperparameters", pb.Hyperparameters(n_epochs=2, batch_size=4))
        return pb.JobSpec(
            base_model=kw.pop("base_model", str(self.tiny_model)),
            backend=backend,
            backend_config=cfg,
            training_data=pb.DatasetRef(dataset=dataset, version=version),
            hyperparameters=hp,
            **kw,
        )

    def create(self, s: pb.JobSpec) -> pb.Job:
        return self.trainer.CreateJob(pb.CreateJobRequest(spec=s)).job

    def slow_job(self, step_seconds: float, n_epochs: int, checkpoint_every_steps: int = 0) -> pb.Job:
        """An echo-backend job on a fresh version (6 steps an epoch) slow enough to act on while it runs."""
        hp = pb.Hyperparameters(n_epochs=n_epochs, batch_size=4)
        config = {"step_seconds": step_seconds}
        spec = self.spec(self.make_version(), config=config, checkpoint_every_steps=checkpoint_every_steps,
                         hyperparameters=hp)  # fmt: skip
        return self.create(spec)

    def job(self, job_id: str) -> pb.Job:
        return self.trainer.GetJob(pb.GetJobRequest(job_id=job_id)).job

    def checkpoints(self, job_id: str) -> list[pb.Checkpoint]:
        return list(self.trainer.ListCheckpoints(pb.ListCheckpointsRequest(job_id=job_id)).checkpoints)

    def events(self, job_id: str) -> list[pb.JobEvent]:
        """The job's stored events, as they are now."""
        request = pb.StreamJobEventsRequest(job_id=job_id, no_follow=True)
        return [r.event for r in self.trainer.StreamJobEvents(request)]

    @staticmethod
    def steps_of(events: list[pb.JobEvent]) -> list[int]:
        return [e.step.step for e in events if e.WhichOneof("data") == "step"]

    @staticmethod
    def error_of(fn: Callable[[], Any]) -> TuneryError:
        """The error a gRPC call raises, as the tunery.errors exception it stands for."""
        with pytest.raises(grpc.RpcError) as info:
            fn()
        return from_rpc_error(info.value)

    # ---- waiting for what can be observed -------------------------------------------------------------------------
    def wait_until(self, what: str, check: Callable[[], Any], timeout: float = 60, poll: float = 0.1) -> Any:
        """Poll `check` until it returns something true, and return that."""
        deadline = time.monotonic() + timeout
        while True:
            got = check()
            if got:
                return got
            if time.monotonic() > deadline:
                raise AssertionError(f"not within {timeout} s: {what}")
            time.sleep(poll)

    def wait_state(self, job_id: str, *wanted: int, timeout: float = 90) -> pb.Job:
        deadline = time.monotonic() + timeout
        while (job := self.job(job_id)).state not in wanted:
            if time.monotonic() > deadline:
                raise AssertionError(f"job {job_id} is {common_pb2.JobState.Name(job.state)}, wanted {wanted}: {job}")
            time.sleep(0.1)
        return job

    def wait_event(self, job_id: str, text: str, timeout: float = 60) -> pb.JobEvent:
        """The first event of the job whose message contains `text`, once it is stored."""

        def found() -> pb.JobEvent | None:
            return next((e for e in self.events(job_id) if text in e.message), None)

        return self.wait_until(f"an event {text!r} of job {job_id}", found, timeout, poll=0.05)  # type: ignore[no-any-return]

    def wait_step(self, job_id: str, step: int, timeout: float = 60) -> pb.Job:
        return self.wait_until(  # type: ignore[no-any-return]
            f"job {job_id} at step {step}", lambda: (j := self.job(job_id)).step >= step and j, timeout
        )

    def wait_checkpoint(self, job_id: str, step: int = 0, timeout: float = 60) -> list[pb.Checkpoint]:
        """The job's checkpoints once one at `step` or later is recorded."""
        return self.wait_until(  # type: ignore[no-any-return]
            f"a checkpoint of job {job_id} at step {step} or later",
            lambda: (cks := self.checkpoints(job_id)) and any(c.step >= step for c in cks) and cks,
            timeout,
            poll=0.02,
        )


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    from tunery.runtime import client
    from tunery.runtime.natsd import free_port
    from tunery.testing import build_tiny_llama, nats_server
    from tunery_dataset.app import start as start_dataset
    from tunery_dataset.settings import DatasetSettings
    from tunery_trainer.app import start as start_trainer
    from tunery_trainer.settings import TrainerSettings

    tmp = tmp_path_factory.mktemp("stack")
    # Artifacts on a small tmpfs of their own (where mounting is allowed, as root here and in CI): the disk-full test
    # fills it for real.
    artifacts = tmp / "artifacts"
    artifacts.mkdir()
    mount = ["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(artifacts)]
    mounted = subprocess.run(mount, capture_output=True).returncode == 0
    loop = LoopThread()
    with nats_server(tmp) as nats:
        ds_port, tr_port, ev_port = free_port(), free_port(), free_port()
        ds_settings = DatasetSettings(data_dir=tmp, nats_url=nats.url, port=ds_port, database_url="")
        ds_app = loop.run(start_dataset(ds_settings))
        tr_settings = TrainerSettings(
            data_dir=tmp,
            nats_url=nats.url,
            port=tr_port,
            database_url="",
            dataset_addr=f"127.0.0.1:{ds_port}",
            ack_wait_seconds=ACK_WAIT,
            max_deliver=3,
            evaluator_addr=f"127.0.0.1:{ev_port}",
            evaluator_retry_seconds=EVALUATOR_RETRY,
            evaluation_model_wait_seconds=MODEL_WAIT,
            evaluation_poll_seconds=2,
        )
        tr_app = loop.run(start_trainer(tr_settings))
        tiny = build_tiny_llama(tmp / "tiny-llama", data_dir=tmp)
        chans = [client.channel(f"127.0.0.1:{p}", timeout=60) for p in (ds_port, tr_port)]
        s = Stack(
            tmp,
            nats.url,
            dataset_pb2_grpc.DatasetServiceStub(chans[0]),
            trainer_pb2_grpc.TrainerServiceStub(chans[1]),
            f"127.0.0.1:{ds_port}",
            tiny,
            loop,
            mounted,
            nats,
            tr_app,
            f"127.0.0.1:{ev_port}",
        )
        try:
            yield s
        finally:
            for ch in chans:
                ch.close()
            loop.run(s.trainer_app.stop())  # a test may have restarted it (test_trainer_evaluation.py)
            loop.run(ds_app.stop())
            loop.close()
            if mounted:
                subprocess.run(["umount", "-l", str(artifacts)], check=False)


@dataclass
class Workers:
    stack: Stack
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    logs: dict[int, Path] = field(default_factory=dict)

    def start(self, **env: str) -> subprocess.Popen[bytes]:
        path = self.stack.data_dir / f"worker-{uuid.uuid4().hex[:6]}.log"
        with path.open("wb") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "tunery_trainer.worker"],
                env={**self.stack.worker_env(), **env},
                stdout=log,
                stderr=log,
            )
        self.procs.append(proc)
        self.logs[proc.pid] = path
        return proc

    def by_name(self, name: str) -> subprocess.Popen[bytes]:
        return next(p for p in self.procs if name.endswith(f"-{p.pid}"))

    def log_of(self, proc: subprocess.Popen[bytes]) -> str:
        return self.logs[proc.pid].read_text(errors="replace")

    def stop_all(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.terminate()
        for p in self.procs:
            try:
                p.wait(20)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


@pytest.fixture(scope="session")
def workers(stack: Stack) -> Iterator[Workers]:
    """Two workers for the whole session (starting one costs seconds of imports)."""
    w = Workers(stack)
    w.start()
    w.start()
    yield w
    w.stop_all()


@pytest.fixture
def solo(stack: Stack, workers: Workers) -> Iterator[Workers]:
    """Workers of the test's own choosing: the session's workers stop for it and come back after it."""
    workers.stop_all()
    own = Workers(stack)
    try:
        yield own
    finally:
        own.stop_all()
        workers.procs.clear()
        workers.start()
        workers.start()


# ---- the evaluation side: a gateway serving the tiny model and an adapter, and an evaluator (tests/evalstack.py) ---
@pytest.fixture(scope="session")
def evaluation(stack: Stack) -> Iterator[Evaluation]:
    """One for the session: tests/test_evaluator_*.py, test_cli_evals.py and test_trainer_evaluation.py share it."""
    with evaluation_side(stack) as ev:
        yield ev
