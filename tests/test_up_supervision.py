"""`tunery up` keeps the stack running like a process manager: a process that dies is restarted with backoff, the
rest keeps running, and only a crash loop makes it give up on that one process.

The restart policy is tested on real (tiny) processes; the whole behaviour with a real foreground `tunery up` (its
own data dir, free ports): a trainer worker SIGKILLed mid-job (as the kernel's OOM killer would) is restarted while
the gateway answers throughout, and the job finishes without anyone restarting anything. Every wait is for an
observable event (a file, a state, a line), with a deadline.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import pytest

from tunery.common.v1 import common_pb2
from tunery.errors import InvalidArgument
from tunery.runtime.natsd import free_port
from tunery.trainer.v1 import trainer_pb2 as pb
from tunery.trainer.v1 import trainer_pb2_grpc
from tunery.up import SERVICES, Child, ProcRecord, Restarter, RestartPolicy, Restarts, pid_alive
from tunery.up.procs import popen_logged

CLI = [sys.executable, "-m", "tunery.cli.main"]


def wait_for(what: str, check: Callable[[], Any], timeout: float, alive: subprocess.Popen[str] | None = None) -> Any:
    """Poll `check` until it returns something truthy; fail with `what` at the deadline or when `alive` exits."""
    deadline = time.monotonic() + timeout
    while not (result := check()):
        if alive is not None and alive.poll() is not None:
            pytest.fail(f"`tunery up` exited ({alive.returncode}) while waiting for {what}")
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.05)
    return result


# ---- the policy, on real processes -----------------------------------------------------------------------------


def _child(tmp_path: Path, name: str, code: str) -> Child:
    log = tmp_path / f"{name}.log"

    def launch() -> subprocess.Popen[bytes]:
        return popen_logged([sys.executable, "-c", code], log, os.environ, tmp_path)

    popen = launch()
    return Child(name, log, launch, ProcRecord.of(popen.pid), Restarts(), popen)


def _supervise(restarter: Restarter, children: list[Child], until: Callable[[], bool], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not until():
        assert time.monotonic() < deadline, "the supervisor did not get there in time"
        restarter.tick(children)
        time.sleep(min(0.02, restarter.next_due(children) or 0.02))


def test_backoff_doubles_up_to_its_cap() -> None:
    assert [RestartPolicy().delay(n) for n in range(7)] == [1, 2, 4, 8, 16, 30, 30]
    assert [RestartPolicy(backoff=0.5, backoff_max=3).delay(n) for n in range(5)] == [0.5, 1, 2, 3, 3]
    assert RestartPolicy(backoff=600).delay(3) == 600, "a long backoff is not cut to the default cap"
    with pytest.raises(InvalidArgument, match="window must be above 0 seconds"):
        RestartPolicy(window=0)
    with pytest.raises(InvalidArgument, match="max restarts must be 0 or more"):
        RestartPolicy(max_restarts=-1)


def test_a_crash_loop_is_given_up_on_while_the_rest_keeps_running(tmp_path: Path) -> None:
    said: list[str] = []
    restarter = Restarter(RestartPolicy(backoff=0.01, backoff_max=0.04, max_restarts=3, window=60), said.append)
    steady = _child(tmp_path, "steady", "import time; time.sleep(600)")
    crasher = _child(tmp_path, "crasher", "raise SystemExit(3)")
    first_pid = crasher.proc.pid
    children = [steady, crasher]
    try:
        _supervise(restarter, children, lambda: crasher.restarts.gave_up)
        assert crasher.restarts.count == 3 and crasher.restarts.last_exit == 3
        assert crasher.proc.pid != first_pid, "up.json's record names the latest process"
        assert not crasher.running and crasher.due is None and crasher.restarts.restart_at == ""
        delays = [line.split("restarting it in ")[1].split()[0] for line in said if "restarting it in" in line]
        assert delays == ["0.01", "0.02", "0.04"], said
        restarts = [re.fullmatch(r"crasher restarted \(pid (\d+), restart (\d)\)", line) for line in said
                    if "restarted" in line]
        assert [int(m.group(2)) for m in restarts if m] == [1, 2, 3], said
        assert "crasher (pid" in said[-1] and "exited with code 3 after 3 restarts within 60 s" in said[-1]
        assert "a crash loop, so `tunery up` gave up on it; everything else keeps running" in said[-1]
        log = crasher.log.read_text()
        assert log.count("=== tunery up: crasher exited with code 3; restarting in") == 3
        assert "gave up on it, the rest keeps running" in log

        for _ in range(5):  # given up means given up: no more starts
            assert not restarter.tick(children)
        assert crasher.restarts.count == 3
        assert steady.running and steady.proc.alive() and steady.restarts.count == 0, "the rest keeps running"
    finally:
        for c in children:
            if c.popen is not None and c.popen.poll() is None:
                c.popen.kill()
                c.popen.wait()


def test_restarts_older_than_the_window_do_not_count(tmp_path: Path) -> None:
    now = [0.0]
    said: list[str] = []
    restarter = Restarter(RestartPolicy(backoff=0, max_restarts=1, window=10), said.append, clock=lambda: now[0])
    crasher = _child(tmp_path, "crasher", "raise SystemExit(1)")
    children = [crasher]

    def exited() -> bool:
        return crasher.popen is not None and crasher.popen.poll() is not None

    wait_for("the first exit", exited, 30)
    restarter.tick(children)  # noticed: due at once (backoff 0)
    restarter.tick(children)  # restart 1, at t=0
    assert crasher.restarts.count == 1
    wait_for("the second exit", exited, 30)
    now[0] = 11.0  # its restart at t=0 is out of the 10 s window by now
    restarter.tick(children)
    assert not crasher.restarts.gave_up and crasher.due is not None
    restarter.tick(children)  # restart 2, at t=11
    wait_for("the third exit", exited, 30)
    restarter.tick(children)  # one restart within the window already: a crash loop
    assert crasher.restarts.gave_up and crasher.restarts.count == 2, said


# ---- a real `tunery up` ----------------------------------------------------------------------------------------


@dataclass
class Up:
    """A foreground `tunery up` in a subprocess, as a user runs it in a terminal."""

    data_dir: Path
    env: dict[str, str]
    proc: subprocess.Popen[str] | None = None
    seen: set[int] = field(default_factory=set)

    @property
    def said(self) -> str:
        return (self.data_dir / "up.err").read_text()

    def state(self) -> dict[str, Any] | None:
        try:
            return json.loads((self.data_dir / "run" / "up.json").read_text())  # type: ignore[no-any-return]
        except FileNotFoundError:
            return None

    def pids(self) -> dict[str, int]:
        state = self.state() or {}
        pids = {n: int(s["proc"]["pid"]) for n, s in state.get("services", {}).items()}
        pids |= {w["name"]: int(w["proc"]["pid"]) for w in state.get("workers", [])}
        pids |= {k: int(state[k]["pid"]) for k in ("nats", "supervisor") if isinstance(state.get(k), dict)}
        self.seen |= set(pids.values())
        return pids

    def cli(self, *args: str | Path | int, check: int = 0, timeout: float = 90) -> str:
        res = subprocess.run([*CLI, *map(str, args)], env=self.env, capture_output=True, text=True, timeout=timeout,
                             stdin=subprocess.DEVNULL)
        assert "Traceback" not in res.stdout + res.stderr, res.stderr
        assert res.returncode == check, f"tunery {' '.join(map(str, args))} -> {res.returncode}\n{res.stdout}" \
                                        f"\n{res.stderr}"
        return res.stdout


def _env(data_dir: Path, **extra: str) -> dict[str, str]:
    """No TUNERY_* from the caller; every service on a free port, so tests never collide with a running Tunery."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TUNERY_")}
    env.update({f"{s.env_prefix}PORT": str(free_port()) for s in SERVICES})
    env.update(TUNERY_DATA_DIR=str(data_dir), COLUMNS="200", NO_COLOR="1", TERM="dumb", **extra)
    return env


@contextmanager
def foreground_up(data_dir: Path, *args: str, **env: str) -> Iterator[Up]:
    up = Up(data_dir, _env(data_dir, **env))
    with (data_dir / "up.out").open("w") as out, (data_dir / "up.err").open("w") as err:
        up.proc = subprocess.Popen([*CLI, "up", "--nats-port", str(free_port()), *args], env=up.env, stdout=out,
                                   stderr=err, stdin=subprocess.DEVNULL, text=True)
    try:
        wait_for("`tunery up` to be ready", lambda: (up.state() or {}).get("ready"), 240, up.proc)
        up.pids()
        yield up
    finally:
        up.pids()
        if up.proc.poll() is None:
            up.proc.send_signal(signal.SIGINT)
            try:
                up.proc.wait(90)
            except subprocess.TimeoutExpired:
                up.proc.kill()
                up.proc.wait()
        for pid in up.seen:  # last resort: nothing may outlive the tests
            if pid_alive(pid):
                try:
                    os.killpg(pid, signal.SIGKILL)
                except OSError:
                    os.kill(pid, signal.SIGKILL)


def _stop(up: Up) -> tuple[int, set[int]]:
    """Ctrl-C, as a user would; returns the exit code and every pid the run ever had."""
    assert up.proc is not None
    every = set(up.seen) | set(up.pids().values())
    up.proc.send_signal(signal.SIGINT)
    return up.proc.wait(90), every


def test_ctrl_c_while_a_restart_waits_for_its_backoff(tmp_path: Path) -> None:
    """A long backoff is no reason to wait: Ctrl-C stops at once and leaves nothing behind; status says it all."""
    with foreground_up(tmp_path, "-s", "dataset", "--restart-backoff", "600") as up:
        before = up.pids()
        os.kill(before["dataset"], signal.SIGKILL)
        wait_for("the restart to be scheduled",
                 lambda: (up.state() or {})["services"]["dataset"]["restarts"]["restart_at"], 60, up.proc)
        doc = json.loads(up.cli("status", "--json", check=1))  # unhealthy while it waits
        dataset = next(c for c in doc["components"] if c["name"] == "dataset")
        assert dataset["state"].startswith("restarting in ") and not dataset["healthy"]
        assert dataset["last_exit"] == -signal.SIGKILL and dataset["restarts"] == 0
        table = up.cli("status", check=1)
        assert "restarting in" in table and "SIGKILL" in table and "last exit" in table
        assert pid_alive(before["nats"]), "the rest keeps running"
        code, pids = _stop(up)
        assert code == 0, up.said
        assert not any(pid_alive(p) for p in pids)
        assert up.state() is None
        assert "dataset (pid" in up.said and "restarting it in 600 s" in up.said
        assert "dataset restarted" not in up.said


def _trainer(up: Up) -> trainer_pb2_grpc.TrainerServiceStub:
    return trainer_pb2_grpc.TrainerServiceStub(grpc.insecure_channel(f"127.0.0.1:{up.env['TUNERY_TRAINER_PORT']}"))


class Poller(threading.Thread):
    """GET the gateway's /health again and again, recording every answer, until told to stop."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url = url
        self.answers: list[tuple[float, int | str]] = []
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            try:
                with urllib.request.urlopen(self.url, timeout=10) as resp:
                    self.answers.append((time.monotonic(), resp.status))
            except Exception as err:  # recorded, so the test says what went wrong
                self.answers.append((time.monotonic(), repr(err)))
            self.done.wait(0.05)


def test_a_worker_killed_mid_job_is_restarted_and_the_job_finishes(tmp_path: Path) -> None:
    from tunery.testing import build_tiny_llama

    t0 = time.monotonic()
    timeline: list[tuple[float, str]] = []

    def mark(what: str) -> None:
        timeline.append((time.monotonic() - t0, what))

    # The tiny model (torch import, tokenizer conversion) builds while the stack starts. A short ack wait: the job
    # of a killed worker goes back to the queue after 5 s, not 30 (heartbeats every second keep a live one's).
    try:
        with ThreadPoolExecutor(1) as pool:
            tiny = pool.submit(build_tiny_llama, tmp_path / "tiny-llama", data_dir=tmp_path)
            with foreground_up(tmp_path, "-s", "dataset", "-s", "trainer", "-s", "gateway",
                               TUNERY_TRAINER_ACK_WAIT_SECONDS="5") as up:
                _kill_the_worker_mid_job(up, tiny.result, mark)
    finally:
        print("\n".join(f"{t:7.1f} s  {what}" for t, what in timeline))  # shown with -s, or when it fails


def _kill_the_worker_mid_job(up: Up, tiny_model: Callable[..., Path], mark: Callable[[str], None]) -> None:
    tmp_path = up.data_dir
    mark("tunery up ready")
    rows = "".join(json.dumps({"messages": [{"role": "user", "content": f"{i} doubled?"},
                                            {"role": "assistant", "content": f"{2 * i}."}]}) + "\n"
                   for i in range(24))
    (tmp_path / "doubling.jsonl").write_text(rows)
    up.cli("datasets", "create", "doubling")
    up.cli("datasets", "upload", "doubling", tmp_path / "doubling.jsonl")
    up.cli("datasets", "freeze", "doubling")
    model = tiny_model(timeout=300)
    before = up.pids()
    worker = before["trainer-worker-0"]

    poller = Poller(f"http://127.0.0.1:{up.env['TUNERY_GATEWAY_PORT']}/health")
    poller.start()
    try:
        wait_for("the gateway's first answer", lambda: poller.answers, 30)
        job_id = json.loads(up.cli("jobs", "create", "--dataset", "doubling", "--version", 1, "--backend", "echo",
                                   "--model", model, "--config", "step_seconds=0.25", "--epochs", 10,
                                   "--batch-size", 4, "--checkpoint-every", 3, "--json"))["job"]["id"]
        mark(f"job {job_id} created: 60 steps of 0.25 s, a checkpoint every 3")
        trainer = _trainer(up)

        def checkpointed() -> int:
            cks = trainer.ListCheckpoints(pb.ListCheckpointsRequest(job_id=job_id)).checkpoints
            return max((c.step for c in cks if c.step >= 6), default=0)

        step = wait_for("a checkpoint at step 6 or later", checkpointed, 120, up.proc)
        mark(f"checkpoint at step {step}")
        os.kill(worker, signal.SIGKILL)
        killed_at = time.monotonic()
        job = trainer.GetJob(pb.GetJobRequest(job_id=job_id)).job
        mark(f"SIGKILLed trainer-worker-0 (pid {worker}) at step {job.step}/60")
        assert job.state == common_pb2.JOB_STATE_RUNNING and job.step < 60, "killed mid-job"

        def restarted() -> dict[str, Any] | None:
            w = (up.state() or {"workers": [{}]})["workers"][0]
            return w if w.get("restarts", {}).get("count") == 1 and w["proc"]["pid"] != worker else None

        record = wait_for("the supervisor to restart the worker", restarted, 60, up.proc)
        new_pid = record["proc"]["pid"]
        mark(f"up.json: trainer-worker-0 restarted as pid {new_pid}")
        assert record["restarts"]["last_exit"] == -signal.SIGKILL and pid_alive(new_pid, record["proc"]["start"])

        # Nobody restarts anything: the job goes back to the queue, the new worker resumes it to its end.
        watched = up.cli("jobs", "watch", job_id, timeout=240)
        mark("job succeeded")
    finally:
        poller.done.set()
        poller.join(30)
    assert f"job {job_id} succeeded" in watched and "(60/60 steps" in watched, watched
    done = trainer.GetJob(pb.GetJobRequest(job_id=job_id)).job
    assert done.state == common_pb2.JOB_STATE_SUCCEEDED and done.attempts >= 2, "redelivered after the kill"
    resumed = [int(line.split("resuming at step ")[1].split()[0].rstrip(",:;"))
               for line in watched.splitlines() if "resuming at step " in line]
    checkpoints = {c.step for c in trainer.ListCheckpoints(pb.ListCheckpointsRequest(job_id=job_id)).checkpoints}
    assert resumed and resumed[-1] - 1 in checkpoints and resumed[-1] >= step + 1, watched
    mark(f"the redelivered job resumed at step {resumed[-1]}")

    # The gateway answered 200 throughout, from before the kill until the job ended.
    failures = [a for a in poller.answers if a[1] != 200]
    assert not failures, failures[:5]
    assert poller.answers[0][0] < killed_at < poller.answers[-1][0]
    mark(f"gateway: {len(poller.answers)} answers, every one 200")

    # The rest kept running: the same processes as before the kill.
    after = up.pids()
    assert {k: v for k, v in after.items() if k != "trainer-worker-0"} == {
        k: v for k, v in before.items() if k != "trainer-worker-0"}
    doc = json.loads(up.cli("status", "--json"))
    assert doc["healthy"] is True
    w = next(c for c in doc["components"] if c["name"] == "trainer-worker-0")
    assert (w["state"], w["pid"], w["restarts"], w["last_exit"]) == ("running", new_pid, 1, -signal.SIGKILL)
    wait_for("the supervisor to say the worker is ready again", lambda: "trainer-worker-0 is ready again" in up.said,
             60, up.proc)
    said = up.said
    assert f"trainer-worker-0 (pid {worker}) was killed by SIGKILL; restarting it in 1 s" in said
    assert f"trainer-worker-0 restarted (pid {new_pid}, restart 1)" in said
    log = (tmp_path / "logs" / "trainer-worker-0.log").read_text()
    assert "=== tunery up: trainer-worker-0 was killed by SIGKILL; restarting in 1 s" in log

    code, pids = _stop(up)
    mark("Ctrl-C: stopped")
    assert code == 0, said
    assert not any(pid_alive(p) for p in pids), "the restarted worker is stopped too"
    assert up.state() is None
