"""End-to-end tests of the `tunery` CLI: a real `tunery up --detach` (nats-server + dataset service processes),
driven through subprocesses exactly as a user would, with assertions on output and exit codes.

The module shares one running stack; the last test stops it with `tunery down`, and the fixture's finalizer makes
sure nothing is left running even when a test fails half-way.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tunery.runtime.natsd import free_port
from tunery.up import SERVICES, pid_alive

VALID: list[dict[str, object]] = [
    {"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "2+2?"},
                  {"role": "assistant", "content": "4"}]},
    {"messages": [{"role": "user", "content": "Capital of France?"}, {"role": "assistant", "content": "Paris.",
                                                                      "weight": 0},
                  {"role": "user", "content": "And of Italy?"}, {"role": "assistant", "content": "Rome."}]},
    {"messages": [{"role": "user", "content": "Say hi in Spanish, with an accent: é"},
                  {"role": "assistant", "content": "¡Hola! é"}]},
]


@dataclass
class Result:
    code: int
    out: str
    err: str


@dataclass
class Stack:
    data_dir: Path
    env: dict[str, str]
    dataset_port: int
    nats_port: int

    def cli(self, *args: str | Path | int, timeout: float = 60, check: int | None = 0) -> Result:
        proc = subprocess.run([sys.executable, "-m", "tunery.cli.main", *map(str, args)], env=self.env,
                              capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
        res = Result(proc.returncode, proc.stdout, proc.stderr)
        assert "Traceback" not in res.out + res.err, res.err
        if check is not None:
            assert res.code == check, f"tunery {' '.join(map(str, args))} -> {res.code}\n{res.out}\n{res.err}"
        return res

    def state(self) -> dict[str, object] | None:
        path = self.data_dir / "run" / "up.json"
        return json.loads(path.read_text()) if path.exists() else None


def _pids(state: dict[str, object] | None) -> list[int]:
    if not state:
        return []
    services = state["services"]
    assert isinstance(services, dict)
    pids = [int(s["proc"]["pid"]) for s in services.values()]
    for key in ("nats", "supervisor"):
        rec = state.get(key)
        if isinstance(rec, dict):
            pids.append(int(rec["pid"]))
    return pids


def _env(data_dir: Path, dataset_port: int) -> dict[str, str]:
    """No TUNERY_* from the caller; every service on a free port, so tests never collide with a running Tunery."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TUNERY_")}
    env.update({f"{s.env_prefix}PORT": str(free_port()) for s in SERVICES})
    env.update(TUNERY_DATA_DIR=str(data_dir), TUNERY_DATASET_PORT=str(dataset_port), COLUMNS="200", NO_COLOR="1",
               TERM="dumb")
    return env


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    data_dir = tmp_path_factory.mktemp("tunery-cli")
    dataset_port = free_port()
    s = Stack(data_dir, _env(data_dir, dataset_port), dataset_port, free_port())
    env = s.env
    started: list[int] = []
    try:
        # Only the dataset service: these tests are about the CLI, not about how fast other services start or drain.
        res = s.cli("up", "--detach", "--data-dir", data_dir, "--nats-port", s.nats_port, "--service", "dataset",
                    timeout=150)
        assert "dataset" in res.out and f"127.0.0.1:{s.dataset_port}" in res.out
        started = _pids(s.state())
        yield s
    finally:
        started = started or _pids(s.state())
        subprocess.run([sys.executable, "-m", "tunery.cli.main", "down", "--grace", "5"], env=env,
                       capture_output=True, timeout=60)
        for pid in started:  # last resort: nothing may outlive the tests
            if pid_alive(pid):
                try:
                    os.killpg(pid, signal.SIGKILL)
                except OSError:
                    os.kill(pid, signal.SIGKILL)


def _jsonl(path: Path, objs: list[dict[str, object]]) -> str:
    text = "".join(json.dumps(o, ensure_ascii=False) + "\n" for o in objs)
    path.write_text(text, encoding="utf-8")
    return text


def test_status_is_healthy(stack: Stack) -> None:
    res = stack.cli("status")
    assert "SERVING" in res.out and "reachable" in res.out
    doc = json.loads(stack.cli("status", "--json").out)
    assert doc["healthy"] is True
    assert {c["name"] for c in doc["components"]} == {"nats", "dataset"}
    state = stack.state()
    assert state is not None and state["nats_url"] == f"nats://127.0.0.1:{stack.nats_port}"


def test_second_up_fails_clearly(stack: Stack) -> None:
    res = stack.cli("up", "--detach", "--nats-port", free_port(), check=1)
    assert "already running" in res.err and "tunery down" in res.err


def test_upload_freeze_export_round_trip(stack: Stack, tmp_path: Path) -> None:
    res = stack.cli("datasets", "create", "support", "--description", "round trip")
    assert "created dataset support" in res.out
    assert "already exists" in stack.cli("datasets", "create", "support", check=1).err

    good = _jsonl(tmp_path / "good.jsonl", VALID)
    res = stack.cli("datasets", "upload", "support", tmp_path / "good.jsonl", "--tag", "seed")
    assert "uploaded 3 examples" in res.out and "the draft now has 3 examples" in res.out

    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps(VALID[0]) + "\n{not json\n" + json.dumps({"messages": [{"role": "bot",
                                                                                     "content": "x"}]}) + "\n")
    res = stack.cli("datasets", "upload", "support", bad, check=1)
    first_line = res.err.splitlines()[0]
    assert first_line.startswith("error: bad.jsonl: rejected, nothing stored")
    rows = [line for line in res.err.splitlines() if "bad.jsonl" in line and "│" in line]
    cells = [[c.strip() for c in row.split("│")[1:-1]] for row in rows]
    assert ["bad.jsonl", "2", "invalid_json"] == cells[0][:3]
    assert ["bad.jsonl", "3", "unrecognized_role", "messages[0].role"] == cells[1][:4]

    listed = json.loads(stack.cli("datasets", "examples", "support", "--json").out)
    assert len(listed["examples"]) == 3 and listed["page"]["total_size"] == 3
    assert all(e["tags"] == ["seed"] for e in listed["examples"])

    res = stack.cli("datasets", "list")
    assert "support" in res.out
    ds = json.loads(stack.cli("datasets", "show", "support", "--json").out)
    assert ds["draft_example_count"] == 3 and ds["latest_version"] == 0 and ds["format"] == "chat"

    assert "froze version 1 of support: 3 examples" in stack.cli("datasets", "freeze", "support", "-m", "v1").out
    versions = json.loads(stack.cli("datasets", "versions", "support", "--json").out)["versions"]
    assert [(v["number"], v["example_count"], v["message"]) for v in versions] == [(1, 3, "v1")]

    exported = stack.cli("datasets", "export", "support", "--version", "1").out
    assert exported == good
    out_file = tmp_path / "out.jsonl"
    stack.cli("datasets", "export", "support", "--version", "1", "-o", out_file)
    assert out_file.read_text(encoding="utf-8") == good

    assert "invalid_json" in stack.cli("datasets", "validate", bad, check=1).err


def test_problem_list_is_capped_with_a_count(stack: Stack, tmp_path: Path) -> None:
    stack.cli("datasets", "create", "capped")
    bad = tmp_path / "many.jsonl"
    bad.write_text("".join("[1]\n" for _ in range(60)))
    res = stack.cli("datasets", "upload", "capped", bad, check=1)
    assert "60 problem(s)" in res.err and "and 10 more" in res.err
    assert json.loads(stack.cli("datasets", "show", "capped", "--json").out)["draft_example_count"] == 0


def test_bundled_sample_uploads(stack: Stack) -> None:
    stack.cli("datasets", "create", "sample")
    res = stack.cli("datasets", "upload", "sample", "@sample")
    assert "uploaded 180 examples (chat" in res.out and "sample_chat.jsonl" in res.out
    assert "0 warnings" in stack.cli("datasets", "validate", "@sample").out


def test_example_editing_and_dedup(stack: Stack, tmp_path: Path) -> None:
    stack.cli("datasets", "create", "edits")
    one = json.dumps(VALID[0])
    ex_id = stack.cli("datasets", "add", "edits", one, "--tag", "a").out.split()[-1]
    (tmp_path / "ex.json").write_text(one)
    stack.cli("datasets", "add", "edits", f"@{tmp_path / 'ex.json'}")
    shown = json.loads(stack.cli("datasets", "example", "edits", ex_id, "--json").out)
    assert shown["id"] == ex_id and shown["tags"] == ["a"]

    res = stack.cli("datasets", "dedup", "edits", "--no-near")
    assert "exact" in res.out and "1 examples would be removed" in res.out
    res = stack.cli("datasets", "dedup", "edits", "--no-near", "--remove")
    assert "removed 1 examples; the draft now has 1" in res.out

    stack.cli("datasets", "edit", "edits", ex_id, json.dumps(VALID[2]))
    assert "updated tags of 1 examples" in stack.cli("datasets", "tag", "edits", ex_id, "--add", "b").out
    res = stack.cli("datasets", "examples", "edits", "--tag", "b", "--text", "hola")
    assert ex_id in res.out and "¡Hola! é" in res.out
    stack.cli("datasets", "rm-example", "edits", ex_id)
    assert "not" in stack.cli("datasets", "example", "edits", ex_id, check=1).err.lower()

    err = stack.cli("datasets", "add", "edits", '{"messages": []}', check=1).err
    assert err.startswith("error: the example is not valid") and "empty_messages" in err
    assert "deleted dataset edits" in stack.cli("datasets", "delete", "edits", "--yes").out


def test_user_errors_are_one_clean_line(stack: Stack, tmp_path: Path) -> None:
    res = stack.cli("datasets", "list", "--addr", f"127.0.0.1:{free_port()}", check=1)
    assert res.err.startswith("error: cannot reach the dataset service at 127.0.0.1:")
    assert "is `tunery up` running?" in res.err
    assert stack.cli("datasets", "upload", "support", tmp_path / "missing.jsonl", check=2).err
    assert "--add" in stack.cli("datasets", "tag", "support", "ex_1", check=2).err
    assert stack.cli("serve", "nonsense", check=2).err
    assert "only a trainer-worker trains" in stack.cli("serve", "dataset", "--processes-per-job", "2", check=2).err
    assert "unknown service" in stack.cli("up", "--service", "nonsense", check=2).err


def test_a_detached_stack_is_kept_running(stack: Stack) -> None:
    """`up --detach` leaves a supervisor in the background: a service that dies is restarted, as in the foreground."""
    state = stack.state()
    assert state is not None and isinstance(state["supervisor"], dict) and pid_alive(state["supervisor"]["pid"])
    dataset = state["services"]["dataset"]["proc"]["pid"]  # type: ignore[index]
    os.kill(dataset, signal.SIGKILL)
    deadline = time.monotonic() + 120
    while True:  # restarted, with its new pid in up.json, and healthy again
        doc = json.loads(stack.cli("status", "--json", check=None).out)
        row = next(c for c in doc["components"] if c["name"] == "dataset")
        if row["restarts"] == 1 and row["healthy"]:
            break
        assert time.monotonic() < deadline, f"the dataset service was not restarted: {row}"
    assert row["pid"] != dataset and pid_alive(row["pid"]) and row["last_exit"] == -signal.SIGKILL
    assert "dataset restarted" in (stack.data_dir / "logs" / "up.log").read_text()
    assert stack.cli("datasets", "list").code == 0


@pytest.mark.parametrize("stop_with", ["ctrl-c", "down"])
def test_foreground_up_stops_cleanly(tmp_path: Path, stop_with: str) -> None:
    """A foreground `up` (its own data dir and ports) stops everything on Ctrl-C, or on `down` from elsewhere."""
    dataset_port = free_port()
    fg = Stack(tmp_path, _env(tmp_path, dataset_port), dataset_port, free_port())
    env = fg.env
    proc = subprocess.Popen([sys.executable, "-m", "tunery.cli.main", "up", "--nats-port", str(fg.nats_port), "-s",
                             "dataset"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    pids: list[int] = []
    try:
        deadline = time.monotonic() + 120
        while not ((state := fg.state()) and state.get("ready")):
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "foreground up did not become ready"
            time.sleep(0.1)
        pids = _pids(state)
        assert len(pids) == 3 and all(pid_alive(p) for p in pids)  # supervisor, nats, dataset
        if stop_with == "ctrl-c":
            proc.send_signal(signal.SIGINT)
        else:
            assert "stopped dataset, nats" in fg.cli("down").out
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        assert "all healthy" in out and "Traceback" not in err
        assert not any(pid_alive(p) for p in pids)
        assert fg.state() is None
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
        for pid in pids:
            if pid_alive(pid):
                os.kill(pid, signal.SIGKILL)


def test_down_stops_everything(stack: Stack) -> None:
    pids = _pids(stack.state())
    assert pids and all(pid_alive(p) for p in pids)
    res = stack.cli("down")
    assert "stopped dataset, nats" in res.out
    assert not any(pid_alive(p) for p in pids)
    assert stack.state() is None
    res = stack.cli("status", check=1)
    assert "unreachable" in res.out
    assert "nothing to stop" in stack.cli("down").err
