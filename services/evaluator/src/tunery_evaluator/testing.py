"""What the evaluator's tests (and other tests that need an evaluator) share: the service as a real process
(`python -m tunery_evaluator`, so it can be killed and restarted), and waits on what can be observed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc

from tunery.common.v1 import common_pb2
from tunery.evaluator.v1 import evaluator_pb2 as pb
from tunery.evaluator.v1 import evaluator_pb2_grpc
from tunery.runtime import client

TERMINAL = (common_pb2.JOB_STATE_SUCCEEDED, common_pb2.JOB_STATE_FAILED, common_pb2.JOB_STATE_CANCELLED)


class EvaluatorProcess:
    """`python -m tunery_evaluator` with the given environment; `start()` returns once it printed its ready line."""

    def __init__(self, env: dict[str, str], log_path: Path, port: int) -> None:
        self.env = {**os.environ, **env, "TUNERY_EVALUATOR_PORT": str(port)}
        self.log_path = log_path
        self.port = port
        self.proc: subprocess.Popen[bytes] | None = None
        self.channel = client.channel(f"127.0.0.1:{port}", timeout=120)
        self.stub = evaluator_pb2_grpc.EvaluatorServiceStub(self.channel)

    def start(self, timeout: float = 120, **env: str) -> EvaluatorProcess:
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "tunery_evaluator"], env={**self.env, **env},
                                     stdout=subprocess.PIPE, stderr=log)
        ready = threading.Event()
        assert self.proc.stdout is not None
        out = self.proc.stdout

        def read() -> None:
            for line in out:
                log.write(line)
                log.flush()
                if b"evaluator service ready" in line:
                    ready.set()

        threading.Thread(target=read, daemon=True).start()
        deadline = time.monotonic() + timeout
        while not ready.wait(0.05):
            if self.proc.poll() is not None:
                raise RuntimeError(f"the evaluator exited with {self.proc.returncode}:\n{self.log()}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"the evaluator did not start within {timeout} s:\n{self.log()}")
        return self

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def kill(self) -> None:
        """SIGKILL: no drain, no ack, nothing finished."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(30)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def close(self) -> None:
        self.stop()
        self.channel.close()


def wait_until(what: str, check: Callable[[], Any], timeout: float = 60, poll: float = 0.05) -> Any:
    """Poll `check` until it returns something true, and return that."""
    deadline = time.monotonic() + timeout
    while True:
        got = check()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s: {what}")
        time.sleep(poll)


def get(stub: evaluator_pb2_grpc.EvaluatorServiceStub, evaluation_id: str) -> pb.Evaluation:
    return stub.GetEvaluation(pb.GetEvaluationRequest(evaluation_id=evaluation_id)).evaluation


def wait_state(stub: evaluator_pb2_grpc.EvaluatorServiceStub, evaluation_id: str, *states: int,
               timeout: float = 120) -> pb.Evaluation:
    wanted = states or TERMINAL

    def check() -> pb.Evaluation | None:
        try:
            ev = get(stub, evaluation_id)
        except grpc.RpcError as err:
            if err.code() == grpc.StatusCode.UNAVAILABLE:  # restarting
                return None
            raise
        return ev if ev.state in wanted else None

    return wait_until(f"evaluation {evaluation_id} in {wanted}", check, timeout)  # type: ignore[no-any-return]


def results(stub: evaluator_pb2_grpc.EvaluatorServiceStub, evaluation_id: str, *, follow: bool = False,
            after: int = 0) -> tuple[list[pb.ExampleResult], list[pb.Evaluation]]:
    """The results (and evaluation updates) StreamEvaluationResults sends."""
    out: list[pb.ExampleResult] = []
    evs: list[pb.Evaluation] = []
    req = pb.StreamEvaluationResultsRequest(evaluation_id=evaluation_id, after_sequence=after, no_follow=not follow)
    for item in stub.StreamEvaluationResults(req, timeout=300):
        if item.WhichOneof("item") == "result":
            out.append(item.result)
        else:
            evs.append(item.evaluation)
    return out, evs
