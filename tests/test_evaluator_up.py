"""`tunery up` runs the evaluator beside the other services and wires them: the evaluator finds the dataset and
trainer services and the gateway, and calls the gateway with the internal key `up` made for this data directory
(inference scope, kept in the data directory with mode 0600). Proved by a real Compare through the evaluator, and
by `tunery status` listing it."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
from pathlib import Path

from tunery.evaluator.v1 import evaluator_pb2 as pb
from tunery.runtime import client
from tunery.runtime.natsd import free_port
from tunery.testing import build_tiny_llama
from tunery.up import SERVICES, pid_alive
from tunery.up.wiring import KEY_FILE, internal_key, wire


def test_wiring_gives_the_evaluator_addresses_url_and_a_lasting_key(tmp_path: Path) -> None:
    env = {"TUNERY_DATASET_ADDR": "127.0.0.1:1", "TUNERY_TRAINER_ADDR": "127.0.0.1:2", "TUNERY_GATEWAY_PORT": "8123"}
    wire(env, {"dataset", "trainer", "evaluator", "gateway"}, tmp_path)
    key = env["TUNERY_GATEWAY_INTERNAL_API_KEY"]
    assert env["TUNERY_EVALUATOR_GATEWAY_API_KEY"] == key and len(key) > 40
    assert env["TUNERY_EVALUATOR_GATEWAY_URL"] == "http://127.0.0.1:8123/v1"
    assert env["TUNERY_EVALUATOR_DATASET_ADDR"] == "127.0.0.1:1"
    assert env["TUNERY_EVALUATOR_TRAINER_ADDR"] == "127.0.0.1:2"
    assert stat.S_IMODE((tmp_path / KEY_FILE).stat().st_mode) == 0o600
    assert internal_key(tmp_path) == key  # the same key on the next `up`
    mine = {"TUNERY_GATEWAY_INTERNAL_API_KEY": "tny-mine", "TUNERY_GATEWAY_PORT": "1"}
    wire(mine, {"evaluator", "gateway"}, tmp_path)
    assert mine["TUNERY_EVALUATOR_GATEWAY_API_KEY"] == "tny-mine"  # what the caller set wins


def test_up_starts_the_evaluator_and_it_reaches_the_gateway(tmp_path: Path) -> None:
    tiny = build_tiny_llama(tmp_path / "tiny-llama", data_dir=tmp_path)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TUNERY_", "OTEL_"))}
    env.update({f"{s.env_prefix}PORT": str(free_port()) for s in SERVICES})
    env.update(TUNERY_DATA_DIR=str(tmp_path), TUNERY_GATEWAY_BASE_MODELS=str(tiny), TUNERY_GATEWAY_TORCH_THREADS="1",
               COLUMNS="200", NO_COLOR="1", TERM="dumb")

    def cli(*args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "tunery.cli.main", *args], env=env, capture_output=True,
                              text=True, timeout=timeout, stdin=subprocess.DEVNULL)

    state_file = tmp_path / "run" / "up.json"
    try:
        up = cli("up", "--detach", "--nats-port", str(free_port()), "-s", "evaluator", "-s", "gateway")
        assert up.returncode == 0, up.stdout + up.stderr
        status = json.loads(cli("status", "--json").stdout)
        states = {c["name"]: c["state"] for c in status["components"]}
        assert states["evaluator"] == "SERVING" and status["healthy"] is True
        channel = client.channel(f"127.0.0.1:{env['TUNERY_EVALUATOR_PORT']}", timeout=120)
        try:
            from tunery.evaluator.v1 import evaluator_pb2_grpc

            stub = evaluator_pb2_grpc.EvaluatorServiceStub(channel)
            resp = stub.Compare(pb.CompareRequest(
                conversations=[pb.Conversation(messages=[pb.ChatMessage(role="user", content="Hello?")])],
                models=[pb.ModelRef(model=tiny.name)], generation=pb.GenerationConfig(max_tokens=3)))
        finally:
            channel.close()
        (result,) = resp.results
        assert not result.answers[0].error and result.answers[0].completion_tokens > 0, result
        assert (tmp_path / KEY_FILE).exists()
        key = (tmp_path / KEY_FILE).read_text().strip()
        logs = "".join(p.read_text(errors="replace") for p in (tmp_path / "logs").glob("*.log"))
        assert key not in logs  # never logged
    finally:
        pids = []
        if state_file.exists():
            state = json.loads(state_file.read_text())
            pids = [int(s["proc"]["pid"]) for s in state["services"].values()]
            pids += [int(state[k]["pid"]) for k in ("nats", "supervisor") if isinstance(state.get(k), dict)]
        cli("down", "--grace", "5", timeout=60)
        for pid in pids:  # nothing may outlive the test
            if pid_alive(pid):
                os.kill(pid, signal.SIGKILL)
