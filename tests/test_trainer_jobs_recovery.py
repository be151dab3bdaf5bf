"""Trainer jobs survive what goes wrong around them: a SIGKILLed worker (the job resumes from its checkpoint on
another), a full disk (fails clearly, not in a loop), a job that kills every worker (ends failed), a NATS outage
(nothing lost), and the real peft backend killed mid-training. The stack is in tests/conftest.py."""

from __future__ import annotations

import json
import signal
import time
from typing import TYPE_CHECKING

import pytest

from tunery.common.v1 import common_pb2 as S
from tunery.testing import wait_exit
from tunery.trainer.v1 import trainer_pb2 as pb

if TYPE_CHECKING:
    from conftest import Stack, Workers


def test_sigkill_mid_job_resumes_on_another_worker(stack: Stack, workers: Workers) -> None:
    job = stack.slow_job(0.25, 3, checkpoint_every_steps=3)
    stack.wait_checkpoint(job.id, step=6)
    running = stack.job(job.id)
    first = workers.by_name(running.worker)
    first.send_signal(signal.SIGKILL)
    wait_exit(first, "the SIGKILLed worker")
    killed_at = stack.job(job.id).step
    workers.start()  # a replacement; the surviving worker may take the job first
    done = stack.wait_state(job.id, S.JOB_STATE_SUCCEEDED, S.JOB_STATE_FAILED, timeout=90)
    assert done.state == S.JOB_STATE_SUCCEEDED and done.step == done.total_steps == 18
    assert done.attempts == 2
    events = stack.events(job.id)
    steps = stack.steps_of(events)
    resumed = [e for e in events if e.message.startswith("resuming at step")]
    assert resumed, "the second worker resumed from a checkpoint"
    resume_step = int(resumed[0].message.split()[3])
    assert resume_step - 1 in {c.step for c in stack.checkpoints(job.id)}
    assert resume_step <= killed_at + 1
    assert sorted(set(steps)) == list(range(1, 19)), "continuous steps"


def test_disk_full_while_checkpointing_fails_clearly(stack: Stack, workers: Workers) -> None:
    if not stack.artifacts_on_tmpfs:
        pytest.skip("cannot mount a small tmpfs here (needs root)")
    job = stack.slow_job(0.3, 10, checkpoint_every_steps=2)
    first = stack.wait_checkpoint(job.id)[0]
    filler = stack.data_dir / "artifacts" / "filler"
    try:
        with filler.open("wb") as fh:  # fill the disk for real
            with pytest.raises(OSError):
                while True:
                    fh.write(b"\0" * (1 << 20))
                    fh.flush()
        done = stack.wait_state(job.id, S.JOB_STATE_FAILED, S.JOB_STATE_SUCCEEDED, timeout=60)
    finally:
        filler.unlink(missing_ok=True)
    assert done.state == S.JOB_STATE_FAILED
    assert done.error.code == "disk_full" and "earlier checkpoints are intact" in done.error.message
    assert done.attempts == 1, "a full disk is not retried in a loop"
    ckpt = stack.data_dir / "artifacts" / first.path
    assert (ckpt / "state.safetensors").stat().st_size > 0 and (ckpt / ".tunery-complete").exists()


def test_a_job_that_kills_its_workers_ends_failed(stack: Stack, workers: Workers) -> None:
    job = stack.create(stack.spec(stack.make_version(), config={"crash_at_step": 2}))
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        state = stack.job(job.id).state
        if state in (S.JOB_STATE_FAILED, S.JOB_STATE_SUCCEEDED):
            break
        alive = [p for p in workers.procs if p.poll() is None]
        if len(alive) < 2:
            workers.start()  # a supervisor restarts crashed workers; the job must not crash them forever
        time.sleep(0.2)
    done = stack.job(job.id)
    assert done.state == S.JOB_STATE_FAILED
    assert done.error.code == "worker_lost" and "3 times" in done.error.message
    assert done.attempts == 3


def test_a_nats_outage_mid_job_loses_nothing(stack: Stack, workers: Workers) -> None:
    job = stack.slow_job(0.2, 5, checkpoint_every_steps=4)
    worker = workers.by_name(stack.wait_step(job.id, 5).worker)
    lost = "lost the connection to NATS"
    before = workers.log_of(worker).count(lost)
    stack.nats.stop()  # every service and worker loses NATS; JetStream keeps its state on disk
    stack.wait_until(
        "the trainer service and the job's worker notice the outage",
        lambda: not stack.trainer_app.nc.is_connected and workers.log_of(worker).count(lost) > before,
        timeout=30,
    )
    stack.nats.start()
    done = stack.wait_state(job.id, S.JOB_STATE_SUCCEEDED, S.JOB_STATE_FAILED, timeout=120)
    assert done.state == S.JOB_STATE_SUCCEEDED and done.step == done.total_steps == 30
    assert sorted(set(stack.steps_of(stack.events(job.id)))) == list(range(1, 31)), "no event lost"


def test_peft_job_killed_mid_training_resumes_from_its_checkpoint(stack: Stack, workers: Workers) -> None:
    """The real backend: model, optimizer, scheduler, RNG and data position come back from the checkpoint."""
    job = stack.create(
        stack.spec(
            stack.make_version(),
            backend="peft",
            checkpoint_every_steps=8,
            hyperparameters=pb.Hyperparameters(n_epochs=2, batch_size=1, learning_rate=1e-3),
        ),
    )
    stack.wait_checkpoint(job.id, timeout=120)
    running = stack.job(job.id)
    victim = workers.by_name(running.worker)
    victim.send_signal(signal.SIGSTOP)  # freeze at once, then kill: no chance to finish or clean up
    victim.send_signal(signal.SIGKILL)
    wait_exit(victim, "the SIGKILLed worker")
    workers.start()
    done = stack.wait_state(job.id, S.JOB_STATE_SUCCEEDED, S.JOB_STATE_FAILED, timeout=180)
    assert done.state == S.JOB_STATE_SUCCEEDED, done.error
    assert done.step == done.total_steps == 48 and done.attempts == 2
    events = stack.events(job.id)
    resumed = [e for e in events if e.message.startswith("resuming at step")]
    assert resumed and int(resumed[0].message.split()[3]) - 1 in {8, 16, 24, 32, 40}
    assert sorted(set(stack.steps_of(events))) == list(range(1, 49)), "continuous steps"
    losses = [e.step.train_loss for e in events if e.WhichOneof("data") == "step"]
    assert sum(losses[-24:]) / 24 < sum(losses[:24]) / 24, "the loss fell"
    adapter = stack.data_dir / "artifacts" / done.adapter_path
    assert (adapter / "adapter_model.safetensors").exists()
    assert json.loads((adapter / "tunery_metadata.json").read_text())["job_id"] == job.id
