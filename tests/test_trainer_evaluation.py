"""A job that asks for an evaluation (JobSpec.evaluation): checked at CreateJob, created on the evaluator once the job
has succeeded (base against the fine-tuned model on the job's validation part), followed to its end, kept with the
job (GetJob's Job.evaluation) and announced as job events on NATS. The job stays succeeded whatever the evaluation
does.

The session stack (tests/conftest.py: NATS, dataset and trainer services, workers) with, for the evaluation itself,
a real gateway serving the tiny model and a real evaluator (the `evaluation` fixture); the first tests need neither:
they run while nothing answers at the trainer's evaluator address.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest
from google.protobuf import struct_pb2

from tunery.common.v1 import common_pb2 as S
from tunery.errors import InvalidArgument
from tunery.evaluator.v1 import evaluator_pb2 as epb
from tunery.testing import EventLog
from tunery.trainer.v1 import trainer_pb2 as pb

if TYPE_CHECKING:
    from conftest import Evaluation, Stack, Workers

OVERLAP = "word_overlap"  # the third-party grader of tests/plugins/tunery-test-grader


def grader(kind: str, name: str = "", **config: object) -> epb.GraderSpec:
    cfg = struct_pb2.Struct()
    cfg.update(config)
    return epb.GraderSpec(type=kind, name=name, config=cfg)


def eval_spec(*graders: epb.GraderSpec, **kw: object) -> pb.JobEvaluationSpec:
    return pb.JobEvaluationSpec(graders=list(graders) or [grader("latency")],
                                generation=epb.GenerationConfig(max_tokens=4), **kw)  # type: ignore[arg-type]


def evaluation_events(stack: Stack, job_id: str) -> list[pb.JobEvent]:
    return [e for e in stack.events(job_id) if e.WhichOneof("data") == "evaluation"]


# ---- checked at CreateJob ---------------------------------------------------------------------------------------
def test_an_evaluation_needs_graders_and_data(stack: Stack) -> None:
    ds = stack.make_version()
    no_data = stack.error_of(lambda: stack.create(stack.spec(ds, evaluation=eval_spec())))
    assert isinstance(no_data, InvalidArgument)
    assert (no_data.code, no_data.field) == ("no_evaluation_data", "evaluation.data")
    assert "validation_split" in no_data.message
    no_graders = stack.error_of(lambda: stack.create(stack.spec(
        ds, validation_split=0.25, evaluation=pb.JobEvaluationSpec())))
    assert (no_graders.code, no_graders.field) == ("missing_field", "evaluation.graders")
    twice = stack.error_of(lambda: stack.create(stack.spec(
        ds, validation_split=0.25, evaluation=eval_spec(grader("latency", "x"), grader("tokens", "x")))))
    assert (twice.code, twice.field) == ("duplicate_grader", "evaluation.graders[1].name")
    draft = stack.error_of(lambda: stack.create(stack.spec(ds, evaluation=eval_spec(
        data=epb.EvaluationData(dataset_version=epb.DatasetVersionRef(dataset=ds, version=0))))))
    assert (draft.code, draft.field) == ("draft_not_allowed", "evaluation.data.version")


# ---- an evaluator that does not answer ------------------------------------------------------------------------------
def test_an_evaluator_that_stays_down_is_the_evaluations_error_not_the_jobs(
    stack: Stack, workers: Workers, evaluation_down: None
) -> None:
    """Nothing listens at the trainer's evaluator address: the graders cannot be checked (a warning), the job trains
    and succeeds, the evaluation is tried for TUNERY_TRAINER_EVALUATOR_RETRY_SECONDS and then fails with the
    reason; GetJob and the job's events (stored from NATS) say so."""
    ds = stack.make_version()
    spec = stack.spec(ds, validation_split=0.25, evaluation=eval_spec(grader(OVERLAP, "overlap")))
    job = stack.create(spec)
    log = EventLog(stack.loop, stack.nats_url, f"tunery.events.job.{job.id}.event")
    try:
        warning = stack.wait_event(job.id, "graders were not checked")
        assert warning.level == "warning" and stack.evaluator_addr in warning.message
        stack.wait_state(job.id, S.JOB_STATE_SUCCEEDED)
        done = stack.wait_until("the evaluation's error", lambda: (j := stack.job(job.id)).evaluation.state
                                == S.JOB_STATE_FAILED and j, timeout=60)
        assert done.state == S.JOB_STATE_SUCCEEDED, "the job stays succeeded"
        assert done.evaluation.error.code == "evaluator_unavailable"
        assert stack.evaluator_addr in done.evaluation.error.message
        assert done.evaluation.evaluation_id == ""
        [ended] = evaluation_events(stack, job.id)
        assert ended.evaluation == done.evaluation and ended.level == "warning"
        assert "evaluator_unavailable" in ended.message
        on_nats = [pb.JobEvent() for _ in log.items]
        for ev, (_, envelope, _) in zip(on_nats, log.items, strict=True):
            envelope.payload.Unpack(ev)
        assert any(e.WhichOneof("data") == "evaluation" and e.evaluation.state == S.JOB_STATE_FAILED
                   for e in on_nats)
        # The trainer's stream follows a job to the end of its evaluation, then ends.
        streamed = [r.event for r in stack.trainer.StreamJobEvents(pb.StreamJobEventsRequest(job_id=job.id))]
        assert streamed[-1].WhichOneof("data") == "evaluation"
    finally:
        log.close()


@pytest.fixture
def evaluation_down(evaluation: Evaluation) -> Iterator[None]:
    """The session's evaluator stopped for the test, and started again (same port) after it."""
    evaluation.evaluator.stop()
    try:
        yield
    finally:
        evaluation.evaluator.start()


# ---- with the evaluator and the gateway -------------------------------------------------------------------------
def test_an_unknown_grader_is_named_at_create_job(stack: Stack, evaluation: Evaluation) -> None:
    ds = stack.make_version()
    err = stack.error_of(lambda: stack.create(stack.spec(
        ds, validation_split=0.25, evaluation=eval_spec(grader(OVERLAP), grader("no_such_grader")))))
    assert isinstance(err, InvalidArgument)
    assert (err.code, err.field) == ("unknown_grader", "evaluation.graders[1].type")
    assert "'no_such_grader'" in err.message and OVERLAP in err.message, "the error lists the installed graders"
    bad = stack.error_of(lambda: stack.create(stack.spec(
        ds, validation_split=0.25, evaluation=eval_spec(grader(OVERLAP, pass_threshold=3)))))
    assert (bad.code, bad.field) == ("invalid_grader_config", "evaluation.graders[0].config.pass_threshold")
    assert "3" in bad.message and OVERLAP in bad.message


def test_a_succeeded_job_is_evaluated_against_its_base(stack: Stack, workers: Workers, evaluation: Evaluation
                                                       ) -> None:
    """Real LoRA training (peft) on the tiny model; the gateway serves the result from the succeeded event; the
    trainer asks the evaluator for base against fine-tuned on the job's validation split and keeps the summary."""
    ds = stack.make_version(n=24)
    spec = stack.spec(ds, backend="peft", validation_split=0.25, suffix="evaluated",
                      hyperparameters=pb.Hyperparameters(n_epochs=1, batch_size=6),
                      evaluation=eval_spec(grader(OVERLAP, "overlap", pass_threshold=0.5)))
    job = stack.create(spec)
    assert job.spec.evaluation.graders[0].type == OVERLAP
    assert not job.HasField("evaluation"), "nothing to show before the job has succeeded"
    stack.wait_state(job.id, S.JOB_STATE_SUCCEEDED, timeout=180)
    done = stack.wait_until("the job's evaluation to end", lambda: (j := stack.job(job.id)).evaluation.state in (
        S.JOB_STATE_SUCCEEDED, S.JOB_STATE_FAILED, S.JOB_STATE_CANCELLED) and j, timeout=180)
    assert done.state == S.JOB_STATE_SUCCEEDED
    ev = done.evaluation
    assert ev.state == S.JOB_STATE_SUCCEEDED, ev.error
    assert job.fine_tuned_model in evaluation.served()

    # What the evaluator ran: base and fine-tuned, on the job's 6 held-out examples.
    ran = evaluation.stub.GetEvaluation(epb.GetEvaluationRequest(evaluation_id=ev.evaluation_id)).evaluation
    assert ran.job_id == job.id and ran.spec.data.job_id == job.id
    assert [(m.label, m.model) for m in ran.spec.models] == [("base", evaluation.base),
                                                             ("fine-tuned", job.fine_tuned_model)]
    assert ran.total_examples == done.validation_examples == 6
    assert ran.spec.generation.max_tokens == 4
    assert ev.summary == ran.summary, "the job keeps the evaluator's summary"
    by_model = {g.model: g for g in ev.summary.graders if g.grader == "overlap"}
    assert set(by_model) == {"base", "fine-tuned"}
    assert all(g.count + g.errored == 6 for g in by_model.values())
    assert ev.summary.pairs, "base and fine-tuned are compared pairwise"

    created, ended = evaluation_events(stack, job.id)
    assert created.evaluation.evaluation_id == ev.evaluation_id and "created" in created.message
    assert created.evaluation.state in (S.JOB_STATE_QUEUED, S.JOB_STATE_RUNNING)
    assert ended.evaluation == ev and "overlap" in ended.message
    listed = stack.trainer.ListJobs(pb.ListJobsRequest(dataset=ds)).jobs
    assert [j.evaluation.evaluation_id for j in listed] == [ev.evaluation_id]
