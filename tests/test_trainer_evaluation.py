"""A job that asks for an evaluation (JobSpec.evaluation): checked at CreateJob, created on the evaluator once the job
has succeeded (base against the fine-tuned model on the job's validation part), followed to its end, kept with the
job (GetJob's Job.evaluation) and announced as job events on NATS. The job stays succeeded whatever the evaluation
does.

The session stack (tests/conftest.py: NATS, dataset and trainer services, workers) with, for the evaluation itself,
a real gateway serving the tiny model and a real evaluator (the `evaluation` fixture); the first tests need neither:
they run while nothing answers at the trainer's evaluator address.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from google.protobuf import struct_pb2

from tunery.common.v1 import common_pb2 as S
from tunery.errors import InvalidArgument
from tunery.evaluator.v1 import evaluator_pb2 as epb
from tunery.testing import EventLog
from tunery.trainer.v1 import trainer_pb2 as pb

if TYPE_CHECKING:
    from conftest import Stack, Workers


def grader(kind: str, name: str = "", **config: object) -> epb.GraderSpec:
    cfg = struct_pb2.Struct()
    cfg.update(config)
    return epb.GraderSpec(type=kind, name=name, config=cfg)


def evaluation(*graders: epb.GraderSpec, **kw: object) -> pb.JobEvaluationSpec:
    return pb.JobEvaluationSpec(graders=list(graders) or [grader("latency")],
                                generation=epb.GenerationConfig(max_tokens=4), **kw)  # type: ignore[arg-type]


def evaluation_events(stack: Stack, job_id: str) -> list[pb.JobEvent]:
    return [e for e in stack.events(job_id) if e.WhichOneof("data") == "evaluation"]


# ---- checked at CreateJob ---------------------------------------------------------------------------------------
def test_an_evaluation_needs_graders_and_data(stack: Stack) -> None:
    ds = stack.make_version()
    no_data = stack.error_of(lambda: stack.create(stack.spec(ds, evaluation=evaluation())))
    assert isinstance(no_data, InvalidArgument)
    assert (no_data.code, no_data.field) == ("no_evaluation_data", "evaluation.data")
    assert "validation_split" in no_data.message
    no_graders = stack.error_of(lambda: stack.create(stack.spec(
        ds, validation_split=0.25, evaluation=pb.JobEvaluationSpec())))
    assert (no_graders.code, no_graders.field) == ("missing_field", "evaluation.graders")
    twice = stack.error_of(lambda: stack.create(stack.spec(
        ds, validation_split=0.25, evaluation=evaluation(grader("latency", "x"), grader("tokens", "x")))))
    assert (twice.code, twice.field) == ("duplicate_grader", "evaluation.graders[1].name")
    draft = stack.error_of(lambda: stack.create(stack.spec(ds, evaluation=evaluation(
        data=epb.EvaluationData(dataset_version=epb.DatasetVersionRef(dataset=ds, version=0))))))
    assert (draft.code, draft.field) == ("draft_not_allowed", "evaluation.data.version")


# ---- an evaluator that does not answer ------------------------------------------------------------------------------
def test_an_evaluator_that_stays_down_is_the_evaluations_error_not_the_jobs(stack: Stack, workers: Workers) -> None:
    """Nothing listens at the trainer's evaluator address: the graders cannot be checked (a warning), the job trains
    and succeeds, the evaluation is tried for TUNERY_TRAINER_EVALUATOR_RETRY_SECONDS and then fails with the
    reason; GetJob and the job's events (stored from NATS) say so."""
    ds = stack.make_version()
    spec = stack.spec(ds, validation_split=0.25, evaluation=evaluation(grader("string_check", "exact")))
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
