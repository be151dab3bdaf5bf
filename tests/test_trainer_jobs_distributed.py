"""One job on several processes (torchrun, gloo on CPU): trains like one process, and a killed worker takes its
ranks along while the job resumes. The stack and the `solo` fixture are in tests/conftest.py."""

from __future__ import annotations

import json
import signal
from typing import TYPE_CHECKING, Any

import pytest

from tunery.common.v1 import common_pb2 as S
from tunery.testing import wait_exit
from tunery.trainer.v1 import trainer_pb2 as pb

if TYPE_CHECKING:
    from conftest import Stack, Workers


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
    return stack.spec(
        ds,
        backend="peft",
        lora=pb.LoraConfig(rank=8, dropout=0.0),  # no dropout: one and two processes compute the same thing
        hyperparameters=pb.Hyperparameters(n_epochs=2, batch_size=4, learning_rate=1e-3),
        **kw,
    )


def test_one_job_on_two_processes_trains_like_one(stack: Stack, solo: Workers) -> None:
    ds = stack.make_version(n=26)
    one = solo.start()
    single = stack.create(peft_spec(stack, ds, validation_split=0.25))
    a = stack.wait_state(single.id, S.JOB_STATE_SUCCEEDED, S.JOB_STATE_FAILED, timeout=180)
    assert a.state == S.JOB_STATE_SUCCEEDED, a.error
    one.terminate()
    wait_exit(one, "the stopped single-process worker")
    solo.start(TUNERY_TRAINER_PROCESSES_PER_JOB="2")
    ea = stack.events(single.id)
    # data parallel (each rank the whole model), then sharded (FSDP2 on gloo): both train like one process
    for config in ({}, {"fsdp": True}):
        double = stack.create(peft_spec(stack, ds, validation_split=0.25, checkpoint_every_steps=2, config=config))
        b = stack.wait_state(double.id, S.JOB_STATE_SUCCEEDED, S.JOB_STATE_FAILED, timeout=240)
        assert b.state == S.JOB_STATE_SUCCEEDED, (config, b.error)
        check_same_training(stack, a, ea, b)


def check_same_training(stack: Stack, a: pb.Job, ea: list[pb.JobEvent], b: pb.Job) -> None:
    eb = stack.events(b.id)
    assert any("training on 2 processes (torchrun, gloo)" in e.message for e in eb)
    assert not any("training on" in e.message for e in ea)
    assert [e.sequence for e in eb] == list(range(1, len(eb) + 1))
    assert (
        stack.steps_of(ea) == stack.steps_of(eb) == list(range(1, b.total_steps + 1)) and b.total_steps == a.total_steps
    )
    loss_a = [e.step.train_loss for e in ea if e.WhichOneof("data") == "step"]
    loss_b = [e.step.train_loss for e in eb if e.WhichOneof("data") == "step"]
    assert loss_b == pytest.approx(loss_a, rel=2e-3), "the same updates, split over two ranks"
    assert loss_b[-1] < loss_b[0]
    tokens = [sum(e.step.tokens for e in ev if e.WhichOneof("data") == "step") for ev in (ea, eb)]
    assert tokens[0] == tokens[1], "every example of every batch trained once, by one of the ranks"
    assert b.metrics.valid_loss == pytest.approx(a.metrics.valid_loss, rel=2e-3)
    assert b.metrics.valid_token_accuracy == pytest.approx(a.metrics.valid_token_accuracy, abs=1e-6)
    cks = stack.checkpoints(b.id)
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
    ds = stack.make_version(n=24)
    victim = solo.start(TUNERY_TRAINER_PROCESSES_PER_JOB="2")
    job = stack.create(
        stack.spec(
            ds,
            backend="peft",
            config={"fsdp": True},  # sharded: the resume cuts the saved whole optimizer state into shards again
            checkpoint_every_steps=3,
            hyperparameters=pb.Hyperparameters(n_epochs=3, batch_size=2, learning_rate=1e-3),
        ),
    )
    stack.wait_checkpoint(job.id, timeout=180)
    assert len(rank_processes(job.id)) >= 2
    victim.send_signal(signal.SIGKILL)
    wait_exit(victim, "the SIGKILLed worker")
    stack.wait_until("the training processes die with their worker", lambda: not rank_processes(job.id), timeout=120)
    solo.start(TUNERY_TRAINER_PROCESSES_PER_JOB="2")
    done = stack.wait_state(job.id, S.JOB_STATE_SUCCEEDED, S.JOB_STATE_FAILED, timeout=240)
    assert done.state == S.JOB_STATE_SUCCEEDED, done.error
    assert done.step == done.total_steps == 36 and done.attempts == 2
    events = stack.events(job.id)
    assert [e for e in events if e.message.startswith("resuming at step")]
    assert sorted(set(stack.steps_of(events))) == list(range(1, 37)), "continuous steps"
