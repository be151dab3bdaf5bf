"""Fine-tuning jobs end to end: dataset and trainer services on real gRPC, a real nats-server (events, work queue,
control bucket), trainer workers as separate processes, and a backend from a separately installed package."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import struct_pb2

from tunery.common.v1 import common_pb2
from tunery.dataset.v1 import dataset_pb2 as dpb
from tunery.dataset.v1 import dataset_pb2_grpc
from tunery.errors import FailedPrecondition, InvalidArgument, NotFound, TuneryError
from tunery.runtime import client
from tunery.runtime.grpcerrors import from_rpc_error
from tunery.runtime.natsd import free_port
from tunery.testing import EventLog, LoopThread, nats_server
from tunery.trainer.v1 import trainer_pb2 as pb
from tunery.trainer.v1 import trainer_pb2_grpc
from tunery_dataset.app import start as start_dataset
from tunery_dataset.settings import DatasetSettings
from tunery_trainer.app import start as start_trainer
from tunery_trainer.settings import TrainerSettings

ACK_WAIT = 3.0
S = common_pb2


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


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    from tunery.testing import build_tiny_llama

    tmp = tmp_path_factory.mktemp("stack")
    # Artifacts on a small tmpfs of their own (where mounting is allowed, as root here and in CI): the disk-full test
    # fills it for real.
    artifacts = tmp / "artifacts"
    artifacts.mkdir()
    mounted = (
        subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(artifacts)], capture_output=True
        ).returncode
        == 0
    )
    loop = LoopThread()
    with nats_server(tmp) as nats:
        ds_port, tr_port = free_port(), free_port()
        ds_app = loop.run(
            start_dataset(DatasetSettings(data_dir=tmp, nats_url=nats.url, port=ds_port, database_url=""))
        )
        tr_app = loop.run(
            start_trainer(
                TrainerSettings(
                    data_dir=tmp,
                    nats_url=nats.url,
                    port=tr_port,
                    database_url="",
                    dataset_addr=f"127.0.0.1:{ds_port}",
                    ack_wait_seconds=ACK_WAIT,
                    max_deliver=3,
                )
            )
        )
        tiny = build_tiny_llama(tmp / "tiny-llama", data_dir=tmp)
        chans = [client.channel(f"127.0.0.1:{p}", timeout=60) for p in (ds_port, tr_port)]
        try:
            yield Stack(
                tmp,
                nats.url,
                dataset_pb2_grpc.DatasetServiceStub(chans[0]),
                trainer_pb2_grpc.TrainerServiceStub(chans[1]),
                f"127.0.0.1:{ds_port}",
                tiny,
                loop,
                mounted,
                nats,
            )
        finally:
            for ch in chans:
                ch.close()
            loop.run(tr_app.stop())
            loop.run(ds_app.stop())
            loop.close()
            if mounted:
                subprocess.run(["umount", "-l", str(artifacts)], check=False)


class Workers:
    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, **env: str) -> subprocess.Popen[bytes]:
        log = (self.stack.data_dir / f"worker-{uuid.uuid4().hex[:6]}.log").open("wb")
        proc = subprocess.Popen(
            [sys.executable, "-m", "tunery_trainer.worker"],
            env={**self.stack.worker_env(), **env},
            stdout=log,
            stderr=log,
        )
        self.procs.append(proc)
        return proc

    def by_name(self, name: str) -> subprocess.Popen[bytes]:
        return next(p for p in self.procs if name.endswith(f"-{p.pid}"))

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


@pytest.fixture(scope="module")
def workers(stack: Stack) -> Iterator[Workers]:
    """Two workers for the whole module (starting one costs seconds of imports)."""
    w = Workers(stack)
    w.start()
    w.start()
    yield w
    w.stop_all()


def chat(i: int) -> dict[str, Any]:
    return {
        "messages": [
            {"role": "system", "content": "Answer with the number doubled."},
            {"role": "user", "content": f"{i}?"},
            {"role": "assistant", "content": f"{2 * i}."},
        ]
    }


def make_version(stack: Stack, n: int = 24, freeze: bool = True) -> str:
    name = f"jobs-{uuid.uuid4().hex[:8]}"
    stack.dataset.CreateDataset(dpb.CreateDatasetRequest(name=name))
    data = b"".join(json.dumps(chat(i)).encode() + b"\n" for i in range(n))
    stack.dataset.UploadExamples(
        iter([dpb.UploadExamplesRequest(header=dpb.UploadHeader(dataset=name)), dpb.UploadExamplesRequest(chunk=data)])
    )
    if freeze:
        stack.dataset.FreezeVersion(dpb.FreezeVersionRequest(dataset=name))
    return name


def spec(
    stack: Stack,
    dataset: str,
    *,
    version: int = 1,
    backend: str = "echo",
    config: dict[str, Any] | None = None,
    **kw: Any,
) -> pb.JobSpec:
    cfg = struct_pb2.Struct()
    cfg.update(config or {})
    hp = kw.pop("hyperparameters", pb.Hyperparameters(n_epochs=2, batch_size=4))
    return pb.JobSpec(
        base_model=kw.pop("base_model", str(stack.tiny_model)),
        backend=backend,
        backend_config=cfg,
        training_data=pb.DatasetRef(dataset=dataset, version=version),
        hyperparameters=hp,
        **kw,
    )


def create(stack: Stack, s: pb.JobSpec) -> pb.Job:
    return stack.trainer.CreateJob(pb.CreateJobRequest(spec=s)).job


def error_of(fn: Callable[[], Any]) -> TuneryError:
    with pytest.raises(grpc.RpcError) as info:
        fn()
    return from_rpc_error(info.value)


def wait_state(stack: Stack, job_id: str, *wanted: int, timeout: float = 90) -> pb.Job:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = stack.trainer.GetJob(pb.GetJobRequest(job_id=job_id)).job
        if job.state in wanted:
            return job
        time.sleep(0.1)
    raise AssertionError(f"job {job_id} is {common_pb2.JobState.Name(job.state)}, wanted {wanted}: {job}")


def all_events(stack: Stack, job_id: str) -> list[pb.JobEvent]:
    return [r.event for r in stack.trainer.StreamJobEvents(pb.StreamJobEventsRequest(job_id=job_id, no_follow=True))]


def steps_of(events: list[pb.JobEvent]) -> list[int]:
    return [e.step.step for e in events if e.WhichOneof("data") == "step"]


# ---- catalog ---------------------------------------------------------------------------------------------------------
def test_backends_and_models_are_listed(stack: Stack) -> None:
    backends = {b.name: b for b in stack.trainer.ListBackends(pb.ListBackendsRequest()).backends}
    assert {"echo", "peft", "trl"} <= set(backends)
    echo = backends["echo"]
    assert echo.provided_by == "tunery-echo-backend"
    assert {f.name for f in echo.config} == {"step_seconds", "fail_at_step", "crash_at_step"}
    assert all(f.help for f in echo.config)
    assert all(f.help for b in backends.values() for f in b.config), "every config field is documented"
    assert pb.METHOD_DPO in backends["trl"].methods
    models = stack.trainer.ListBaseModels(pb.ListBaseModelsRequest()).models
    assert [(m.name, m.default, m.context_length) for m in models if m.default] == [
        ("smollm2-135m-instruct", True, 8192)
    ]


# ---- bad input -------------------------------------------------------------------------------------------------------
def test_bad_specs_get_clear_errors(stack: Stack) -> None:
    ds = make_version(stack)
    small = make_version(stack, n=6)
    draft = make_version(stack, n=20, freeze=False)
    H = pb.Hyperparameters
    cases: list[tuple[pb.JobSpec, type[TuneryError], str, str]] = [
        (spec(stack, ds, base_model="no-such-model"), NotFound, "model_not_found", "base_model"),
        (spec(stack, ds, version=7), NotFound, "version_not_found", "training_data.version"),
        (spec(stack, "nope-" + ds), NotFound, "dataset_not_found", "training_data.version"),
        (spec(stack, draft, version=0), InvalidArgument, "draft_not_allowed", "training_data.version"),
        (spec(stack, small), FailedPrecondition, "too_few_examples", "training_data"),
        (
            spec(stack, ds, hyperparameters=H(learning_rate=0)),
            InvalidArgument,
            "invalid_learning_rate",
            "hyperparameters.learning_rate",
        ),
        (
            spec(stack, ds, hyperparameters=H(learning_rate=-1e-4)),
            InvalidArgument,
            "invalid_learning_rate",
            "hyperparameters.learning_rate",
        ),
        (
            spec(stack, ds, hyperparameters=H(learning_rate=float("nan"))),
            InvalidArgument,
            "invalid_learning_rate",
            "hyperparameters.learning_rate",
        ),
        (
            spec(stack, ds, hyperparameters=H(batch_size=0)),
            InvalidArgument,
            "invalid_batch_size",
            "hyperparameters.batch_size",
        ),
        (
            spec(stack, ds, hyperparameters=H(n_epochs=0)),
            InvalidArgument,
            "invalid_n_epochs",
            "hyperparameters.n_epochs",
        ),
        (
            spec(stack, ds, hyperparameters=H(n_epochs=1000)),
            InvalidArgument,
            "invalid_n_epochs",
            "hyperparameters.n_epochs",
        ),
        (spec(stack, ds, lora=pb.LoraConfig(rank=0)), InvalidArgument, "invalid_lora_rank", "lora.rank"),
        (spec(stack, ds, backend="deepspeed-magic"), InvalidArgument, "unknown_backend", "backend"),
        (spec(stack, ds, config={"turbo": True}), InvalidArgument, "unknown_backend_config", "backend_config.turbo"),
        (
            spec(stack, ds, config={"step_seconds": "fast"}),
            InvalidArgument,
            "invalid_backend_config",
            "backend_config.step_seconds",
        ),
        (spec(stack, ds, max_seq_length=4096), InvalidArgument, "invalid_max_seq_length", "max_seq_length"),
        (spec(stack, ds, suffix="Bad Suffix!"), InvalidArgument, "invalid_suffix", "suffix"),
        (spec(stack, ds, validation_split=1.5), InvalidArgument, "invalid_validation_split", "validation_split"),
    ]
    for s, kind, code, field in cases:
        err = error_of(lambda s=s: create(stack, s))  # type: ignore[misc]
        assert (type(err), err.code, err.field) == (kind, code, field), (err, s)
        assert err.message
    unknown = error_of(lambda: create(stack, spec(stack, ds, backend="deepspeed-magic")))
    assert "valid: echo" in unknown.message  # the valid ones are listed
    missing = error_of(lambda: stack.trainer.CreateJob(pb.CreateJobRequest()))
    assert missing.field == "spec"
    assert stack.trainer.ListJobs(pb.ListJobsRequest(dataset=small)).page.total_size == 0, "nothing half-created"


# ---- the happy path, with events from NATS and from the store --------------------------------------------------------
def test_job_runs_through_the_queue(stack: Stack, workers: Workers) -> None:
    ds = make_version(stack)
    log = EventLog(stack.loop, stack.nats_url, "tunery.events.job.>")
    try:
        s = spec(stack, ds, suffix="doubler", idempotency_key=f"k-{uuid.uuid4().hex}", validation_split=0.25)
        job = create(stack, s)
        again = stack.trainer.CreateJob(pb.CreateJobRequest(spec=s))
        assert again.existing and again.job.id == job.id, "same idempotency key, same job"
        assert job.fine_tuned_model == f"ft:tiny-llama:doubler:{job.id}"
        assert job.state == S.JOB_STATE_VALIDATING_FILES
        assert job.resolved_hyperparameters.learning_rate == pytest.approx(2e-4)
        done = wait_state(stack, job.id, S.JOB_STATE_SUCCEEDED, S.JOB_STATE_FAILED)
        assert done.state == S.JOB_STATE_SUCCEEDED, done.error
        assert done.step == done.total_steps == 10  # 18 train examples / 4 per batch = 5 steps x 2 epochs
        assert (stack.data_dir / "artifacts" / done.adapter_path / "adapter_model.safetensors").exists()
        assert done.metrics.valid_token_accuracy > 0 and done.attempts == 1
        events = all_events(stack, job.id)
        assert [e.sequence for e in events] == list(range(1, len(events) + 1)), "gap-free, in order"
        states = [e.state_change.to_state for e in events if e.WhichOneof("data") == "state_change"]
        assert states == [S.JOB_STATE_VALIDATING_FILES, S.JOB_STATE_QUEUED, S.JOB_STATE_RUNNING, S.JOB_STATE_SUCCEEDED]
        assert steps_of(events) == list(range(1, 11))
        later = list(stack.trainer.StreamJobEvents(pb.StreamJobEventsRequest(job_id=job.id, after_sequence=5)))
        assert [r.event.sequence for r in later] == list(range(6, len(events) + 1))
        log.wait_for("job.event", job.id)
        assert {e[1].resource_id for e in log.items} == {job.id}
        assert len(stack.trainer.ListCheckpoints(pb.ListCheckpointsRequest(job_id=job.id)).checkpoints) >= 2
        listed = stack.trainer.ListJobs(pb.ListJobsRequest(dataset=ds, state=S.JOB_STATE_SUCCEEDED))
        assert [j.id for j in listed.jobs] == [job.id]
        v = stack.dataset.GetVersion(dpb.GetVersionRequest(dataset=ds, version=1)).version
        assert f"job:{job.id}" in v.references
        in_use = error_of(lambda: stack.dataset.DeleteVersion(dpb.DeleteVersionRequest(dataset=ds, version=1)))
        assert isinstance(in_use, FailedPrecondition)
        finished = error_of(lambda: stack.trainer.CancelJob(pb.CancelJobRequest(job_id=job.id)))
        assert isinstance(finished, FailedPrecondition) and "succeeded" in finished.message
    finally:
        log.close()


def test_follow_streams_live_until_the_end(stack: Stack, workers: Workers) -> None:
    job = create(stack, spec(stack, make_version(stack), config={"step_seconds": 0.05}))
    seen = [r.event for r in stack.trainer.StreamJobEvents(pb.StreamJobEventsRequest(job_id=job.id), timeout=120)]
    assert seen[-1].state_change.to_state == S.JOB_STATE_SUCCEEDED
    assert steps_of(seen) == list(range(1, 13))


def test_cancel_stops_within_seconds_and_keeps_checkpoints(stack: Stack, workers: Workers) -> None:
    job = create(
        stack,
        spec(
            stack,
            make_version(stack),
            config={"step_seconds": 0.3},
            checkpoint_every_steps=2,
            hyperparameters=pb.Hyperparameters(n_epochs=10, batch_size=4),
        ),
    )
    deadline = time.monotonic() + 60
    while stack.trainer.GetJob(pb.GetJobRequest(job_id=job.id)).job.step < 3 and time.monotonic() < deadline:
        time.sleep(0.1)
    cancelled = stack.trainer.CancelJob(pb.CancelJobRequest(job_id=job.id)).job
    assert cancelled.state == S.JOB_STATE_CANCELLED
    asked = time.time()
    # the worker notices within a heartbeat and a step, says so, and trains no further
    stopped: list[pb.JobEvent] = []
    deadline = time.monotonic() + 30
    while not stopped and time.monotonic() < deadline:
        events = all_events(stack, job.id)
        stopped = [e for e in events if "stopped the job (cancelled)" in e.message]
        time.sleep(0.2)
    assert stopped, [e.message for e in events][-8:]
    assert stopped[0].time.ToDatetime().timestamp() - asked < 5, "stopped within seconds"
    after = events[events.index(stopped[0]) :]
    assert not steps_of(after), "no step after the stop"
    assert max(steps_of(events)) < 60
    assert stack.trainer.ListCheckpoints(pb.ListCheckpointsRequest(job_id=job.id)).checkpoints
    again = error_of(lambda: stack.trainer.CancelJob(pb.CancelJobRequest(job_id=job.id)))
    assert isinstance(again, FailedPrecondition)


def test_pause_and_resume_continue_from_the_checkpoint(stack: Stack, workers: Workers) -> None:
    job = create(
        stack,
        spec(
            stack,
            make_version(stack),
            config={"step_seconds": 0.2},
            hyperparameters=pb.Hyperparameters(n_epochs=4, batch_size=4),
        ),
    )
    wait_state(stack, job.id, S.JOB_STATE_RUNNING)
    while stack.trainer.GetJob(pb.GetJobRequest(job_id=job.id)).job.step < 2:
        time.sleep(0.05)
    paused = stack.trainer.PauseJob(pb.PauseJobRequest(job_id=job.id)).job
    assert paused.state == S.JOB_STATE_PAUSED
    not_running = error_of(lambda: stack.trainer.PauseJob(pb.PauseJobRequest(job_id=job.id)))
    assert isinstance(not_running, FailedPrecondition)
    time.sleep(2.5)  # the worker checkpoints and lets go
    resumed = stack.trainer.ResumeJob(pb.ResumeJobRequest(job_id=job.id)).job
    assert resumed.state == S.JOB_STATE_QUEUED
    running = error_of(lambda: stack.trainer.ResumeJob(pb.ResumeJobRequest(job_id=job.id)))
    assert isinstance(running, FailedPrecondition)
    done = wait_state(stack, job.id, S.JOB_STATE_SUCCEEDED, S.JOB_STATE_FAILED)
    assert done.state == S.JOB_STATE_SUCCEEDED and done.step == 24
    steps = steps_of(all_events(stack, job.id))
    assert steps[-1] == 24 and sorted(set(steps)) == list(range(1, 25)), "no step skipped"


def test_a_failing_job_ends_failed_after_max_deliver(stack: Stack, workers: Workers) -> None:
    job = create(stack, spec(stack, make_version(stack), config={"fail_at_step": 3}))
    done = wait_state(stack, job.id, S.JOB_STATE_FAILED, S.JOB_STATE_SUCCEEDED, timeout=60)
    assert done.state == S.JOB_STATE_FAILED
    assert done.error.code == "training_error" and "fail at step 3" in done.error.message
    assert done.attempts == 3
    retries = [e for e in all_events(stack, job.id) if "retrying" in e.message]
    assert len(retries) == 2


def test_sigkill_mid_job_resumes_on_another_worker(stack: Stack, workers: Workers) -> None:
    job = create(
        stack,
        spec(
            stack,
            make_version(stack),
            config={"step_seconds": 0.25},
            checkpoint_every_steps=3,
            hyperparameters=pb.Hyperparameters(n_epochs=3, batch_size=4),
        ),
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        cks = stack.trainer.ListCheckpoints(pb.ListCheckpointsRequest(job_id=job.id)).checkpoints
        if any(c.step >= 6 for c in cks):
            break
        time.sleep(0.1)
    running = stack.trainer.GetJob(pb.GetJobRequest(job_id=job.id)).job
    first = workers.by_name(running.worker)
    first.send_signal(signal.SIGKILL)
    first.wait(10)
    killed_at = stack.trainer.GetJob(pb.GetJobRequest(job_id=job.id)).job.step
    workers.start()  # a replacement; the surviving worker may take the job first
    done = wait_state(stack, job.id, S.JOB_STATE_SUCCEEDED, S.JOB_STATE_FAILED, timeout=90)
    assert done.state == S.JOB_STATE_SUCCEEDED and done.step == done.total_steps == 18
    assert done.attempts == 2
    events = all_events(stack, job.id)
    steps = steps_of(events)
    resumed = [e for e in events if e.message.startswith("resuming at step")]
    assert resumed, "the second worker resumed from a checkpoint"
    resume_step = int(resumed[0].message.split()[3])
    assert resume_step - 1 in {
        c.step for c in stack.trainer.ListCheckpoints(pb.ListCheckpointsRequest(job_id=job.id)).checkpoints
    }
    assert resume_step <= killed_at + 1
    assert sorted(set(steps)) == list(range(1, 19)), "continuous steps"


def test_disk_full_while_checkpointing_fails_clearly(stack: Stack, workers: Workers) -> None:
    if not stack.artifacts_on_tmpfs:
        pytest.skip("cannot mount a small tmpfs here (needs root)")
    job = create(
        stack,
        spec(
            stack,
            make_version(stack),
            config={"step_seconds": 0.3},
            checkpoint_every_steps=2,
            hyperparameters=pb.Hyperparameters(n_epochs=10, batch_size=4),
        ),
    )
    deadline = time.monotonic() + 60
    while not stack.trainer.ListCheckpoints(pb.ListCheckpointsRequest(job_id=job.id)).checkpoints:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    first = stack.trainer.ListCheckpoints(pb.ListCheckpointsRequest(job_id=job.id)).checkpoints[0]
    filler = stack.data_dir / "artifacts" / "filler"
    try:
        with filler.open("wb") as fh:  # fill the disk for real
            with pytest.raises(OSError):
                while True:
                    fh.write(b"\0" * (1 << 20))
                    fh.flush()
        done = wait_state(stack, job.id, S.JOB_STATE_FAILED, S.JOB_STATE_SUCCEEDED, timeout=60)
    finally:
        filler.unlink(missing_ok=True)
    assert done.state == S.JOB_STATE_FAILED
    assert done.error.code == "disk_full" and "earlier checkpoints are intact" in done.error.message
    assert done.attempts == 1, "a full disk is not retried in a loop"
    ckpt = stack.data_dir / "artifacts" / first.path
    assert (ckpt / "state.safetensors").stat().st_size > 0 and (ckpt / ".tunery-complete").exists()


def test_a_job_that_kills_its_workers_ends_failed(stack: Stack, workers: Workers) -> None:
    job = create(stack, spec(stack, make_version(stack), config={"crash_at_step": 2}))
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        state = stack.trainer.GetJob(pb.GetJobRequest(job_id=job.id)).job.state
        if state in (S.JOB_STATE_FAILED, S.JOB_STATE_SUCCEEDED):
            break
        alive = [p for p in workers.procs if p.poll() is None]
        if len(alive) < 2:
            workers.start()  # a supervisor restarts crashed workers; the job must not crash them forever
        time.sleep(0.2)
    done = stack.trainer.GetJob(pb.GetJobRequest(job_id=job.id)).job
    assert done.state == S.JOB_STATE_FAILED
    assert done.error.code == "worker_lost" and "3 times" in done.error.message
    assert done.attempts == 3


def test_a_nats_outage_mid_job_loses_nothing(stack: Stack, workers: Workers) -> None:
    job = create(
        stack,
        spec(
            stack,
            make_version(stack),
            config={"step_seconds": 0.2},
            checkpoint_every_steps=4,
            hyperparameters=pb.Hyperparameters(n_epochs=5, batch_size=4),
        ),
    )
    deadline = time.monotonic() + 60
    while stack.trainer.GetJob(pb.GetJobRequest(job_id=job.id)).job.step < 5:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    stack.nats.stop()  # every service and worker loses NATS; JetStream keeps its state on disk
    time.sleep(2)
    stack.nats.start()
    done = wait_state(stack, job.id, S.JOB_STATE_SUCCEEDED, S.JOB_STATE_FAILED, timeout=120)
    assert done.state == S.JOB_STATE_SUCCEEDED and done.step == done.total_steps == 30
    assert sorted(set(steps_of(all_events(stack, job.id)))) == list(range(1, 31)), "no event lost"


def test_peft_job_killed_mid_training_resumes_from_its_checkpoint(stack: Stack, workers: Workers) -> None:
    """The real backend: model, optimizer, scheduler, RNG and data position come back from the checkpoint."""
    job = create(
        stack,
        spec(
            stack,
            make_version(stack),
            backend="peft",
            checkpoint_every_steps=8,
            hyperparameters=pb.Hyperparameters(n_epochs=2, batch_size=1, learning_rate=1e-3),
        ),
    )
    deadline = time.monotonic() + 120
    while True:
        assert time.monotonic() < deadline, "no checkpoint in time"
        cks = stack.trainer.ListCheckpoints(pb.ListCheckpointsRequest(job_id=job.id)).checkpoints
        if cks:
            break
        time.sleep(0.02)
    running = stack.trainer.GetJob(pb.GetJobRequest(job_id=job.id)).job
    victim = workers.by_name(running.worker)
    victim.send_signal(signal.SIGSTOP)  # freeze at once, then kill: no chance to finish or clean up
    victim.send_signal(signal.SIGKILL)
    victim.wait(10)
    workers.start()
    done = wait_state(stack, job.id, S.JOB_STATE_SUCCEEDED, S.JOB_STATE_FAILED, timeout=180)
    assert done.state == S.JOB_STATE_SUCCEEDED, done.error
    assert done.step == done.total_steps == 48 and done.attempts == 2
    events = all_events(stack, job.id)
    resumed = [e for e in events if e.message.startswith("resuming at step")]
    assert resumed and int(resumed[0].message.split()[3]) - 1 in {8, 16, 24, 32, 40}
    assert sorted(set(steps_of(events))) == list(range(1, 49)), "continuous steps"
    losses = [e.step.train_loss for e in events if e.WhichOneof("data") == "step"]
    assert sum(losses[-24:]) / 24 < sum(losses[:24]) / 24, "the loss fell"
    adapter = stack.data_dir / "artifacts" / done.adapter_path
    assert (adapter / "adapter_model.safetensors").exists()
    assert json.loads((adapter / "tunery_metadata.json").read_text())["job_id"] == job.id


# ---- one job on several processes (torchrun, gloo on CPU) ------------------------------------------------------------
@pytest.fixture
def solo(stack: Stack, workers: Workers) -> Iterator[Workers]:
    """Workers of the test's own choosing: the module's workers stop for it and come back after it."""
    workers.stop_all()
    own = Workers(stack)
    try:
        yield own
    finally:
        own.stop_all()
        workers.procs.clear()
        workers.start()
        workers.start()


def rank_processes(job_id: str) -> list[int]:
    """Training ranks (and their launcher) still alive for this job."""
    import psutil

    out = []
    for p in psutil.process_iter(["cmdline"]):
        cmd = " ".join(p.info["cmdline"] or [])
        if "tunery_trainer.launch" in cmd and job_id in cmd:
            out.append(p.pid)
    return out


def peft_spec(stack: Stack, ds: str, **kw: Any) -> pb.JobSpec:
    return spec(
        stack,
        ds,
        backend="peft",
        lora=pb.LoraConfig(rank=8, dropout=0.0),  # no dropout: one and two processes compute the same thing
        hyperparameters=pb.Hyperparameters(n_epochs=2, batch_size=4, learning_rate=1e-3),
        **kw,
    )


def test_one_job_on_two_processes_trains_like_one(stack: Stack, solo: Workers) -> None:
    ds = make_version(stack, n=26)
    one = solo.start()
    single = create(stack, peft_spec(stack, ds, validation_split=0.25))
    a = wait_state(stack, single.id, S.JOB_STATE_SUCCEEDED, S.JOB_STATE_FAILED, timeout=180)
    assert a.state == S.JOB_STATE_SUCCEEDED, a.error
    one.terminate()
    one.wait(30)
    solo.start(TUNERY_TRAINER_PROCESSES_PER_JOB="2")
    ea = all_events(stack, single.id)
    # data parallel (each rank the whole model), then sharded (FSDP2 on gloo): both train like one process
    for config in ({}, {"fsdp": True}):
        double = create(stack, peft_spec(stack, ds, validation_split=0.25, checkpoint_every_steps=2, config=config))
        b = wait_state(stack, double.id, S.JOB_STATE_SUCCEEDED, S.JOB_STATE_FAILED, timeout=240)
        assert b.state == S.JOB_STATE_SUCCEEDED, (config, b.error)
        check_same_training(stack, a, ea, b)


def check_same_training(stack: Stack, a: pb.Job, ea: list[pb.JobEvent], b: pb.Job) -> None:
    eb = all_events(stack, b.id)
    assert any("training on 2 processes (torchrun, gloo)" in e.message for e in eb)
    assert not any("training on" in e.message for e in ea)
    assert [e.sequence for e in eb] == list(range(1, len(eb) + 1))
    assert steps_of(ea) == steps_of(eb) == list(range(1, b.total_steps + 1)) and b.total_steps == a.total_steps
    loss_a = [e.step.train_loss for e in ea if e.WhichOneof("data") == "step"]
    loss_b = [e.step.train_loss for e in eb if e.WhichOneof("data") == "step"]
    assert loss_b == pytest.approx(loss_a, rel=2e-3), "the same updates, split over two ranks"
    assert loss_b[-1] < loss_b[0]
    tokens = [sum(e.step.tokens for e in ev if e.WhichOneof("data") == "step") for ev in (ea, eb)]
    assert tokens[0] == tokens[1], "every example of every batch trained once, by one of the ranks"
    assert b.metrics.valid_loss == pytest.approx(a.metrics.valid_loss, rel=2e-3)
    assert b.metrics.valid_token_accuracy == pytest.approx(a.metrics.valid_token_accuracy, abs=1e-6)
    cks = stack.trainer.ListCheckpoints(pb.ListCheckpointsRequest(job_id=b.id)).checkpoints
    assert [c.step for c in cks][:2] == [2, 4], "checkpoints from rank 0, once each"
    adapter = stack.data_dir / "artifacts" / b.adapter_path
    meta = json.loads((adapter / "tunery_metadata.json").read_text())
    assert meta["metrics"]["processes"] == 2
    from safetensors.torch import load_file

    one = load_file(str(stack.data_dir / "artifacts" / a.adapter_path / "adapter_model.safetensors"))
    two = load_file(str(adapter / "adapter_model.safetensors"))
    assert one.keys() == two.keys() and all(two[k].shape == one[k].shape for k in one), "whole weights, not shards"
    assert not rank_processes(b.id), "the ranks exited with the job"


def test_a_killed_worker_takes_its_ranks_along_and_the_job_resumes(stack: Stack, solo: Workers) -> None:
    ds = make_version(stack, n=24)
    victim = solo.start(TUNERY_TRAINER_PROCESSES_PER_JOB="2")
    job = create(
        stack,
        spec(
            stack,
            ds,
            backend="peft",
            config={"fsdp": True},  # sharded: the resume cuts the saved whole optimizer state into shards again
            checkpoint_every_steps=3,
            hyperparameters=pb.Hyperparameters(n_epochs=3, batch_size=2, learning_rate=1e-3),
        ),
    )
    deadline = time.monotonic() + 180
    while not stack.trainer.ListCheckpoints(pb.ListCheckpointsRequest(job_id=job.id)).checkpoints:
        assert time.monotonic() < deadline, "no checkpoint in time"
        time.sleep(0.05)
    assert len(rank_processes(job.id)) >= 2
    victim.send_signal(signal.SIGKILL)
    victim.wait(10)
    deadline = time.monotonic() + 15
    while rank_processes(job.id):
        assert time.monotonic() < deadline, "training processes outlived their worker"
        time.sleep(0.1)
    solo.start(TUNERY_TRAINER_PROCESSES_PER_JOB="2")
    done = wait_state(stack, job.id, S.JOB_STATE_SUCCEEDED, S.JOB_STATE_FAILED, timeout=240)
    assert done.state == S.JOB_STATE_SUCCEEDED, done.error
    assert done.step == done.total_steps == 36 and done.attempts == 2
    events = all_events(stack, job.id)
    assert [e for e in events if e.message.startswith("resuming at step")]
    assert sorted(set(steps_of(events))) == list(range(1, 37)), "continuous steps"
