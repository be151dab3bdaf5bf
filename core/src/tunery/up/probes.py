"""Health probes (gRPC health, HTTP /health, a NATS greeting) and `tunery status`, which reads up.json and asks each
process how it is; where it addresses clients: `service_address`."""

from __future__ import annotations

import contextlib
import os
import socket
import urllib.error
import urllib.request
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tunery.errors import TuneryError
from tunery.runtime.client import channel
from tunery.up.catalog import DEFAULT_NATS_PORT, HOST, SERVICES, spec
from tunery.up.procs import ProcRecord
from tunery.up.state import Layout, Restarts, RunState

Health = Literal["SERVING", "NOT_SERVING", "UNKNOWN", "SERVICE_UNKNOWN", "unreachable"]


def check_health(address: str, kind: str = "grpc", timeout: float = 2.0) -> Health:
    """Ask a service how it is; `unreachable` when nothing answers."""
    if kind == "http":
        try:
            with urllib.request.urlopen(f"http://{address}/health", timeout=timeout) as resp:
                return "SERVING" if resp.status == 200 else "NOT_SERVING"
        except urllib.error.HTTPError:
            return "NOT_SERVING"
        except (urllib.error.URLError, OSError):
            return "unreachable"
    ch = channel(address, timeout=timeout)
    try:
        resp = health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(service=""), timeout=timeout)
        return health_pb2.HealthCheckResponse.ServingStatus.Name(resp.status)  # type: ignore[return-value]
    except grpc.RpcError as err:
        if err.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):  # type: ignore[attr-defined]
            return "unreachable"
        return "NOT_SERVING"
    finally:
        ch.close()


def nats_reachable(url: str, timeout: float = 2.0) -> bool:
    """A NATS server greets every connection with `INFO {...}`; seeing it proves more than an open port."""
    parts = urlsplit(url)
    host, port = parts.hostname or HOST, parts.port or 4222
    try:
        with socket.create_connection((host, port), timeout=timeout) as s:
            if parts.scheme not in ("nats", "tls"):
                return True
            s.settimeout(timeout)
            return s.recv(5) == b"INFO "
    except OSError:
        return False


def service_address(name: str, data_dir: Path | str | None = None) -> str:
    """Where clients find a service: `TUNERY_<SERVICE>_ADDR`, else the running `tunery up`, else the default port."""
    s = spec(name)
    if addr := s.env("addr"):
        return addr
    with contextlib.suppress(TuneryError):
        state = RunState.read(Layout.of(data_dir))
        if state is not None and name in state.services:
            return state.services[name].address
    return f"{HOST}:{s.port()}"


@dataclass(frozen=True, slots=True)
class StatusRow:
    component: str
    address: str
    state: str
    healthy: bool
    pid: int | None = None
    log: str = ""
    restarts: int = 0
    """How often `up` restarted it after it exited on its own."""
    last_exit: int | None = None
    """Its last exit status (negative: the signal that killed it); None if it never exited."""


def _supervised(restarts: Restarts) -> str:
    """`restarting in 3 s` while a process waits for its backoff, `gave up` after a crash loop; else ""."""
    if restarts.gave_up:
        return "gave up (crash loop)"
    if restarts.restart_at:
        with contextlib.suppress(ValueError):
            left = (datetime.fromisoformat(restarts.restart_at) - datetime.now(UTC)).total_seconds()
            return f"restarting in {max(0.0, left):.0f} s"
        return "restarting"
    return ""


def status(data_dir: Path | str | None = None, timeout: float = 2.0) -> tuple[list[StatusRow], RunState | None]:
    """Health of NATS and of each service that `up` started, or else of each installed one at its configured address;
    a process the supervisor is restarting, or gave up on, is said so (and unhealthy) without asking it."""
    layout = Layout.of(data_dir)
    state = RunState.read(layout)
    rows = []

    def row(name: str, address: str, probe: str, proc: ProcRecord | None, log: str, restarts: Restarts) -> StatusRow:
        """`probe`: http, grpc, nats, or process (a worker: is it running)."""
        said = _supervised(restarts)
        if said:
            text, ok = said, False
        elif probe == "nats":
            ok = nats_reachable(address, timeout)
            text = "reachable" if ok else "unreachable"
        elif probe == "process":
            ok = proc is not None and proc.alive()
            text = "running" if ok else "not running"
        else:
            text = check_health(address, probe, timeout)
            ok = text == "SERVING"
        return StatusRow(name, address, text, ok, proc.pid if proc else None, log, restarts.count, restarts.last_exit)

    if state is None:
        nats_url = os.environ.get("TUNERY_NATS_URL") or f"nats://{HOST}:{DEFAULT_NATS_PORT}"
        rows.append(row("nats", nats_url, "nats", None, "", Restarts()))
        for s in SERVICES:
            if s.installed:
                rows.append(row(s.name, service_address(s.name, layout.data_dir), s.health, None, "", Restarts()))
        return rows, state
    rows.append(row("nats", state.nats_url, "nats", state.nats, state.nats_log, state.nats_restarts))
    for r in state.services.values():
        rows.append(row(r.name, r.address, r.health, r.proc, r.log, r.restarts))
    for w in state.workers:
        rows.append(row(w.name, "", "process", w.proc, w.log, w.restarts))
    return rows, state
