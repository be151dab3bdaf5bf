"""Trainer jobs through the API: the catalog, clear errors for bad specs, the happy path through the queue with
its events (from NATS and from the store), and following a job live. The stack is in tests/conftest.py."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

import pytest

from tunery.common.v1 import common_pb2 as S
from tunery.dataset.v1 import dataset_pb2 as dpb
from tunery.errors import FailedPrecondition, InvalidArgument, NotFound, TuneryError
from tunery.testing import EventLog
from tunery.trainer.v1 import trainer_pb2 as pb

if TYPE_CHECKING:
    from conftest import Stack, Workers

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
    ds = stack.make_version()
    small = stack.make_version(n=6)
    draft = stack.make_version(n=20, freeze=False)
    H = pb.Hyperparameters
    cases: list[tuple[pb.JobSpec, type[TuneryError], str, str]] = [
        (stack.spec(ds, base_model="no-such-model"), NotFound, "model_not_found", "base_model"),
        (stack.spec(ds, version=7), NotFound, "version_not_found", "training_data.version"),
        (stack.spec("nope-" + ds), NotFound, "dataset_not_found", "training_data.version"),
        (stack.spec(draft, version=0), InvalidArgument, "draft_not_allowed", "training_data.version"),
        (stack.spec(small), FailedPrecondition, "too_few_examples", "training_data"),
        (
            stack.spec(ds, hyperparameters=H(learning_rate=0)),
            InvalidArgument,
            "invalid_learning_rate",
            "hyperparameters.learning_rate",
        ),
        (
            stack.spec(ds, hyperparameters=H(learning_rate=-1e-4)),
            InvalidArgument,
            "invalid_learning_rate",
            "hyperparameters.learning_rate",
        ),
        (
            stack.spec(ds, hyperparameters=H(learning_rate=float("nan"))),
            InvalidArgument,
            "invalid_learning_rate",
            "hyperparameters.learning_rate",
        ),
        (
            stack.spec(ds, hyperparameters=H(batch_size=0)),
            InvalidArgument,
            "invalid_batch_size",
            "hyperparameters.batch_size",
        ),
        (
            stack.spec(ds, hyperparameters=H(n_epochs=0)),
            InvalidArgument,
            "invalid_n_epochs",
            "hyperparameters.n_epochs",
        ),
        (
            stack.spec(ds, hyperparameters=H(n_epochs=1000)),
            InvalidArgument,
            "invalid_n_epochs",
            "hyperparameters.n_epochs",
        ),
        (stack.spec(ds, lora=pb.LoraConfig(rank=0)), InvalidArgument, "invalid_lora_rank", "lora.rank"),
        (stack.spec(ds, backend="deepspeed-magic"), InvalidArgument, "unknown_backend", "backend"),
        (stack.spec(ds, config={"turbo": True}), InvalidArgument, "unknown_backend_config", "backend_config.turbo"),
        (
            stack.spec(ds, config={"step_seconds": "fast"}),
            InvalidArgument,
            "invalid_backend_config",
            "backend_config.step_seconds",
        ),
        (stack.spec(ds, max_seq_length=4096), InvalidArgument, "invalid_max_seq_length", "max_seq_length"),
        (stack.spec(ds, suffix="Bad Suffix!"), InvalidArgument, "invalid_suffix", "suffix"),
        (stack.spec(ds, validation_split=1.5), InvalidArgument, "invalid_validation_split", "validation_split"),
    ]
    for s, kind, code, field in cases:
        err = stack.error_of(lambda s=s: stack.create(s))  # type: ignore[misc]
        assert (type(err), err.code, err.field) == (kind, code, field), (err, s)
        assert err.message
    unknown = stack.error_of(lambda: stack.create(stack.spec(ds, backend="deepspeed-magic")))
    assert "valid: echo" in unknown.message  # the valid ones are listed
    missing = stack.error_of(lambda: stack.trainer.CreateJob(pb.CreateJobRequest()))
    assert missing.field == "spec"
    assert stack.trainer.ListJobs(pb.ListJobsRequest(dataset=small)).page.total_size == 0, "nothing half-created"


# ---- the happy path, with events from NATS and from the store --------------------------------------------------------


def test_job_runs_through_the_queue(stack: Stack, workers: Workers) -> None:
    ds = stack.make_version()
    log = EventLog(stack.loop, stack.nats_url, "tunery.events.job.>")
    try:
        s = stack.spec(ds, suffix="doubler", idempotency_key=f"k-{uuid.uuid4().hex}", validation_split=0.25)
        job = stack.create(s)
        again = stack.trainer.CreateJob(pb.CreateJobRequest(spec=s))
        assert again.existing and again.job.id == job.id, "same idempotency key, same job"
        assert job.fine_tuned_model == f"ft:tiny-llama:doubler:{job.id}"
        assert job.state == S.JOB_STATE_VALIDATING_FILES
        assert job.resolved_hyperparameters.learning_rate == pytest.approx(2e-4)
        done = stack.wait_state(job.id, S.JOB_STATE_SUCCEEDED, S.JOB_STATE_FAILED)
        assert done.state == S.JOB_STATE_SUCCEEDED, done.error
        assert done.step == done.total_steps == 10  # 18 train examples / 4 per batch = 5 steps x 2 epochs
        assert (stack.data_dir / "artifacts" / done.adapter_path / "adapter_model.safetensors").exists()
        assert done.metrics.valid_token_accuracy > 0 and done.attempts == 1
        events = stack.events(job.id)
        assert [e.sequence for e in events] == list(range(1, len(events) + 1)), "gap-free, in order"
        states = [e.state_change.to_state for e in events if e.WhichOneof("data") == "state_change"]
        assert states == [S.JOB_STATE_VALIDATING_FILES, S.JOB_STATE_QUEUED, S.JOB_STATE_RUNNING, S.JOB_STATE_SUCCEEDED]
        # the event that ends the job names what it made, so the gateway can serve it without opening it first
        succeeded = next(e.state_change for e in events if e.state_change.to_state == S.JOB_STATE_SUCCEEDED)
        assert succeeded.adapter_path == done.adapter_path
        assert (succeeded.fine_tuned_model, succeeded.base_model) == (job.fine_tuned_model, done.spec.base_model)
        assert done.spec.base_model == str(stack.tiny_model.resolve())
        assert stack.steps_of(events) == list(range(1, 11))
        later = list(stack.trainer.StreamJobEvents(pb.StreamJobEventsRequest(job_id=job.id, after_sequence=5)))
        assert [r.event.sequence for r in later] == list(range(6, len(events) + 1))
        log.wait_for("job.event", job.id)
        assert {e[1].resource_id for e in log.items} == {job.id}
        assert len(stack.checkpoints(job.id)) >= 2
        listed = stack.trainer.ListJobs(pb.ListJobsRequest(dataset=ds, state=S.JOB_STATE_SUCCEEDED))
        assert [j.id for j in listed.jobs] == [job.id]
        v = stack.dataset.GetVersion(dpb.GetVersionRequest(dataset=ds, version=1)).version
        assert f"job:{job.id}" in v.references
        in_use = stack.error_of(lambda: stack.dataset.DeleteVersion(dpb.DeleteVersionRequest(dataset=ds, version=1)))
        assert isinstance(in_use, FailedPrecondition)
        finished = stack.error_of(lambda: stack.trainer.CancelJob(pb.CancelJobRequest(job_id=job.id)))
        assert isinstance(finished, FailedPrecondition) and "succeeded" in finished.message
    finally:
        log.close()


def test_follow_streams_live_until_the_end(stack: Stack, workers: Workers) -> None:
    job = stack.create(stack.spec(stack.make_version(), config={"step_seconds": 0.05}))
    seen = [r.event for r in stack.trainer.StreamJobEvents(pb.StreamJobEventsRequest(job_id=job.id), timeout=120)]
    assert seen[-1].state_change.to_state == S.JOB_STATE_SUCCEEDED
    assert stack.steps_of(seen) == list(range(1, 13))
