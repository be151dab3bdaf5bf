"""End-to-end tests of `tunery jobs`: a real `tunery up --detach` (nats-server, dataset and trainer services, one
trainer worker), driven through subprocesses exactly as a user would. Jobs train with the torch-free echo backend
on a tiny model folder, so a whole job takes about a second.

The module shares one running stack; the last test stops it with `tunery down`, and the fixture's finalizer makes
sure nothing is left running even when a test fails half-way.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tunery.runtime.natsd import free_port
from tunery.up import SERVICES, pid_alive

JOB_ID = re.compile(r"created job (ftjob-[0-9a-f]+)")
LOSS_SUMMARY = re.compile(r"^loss [0-9.e+-]+ → [0-9.e+-]+ ", re.MULTILINE)


@dataclass
class Result:
    code: int
    out: str
    err: str


@dataclass
class Stack:
    data_dir: Path
    env: dict[str, str]
    nats_port: int
    tiny_model: Path = Path()

    def cli(self, *args: str | Path | int, timeout: float = 60, check: int | None = 0) -> Result:
        proc = subprocess.run([sys.executable, "-m", "tunery.cli.main", *map(str, args)], env=self.env,
                              capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
        res = Result(proc.returncode, proc.stdout, proc.stderr)
        assert "Traceback" not in res.out + res.err, res.err
        if check is not None:
            assert res.code == check, f"tunery {' '.join(map(str, args))} -> {res.code}\n{res.out}\n{res.err}"
        return res

    def state(self) -> dict[str, Any] | None:
        path = self.data_dir / "run" / "up.json"
        return json.loads(path.read_text()) if path.exists() else None

    def job(self, job_id: str) -> dict[str, Any]:
        return json.loads(self.cli("jobs", "show", job_id, "--json").out)  # type: ignore[no-any-return]

    def create(self, *args: str | int, check: int | None = 0) -> Result:
        return self.cli("jobs", "create", "--dataset", "doubling", "--version", 1, "--backend", "echo", "--model",
                        self.tiny_model, *args, check=check)


def _pids(state: dict[str, Any] | None) -> list[int]:
    if not state:
        return []
    pids = [int(s["proc"]["pid"]) for s in state["services"].values()]
    pids += [int(w["proc"]["pid"]) for w in state.get("workers", [])]
    pids += [int(state[k]["pid"]) for k in ("nats", "supervisor") if isinstance(state.get(k), dict)]
    return pids


def _env(data_dir: Path) -> dict[str, str]:
    """No TUNERY_* from the caller; every service on a free port, so tests never collide with a running Tunery."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TUNERY_")}
    env.update({f"{s.env_prefix}PORT": str(free_port()) for s in SERVICES})
    env.update(TUNERY_DATA_DIR=str(data_dir), COLUMNS="200", NO_COLOR="1", TERM="dumb")
    return env


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    from tunery.testing import build_tiny_llama

    data_dir = tmp_path_factory.mktemp("tunery-jobs")
    s = Stack(data_dir, _env(data_dir), free_port())
    started: list[int] = []
    try:
        # The tiny model (torch import, tokenizer conversion) builds while the stack starts: the two dominate.
        with ThreadPoolExecutor(1) as pool:
            tiny = pool.submit(build_tiny_llama, data_dir / "tiny-llama", data_dir=data_dir)
            res = s.cli("up", "--detach", "--nats-port", s.nats_port, "-s", "dataset", "-s", "trainer",
                        timeout=150)
            started = _pids(s.state())
            s.tiny_model = tiny.result(timeout=300)
        assert "trainer-worker-0" in res.out
        rows = "".join(json.dumps({"messages": [{"role": "user", "content": f"{i} doubled?"},
                                                {"role": "assistant", "content": f"{2 * i}."}]}) + "\n"
                       for i in range(24))
        (data_dir / "doubling.jsonl").write_text(rows)
        s.cli("datasets", "create", "doubling")
        assert "uploaded 24 examples" in s.cli("datasets", "upload", "doubling", data_dir / "doubling.jsonl").out
        s.cli("datasets", "freeze", "doubling")
        yield s
    finally:
        started = started or _pids(s.state())
        subprocess.run([sys.executable, "-m", "tunery.cli.main", "down", "--grace", "5"], env=s.env,
                       capture_output=True, timeout=60)
        for pid in started:  # last resort: nothing may outlive the tests
            if pid_alive(pid):
                try:
                    os.killpg(pid, signal.SIGKILL)
                except OSError:
                    os.kill(pid, signal.SIGKILL)


def test_up_starts_one_worker(stack: Stack) -> None:
    state = stack.state()
    assert state is not None
    assert [w["name"] for w in state["workers"]] == ["trainer-worker-0"]
    assert pid_alive(state["workers"][0]["proc"]["pid"])
    assert (stack.data_dir / "logs" / "trainer-worker-0.log").exists()
    doc = json.loads(stack.cli("status", "--json").out)
    assert doc["healthy"] is True
    states = {c["name"]: c["state"] for c in doc["components"]}
    assert states == {"nats": "reachable", "dataset": "SERVING", "trainer": "SERVING", "trainer-worker-0": "running"}


def test_create_and_watch_a_job_to_success(stack: Stack) -> None:
    res = stack.create("--config", "step_seconds=0.05", "--epochs", 2, "--batch-size", 4, "--suffix", "doubler",
                       "--watch")
    match = JOB_ID.search(res.out)
    assert match, res.out
    job_id = match.group(1)
    assert f"ft:tiny-llama:doubler:{job_id}" in res.out
    assert "epochs 2, batch size 4, learning rate 0.0002 (auto)" in res.out  # resolved hyperparameters
    assert "queued → running" in res.out and "checkpoint at step 6" in res.out
    steps = re.findall(r"^\S+ step (\d+)/12 ", res.out, re.MULTILINE)
    assert steps == ["1", "10", "12"], "off a terminal: the first, every 10th and the last step"
    assert f"job {job_id} succeeded" in res.out
    assert LOSS_SUMMARY.search(res.out), res.out
    assert f"adapter: jobs/{job_id}/adapter" in res.out

    listed = stack.cli("jobs", "list", "--state", "succeeded").out
    assert job_id in listed and "12/12" in listed
    doc = json.loads(stack.cli("jobs", "list", "--dataset", "doubling", "--json").out)
    assert job_id in [j["id"] for j in doc["jobs"]]
    job = stack.job(job_id)
    assert job["state"] == "JOB_STATE_SUCCEEDED" and job["step"] == job["total_steps"] == 12
    assert job["spec"]["backend_config"] == {"step_seconds": 0.05}
    assert (stack.data_dir / "artifacts" / job["adapter_path"] / "adapter_model.safetensors").exists()
    assert "succeeded" in stack.cli("jobs", "show", job_id).out
    assert "step-000012" in stack.cli("jobs", "checkpoints", job_id).out

    again = stack.cli("jobs", "watch", job_id, "--from-sequence", 3)  # a finished job replays, then ends
    assert "new → validating_files" not in again.out and f"job {job_id} succeeded" in again.out

    res = stack.cli("jobs", "cancel", job_id, check=1)
    assert res.err.startswith(f"error: cannot cancel job {job_id}") and "succeeded" in res.err


def test_failed_and_cancelled_jobs_exit_1(stack: Stack) -> None:
    res = stack.create("--config", "fail_at_step=2", "--epochs", 1, "--batch-size", 4, "--watch", check=1)
    assert "failed" in res.out and "attempt 1 failed" in res.out
    assert "error: job" in res.err and "training_error" in res.err and "echo backend asked to fail" in res.err

    res = stack.create("--config", "step_seconds=0.2", "--epochs", 10, "--batch-size", 4)
    job_id = JOB_ID.search(res.out).group(1)  # type: ignore[union-attr]
    assert "cancelled" in stack.cli("jobs", "cancel", job_id).out
    res = stack.cli("jobs", "watch", job_id, check=1)
    assert f"job {job_id} cancelled" in res.out


BAD_INPUT = [
    (("--learning-rate", "-1"), "hyperparameters.learning_rate", "--learning-rate"),
    (("--backend", "deepspeed-magic"), "backend", "--backend"),
    (("--config", "turbo=1"), "backend_config.turbo", "--config turbo="),
    (("--config", "step_seconds=fast"), "backend_config.step_seconds", "--config step_seconds="),
    (("--epochs", "0"), "hyperparameters.n_epochs", "--epochs"),
]


def test_bad_input_names_the_field(stack: Stack) -> None:
    before = json.loads(stack.cli("jobs", "list", "--json").out)["page"]["total_size"]
    for args, field, option in BAD_INPUT:
        res = stack.create(*args, check=1)
        assert res.err.startswith("error: ") and len(res.err.strip().splitlines()) == 1, res.err
        assert f"field {field}" in res.err and f"option {option}" in res.err, res.err
    assert "valid: echo" in stack.create("--backend", "deepspeed-magic", check=1).err, "the valid names are listed"
    assert json.loads(stack.cli("jobs", "list", "--json").out)["page"]["total_size"] == before, "nothing created"


def test_usage_and_connection_errors(stack: Stack) -> None:
    assert "KEY=VALUE" in stack.create("--config", "turbo", check=2).err
    assert "'many' is not an integer or 'auto'" in stack.create("--epochs", "many", check=2).err
    res = stack.cli("jobs", "list", "--addr", f"127.0.0.1:{free_port()}", check=1)
    assert res.err.startswith("error: cannot reach the trainer service at 127.0.0.1:")
    assert "not found" in stack.cli("jobs", "watch", "ftjob-nope", check=1).err
    # each CLI pointed at the other service's port: said in words, not as a gRPC status
    trainer = f"127.0.0.1:{stack.env['TUNERY_TRAINER_PORT']}"
    dataset = f"127.0.0.1:{stack.env['TUNERY_DATASET_PORT']}"
    res = stack.cli("datasets", "list", "--addr", trainer, check=1)
    assert res.err.startswith(f"error: {trainer} does not serve the dataset API"), res.err
    res = stack.cli("jobs", "list", "--addr", dataset, check=1)
    assert res.err.startswith(f"error: {dataset} does not serve the trainer API"), res.err


def test_backends_and_models_are_listed(stack: Stack) -> None:
    out = stack.cli("jobs", "backends").out
    assert "echo" in out and "tunery-echo-backend" in out
    for name, kind, help_text in (("step_seconds", "float", "Sleep per step"), ("fail_at_step", "int", "Raise at")):
        row = next(line for line in out.splitlines() if f" {name} " in line)
        assert kind in row and help_text in row
    doc = json.loads(stack.cli("jobs", "backends", "--json").out)
    echo = next(b for b in doc["backends"] if b["name"] == "echo")
    assert {"step_seconds", "fail_at_step"} <= {f["name"] for f in echo["config"]}
    assert all(f["help"] and f["type"] and f["default_json"] for f in echo["config"])
    assert "smollm2-135m-instruct" in stack.cli("jobs", "models").out


def test_down_stops_the_worker_too(stack: Stack) -> None:
    state = stack.state()
    pids = _pids(state)
    worker = state["workers"][0]["proc"]["pid"]  # type: ignore[index]
    assert pids and all(pid_alive(p) for p in pids)
    res = stack.cli("down")
    assert "trainer-worker-0" in res.out
    assert not pid_alive(worker) and not any(pid_alive(p) for p in pids)
    assert stack.state() is None
    assert "not running" not in stack.cli("status", check=1).out  # nothing recorded any more
