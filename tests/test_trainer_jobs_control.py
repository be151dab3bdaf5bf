"""Controlling trainer jobs: cancel and pause/resume reach the worker within seconds through the control bucket,
and a job that keeps failing ends failed after max_deliver attempts. The stack is in tests/conftest.py."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from tunery.common.v1 import common_pb2 as S
from tunery.errors import FailedPrecondition
from tunery.trainer.v1 import trainer_pb2 as pb

if TYPE_CHECKING:
    from conftest import Stack, Workers


def test_cancel_stops_within_seconds_and_keeps_checkpoints(stack: Stack, workers: Workers) -> None:
    job = stack.slow_job(0.3, 10, checkpoint_every_steps=2)
    stack.wait_step(job.id, 3)
    cancelled = stack.trainer.CancelJob(pb.CancelJobRequest(job_id=job.id)).job
    assert cancelled.state == S.JOB_STATE_CANCELLED
    asked = time.time()
    # the worker notices within a heartbeat and a step, says so, and trains no further
    stopped = stack.wait_event(job.id, "stopped the job (cancelled)", timeout=30)
    assert stopped.time.ToDatetime().timestamp() - asked < 5, "stopped within seconds"
    events = stack.events(job.id)
    after = events[events.index(stopped) :]
    assert not stack.steps_of(after), "no step after the stop"
    assert max(stack.steps_of(events)) < 60
    assert stack.checkpoints(job.id)
    again = stack.error_of(lambda: stack.trainer.CancelJob(pb.CancelJobRequest(job_id=job.id)))
    assert isinstance(again, FailedPrecondition)


def test_pause_and_resume_continue_from_the_checkpoint(stack: Stack, workers: Workers) -> None:
    job = stack.slow_job(0.2, 4)
    stack.wait_step(job.id, 2)
    paused = stack.trainer.PauseJob(pb.PauseJobRequest(job_id=job.id)).job
    assert paused.state == S.JOB_STATE_PAUSED
    not_running = stack.error_of(lambda: stack.trainer.PauseJob(pb.PauseJobRequest(job_id=job.id)))
    assert isinstance(not_running, FailedPrecondition)
    stack.wait_event(job.id, "stopped the job (paused)")  # the worker checkpointed and let go
    resumed = stack.trainer.ResumeJob(pb.ResumeJobRequest(job_id=job.id)).job
    assert resumed.state == S.JOB_STATE_QUEUED
    running = stack.error_of(lambda: stack.trainer.ResumeJob(pb.ResumeJobRequest(job_id=job.id)))
    assert isinstance(running, FailedPrecondition)
    done = stack.wait_state(job.id, S.JOB_STATE_SUCCEEDED, S.JOB_STATE_FAILED)
    assert done.state == S.JOB_STATE_SUCCEEDED and done.step == 24
    steps = stack.steps_of(stack.events(job.id))
    assert steps[-1] == 24 and sorted(set(steps)) == list(range(1, 25)), "no step skipped"


def test_a_failing_job_ends_failed_after_max_deliver(stack: Stack, workers: Workers) -> None:
    job = stack.create(stack.spec(stack.make_version(), config={"fail_at_step": 3}))
    done = stack.wait_state(job.id, S.JOB_STATE_FAILED, S.JOB_STATE_SUCCEEDED, timeout=60)
    assert done.state == S.JOB_STATE_FAILED
    assert done.error.code == "training_error" and "fail at step 3" in done.error.message
    assert done.attempts == 3
    retries = [e for e in stack.events(job.id) if "retrying" in e.message]
    assert len(retries) == 2
