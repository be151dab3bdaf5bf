"""The multi-process launch path without NATS: torchrun ranks, the relay of rank 0's reports, a failing rank."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import pytest

from tunery.trainer.v1 import trainer_pb2 as pb
from tunery_trainer import launch
from tunery_trainer.backends.base import CheckpointInfo, StepMetrics, ValidationMetrics


class Recorder:
    def __init__(self, control: str = "continue") -> None:
        self.events: list[tuple[str, object]] = []
        self.answer = control

    def on_start(self, total_steps: int, start_step: int) -> None:
        self.events.append(("start", (total_steps, start_step)))

    def on_step(self, m: StepMetrics) -> None:
        self.events.append(("step", m))

    def on_checkpoint(self, c: CheckpointInfo) -> None:
        self.events.append(("checkpoint", c))

    def on_validation(self, v: ValidationMetrics) -> None:
        self.events.append(("validation", v))

    def control(self) -> str:
        return self.answer


def test_relay_reads_whole_lines_in_order(tmp_path: Path) -> None:
    events = tmp_path / "events.jsonl"
    rec = Recorder()
    relay = launch._Relay(events, rec)  # type: ignore[arg-type]
    step = StepMetrics(1, 4, 0.25, 2.5, 1e-3, 100, 50.0, 6.0)
    line = json.dumps({"kind": "step", "body": asdict(step)})
    events.write_text(json.dumps({"kind": "start", "body": {"total_steps": 4, "start_step": 0}}) + "\n" + line[:10])
    relay.pump()
    assert rec.events == [("start", (4, 0))], "half a line waits for the rest"
    with events.open("a") as f:
        f.write(line[10:] + "\n")
        f.write(json.dumps({"kind": "checkpoint", "body": {"step": 1, "epoch": 0.25, "path": str(tmp_path)}}) + "\n")
        f.write(json.dumps({"kind": "validation", "body": {"step": 1, "loss": 2.0, "token_accuracy": 0.5}}) + "\n")
    relay.pump()
    assert [k for k, _ in rec.events] == ["start", "step", "checkpoint", "validation"]
    assert rec.events[1][1] == step
    assert rec.events[2][1] == CheckpointInfo(1, 0.25, tmp_path)


def test_processes_setting() -> None:
    assert launch.processes_for(3) == 3
    assert launch.processes_for(0) == max(launch.visible_gpus(), 1)


def test_a_failing_rank_is_reported_with_its_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Real torchrun, two ranks: both fail to build the job (an unknown backend); the worker gets the first error."""
    monkeypatch.setenv("TUNERY_DATA_DIR", str(tmp_path / "data"))
    task = pb.TrainTask(job=pb.Job(id="ftjob-launch-test", spec=pb.JobSpec(backend="no-such-backend")))
    with pytest.raises(launch.LaunchFailed) as info:
        launch.run_distributed(task.SerializeToString(), Recorder(), tmp_path / "launch", 2)  # type: ignore[arg-type]
    msg = str(info.value)
    assert msg.startswith("rank ") and "no-such-backend" in msg and "InvalidArgument" in msg, msg
    assert sorted(p.name for p in (tmp_path / "launch").glob("error-rank*.json")) == [
        "error-rank0000.json",
        "error-rank0001.json",
    ]
