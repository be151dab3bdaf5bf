"""`tunery up`: every service as its own process plus an embedded nats-server, on one machine.

The supervisor records what it started in `<data_dir>/run/up.json` (pids with their start times, ports, the NATS
URL), so that `tunery down` and `tunery status` in another terminal act on exactly those processes, and a pid that
the kernel has since handed to an unrelated program is never signalled. Services run in their own sessions: a
Ctrl-C in the terminal reaches only the supervisor, which then stops trainer workers first (they checkpoint and
hand their job back), then services, and NATS last, so in-flight work can still publish its events while draining.
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib.util
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any, Literal
from urllib.parse import urlsplit

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tunery.errors import FailedPrecondition, InvalidArgument, TuneryError
from tunery.runtime.client import channel
from tunery.runtime.natsd import NatsServer

HOST = "127.0.0.1"
DEFAULT_NATS_PORT = 4223
STOP_GRACE = 15.0
"""Longer than a service's own drain (`grace_seconds`, 10 s) so a clean drain is never cut short by SIGKILL."""
START_TIMEOUT = 120.0
STATE_VERSION = 1

Report = Callable[[str], None]
Health = Literal["SERVING", "NOT_SERVING", "UNKNOWN", "SERVICE_UNKNOWN", "unreachable"]


@dataclass(frozen=True, slots=True)
class ServiceSpec:
    """One deployable service: how to start it, where it listens by default, how to ask it whether it is healthy."""

    name: str
    module: str
    default_port: int
    env_prefix: str
    package: str
    health: Literal["grpc", "http"] = "grpc"

    @property
    def installed(self) -> bool:
        """Runnable as `python -m module`; checked without importing it (a trainer may pull in torch)."""
        try:
            found = importlib.util.find_spec(self.module)
        except (ImportError, ValueError):
            return False
        if found is None:
            return False
        locations = found.submodule_search_locations
        return locations is None or any((Path(loc) / "__main__.py").exists() for loc in locations)

    def env(self, field_name: str) -> str | None:
        return os.environ.get(f"{self.env_prefix}{field_name.upper()}") or None

    def port(self) -> int:
        raw = self.env("port")
        if raw is None:
            return self.default_port
        try:
            port = int(raw)
        except ValueError:
            port = -1
        if not 0 < port < 65536:
            raise InvalidArgument(f"{self.env_prefix}PORT must be a port number (1-65535), not {raw!r}",
                                  code="invalid_port", field=f"{self.env_prefix}PORT")
        return port


# Order matters: services start in this order and stop in reverse; later ones may call earlier ones.
SERVICES: tuple[ServiceSpec, ...] = (
    ServiceSpec("dataset", "tunery_dataset", 50051, "TUNERY_DATASET_", "tunery-dataset"),
    ServiceSpec("trainer", "tunery_trainer", 50052, "TUNERY_TRAINER_", "tunery-trainer"),
    ServiceSpec("evaluator", "tunery_evaluator", 50053, "TUNERY_EVALUATOR_", "tunery-evaluator"),
    ServiceSpec("gateway", "tunery_gateway", 8000, "TUNERY_GATEWAY_", "tunery-gateway", health="http"),
)
SPECS = {s.name: s for s in SERVICES}

WORKER = "trainer-worker"
"""`tunery serve trainer-worker`: a process that pulls training jobs from the NATS work queue; it serves no port."""
WORKER_MODULE = "tunery_trainer.worker"
WORKER_READY = re.compile(rb"^trainer worker \S+ ready$", re.MULTILINE)
"""The line a worker prints once it is subscribed to the queue (tunery_trainer.worker); its only health signal."""


def spec(name: str) -> ServiceSpec:
    if name not in SPECS:
        raise InvalidArgument(f"unknown service {name!r}; valid: {', '.join(SPECS)}", code="unknown_service",
                              field="service")
    return SPECS[name]


# ---- state on disk ---------------------------------------------------------------------------------------------


def default_data_dir() -> Path:
    """Same rule as `tunery.settings.default_data_dir`, without importing pydantic into every CLI command."""
    return Path(os.environ.get("TUNERY_DATA_DIR", "~/.tunery")).expanduser()


@dataclass(frozen=True, slots=True)
class Layout:
    data_dir: Path

    @classmethod
    def of(cls, data_dir: Path | str | None) -> Layout:
        return cls(Path(data_dir).expanduser().resolve() if data_dir else default_data_dir().resolve())

    @property
    def run_dir(self) -> Path:
        return self.data_dir / "run"

    @property
    def state_file(self) -> Path:
        return self.run_dir / "up.json"

    @property
    def lock_file(self) -> Path:
        return self.run_dir / "up.lock"

    @property
    def log_dir(self) -> Path:
        return self.data_dir / "logs"

    def log(self, name: str) -> Path:
        return self.log_dir / f"{name}.log"


@dataclass(slots=True)
class ProcRecord:
    """A pid plus its kernel start time: together they name one process for its whole life, never a successor."""

    pid: int
    start: str = ""

    @classmethod
    def of(cls, pid: int) -> ProcRecord:
        return cls(pid, _proc_start(pid))

    def alive(self) -> bool:
        return pid_alive(self.pid, self.start)


@dataclass(slots=True)
class ServiceRecord:
    name: str
    module: str
    address: str
    port: int
    log: str
    health: str
    proc: ProcRecord


@dataclass(slots=True)
class WorkerRecord:
    """A trainer worker: no address to ask, so its health is whether the process still runs."""

    name: str
    module: str
    log: str
    proc: ProcRecord


@dataclass(slots=True)
class RunState:
    data_dir: str
    nats_url: str
    nats: ProcRecord | None
    nats_log: str
    services: dict[str, ServiceRecord] = field(default_factory=dict)
    workers: list[WorkerRecord] = field(default_factory=list)
    supervisor: ProcRecord | None = None
    ready: bool = False
    started_at: str = ""
    version: int = STATE_VERSION

    def processes(self) -> list[ProcRecord]:
        procs = [w.proc for w in self.workers] + [s.proc for s in self.services.values()]
        return procs + [p for p in (self.nats, self.supervisor) if p is not None]

    def any_alive(self) -> bool:
        return any(p.alive() for p in self.processes())

    def write(self, layout: Layout) -> None:
        """Atomically, so a reader never sees half a file."""
        layout.run_dir.mkdir(parents=True, exist_ok=True)
        tmp = layout.state_file.with_suffix(f".tmp{os.getpid()}")
        tmp.write_text(json.dumps(asdict(self), indent=2) + "\n")
        tmp.replace(layout.state_file)

    @classmethod
    def read(cls, layout: Layout) -> RunState | None:
        try:
            raw: dict[str, Any] = json.loads(layout.state_file.read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as err:
            raise FailedPrecondition(f"{layout.state_file} is unreadable ({err}); if nothing runs, delete it",
                                     code="bad_state_file") from err

        def proc(d: dict[str, Any] | None) -> ProcRecord | None:
            return ProcRecord(int(d["pid"]), str(d.get("start", ""))) if d else None

        try:
            services = {
                name: ServiceRecord(s["name"], s["module"], s["address"], int(s["port"]), s["log"],
                                    s.get("health", "grpc"), ProcRecord(int(s["proc"]["pid"]),
                                                                        str(s["proc"].get("start", ""))))
                for name, s in raw.get("services", {}).items()
            }
            workers = [WorkerRecord(w["name"], w["module"], w["log"], ProcRecord(int(w["proc"]["pid"]),
                                                                                 str(w["proc"].get("start", ""))))
                       for w in raw.get("workers", [])]
            return cls(data_dir=raw["data_dir"], nats_url=raw["nats_url"], nats=proc(raw.get("nats")),
                       nats_log=raw.get("nats_log", ""), services=services, workers=workers,
                       supervisor=proc(raw.get("supervisor")),
                       ready=bool(raw.get("ready")), started_at=raw.get("started_at", ""),
                       version=int(raw.get("version", STATE_VERSION)))
        except (KeyError, TypeError, ValueError) as err:
            raise FailedPrecondition(f"{layout.state_file} is malformed ({err!r}); if nothing runs, delete it",
                                     code="bad_state_file") from err


def remove_state(layout: Layout) -> None:
    layout.state_file.unlink(missing_ok=True)


# ---- processes -------------------------------------------------------------------------------------------------


def _proc_stat(pid: int) -> list[str] | None:
    """Fields of /proc/<pid>/stat after the command name (which may itself contain spaces and parentheses)."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return raw.rsplit(")", 1)[1].split()


def _proc_start(pid: int) -> str:
    fields = _proc_stat(pid)
    return fields[19] if fields and len(fields) > 19 else ""


def pid_alive(pid: int, start: str = "") -> bool:
    """True while `pid` runs and (when `start` is known) is still the process we started; zombies count as gone."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, but not ours to signal
    fields = _proc_stat(pid)
    if fields is None:
        return not Path("/proc/self/stat").exists()  # no procfs (macOS): trust kill(0)
    if fields[0] in ("Z", "X"):
        return False
    return not start or fields[19] == start


def _signal(proc: ProcRecord, sig: signal.Signals) -> None:
    """Signal the process group when the process leads one (services do), so helpers it spawned stop too."""
    if not proc.alive():
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        if os.getpgid(proc.pid) == proc.pid:
            os.killpg(proc.pid, sig)
        else:
            os.kill(proc.pid, sig)


def stop_processes(procs: list[ProcRecord], grace: float, *, popens: dict[int, subprocess.Popen[bytes]] | None = None,
                   force: Callable[[], bool] = lambda: False) -> list[int]:
    """SIGTERM, wait up to `grace` seconds, then SIGKILL; returns the pids that had to be killed."""
    popens = popens or {}

    def alive(p: ProcRecord) -> bool:
        if p.pid in popens:  # our child: poll() also reaps it
            return popens[p.pid].poll() is None
        return p.alive()

    running = [p for p in procs if alive(p)]
    for p in running:
        _signal(p, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while running and time.monotonic() < deadline and not force():
        time.sleep(0.05)
        running = [p for p in running if alive(p)]
    killed = []
    for p in running:
        _signal(p, signal.SIGKILL)
        killed.append(p.pid)
    deadline = time.monotonic() + 5
    while running and time.monotonic() < deadline:
        time.sleep(0.05)
        running = [p for p in running if alive(p)]
    return killed


def log_tail(path: Path | str, lines: int = 15) -> str:
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            fh.seek(max(0, fh.tell() - 16384))
            text = fh.read().decode(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def port_free(port: int, host: str = HOST) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


# ---- health ----------------------------------------------------------------------------------------------------


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


def status(data_dir: Path | str | None = None, timeout: float = 2.0) -> tuple[list[StatusRow], RunState | None]:
    """Health of NATS and of each service that `up` started, or else of each installed one at its configured address."""
    layout = Layout.of(data_dir)
    state = RunState.read(layout)
    rows = []
    targets: list[tuple[str, str, str, int | None, str]]
    if state is not None:
        nats_url, nats_pid, nats_log = state.nats_url, state.nats.pid if state.nats else None, state.nats_log
        targets = [(r.name, r.address, r.health, r.proc.pid, r.log) for r in state.services.values()]
    else:
        nats_url = os.environ.get("TUNERY_NATS_URL") or f"nats://{HOST}:{DEFAULT_NATS_PORT}"
        nats_pid, nats_log = None, ""
        targets = [(s.name, service_address(s.name, layout.data_dir), s.health, None, "")
                   for s in SERVICES if s.installed]
    ok = nats_reachable(nats_url, timeout)
    rows.append(StatusRow("nats", nats_url, "reachable" if ok else "unreachable", ok, nats_pid, nats_log))
    for name, address, kind, pid, log in targets:
        h = check_health(address, kind, timeout)
        rows.append(StatusRow(name, address, h, h == "SERVING", pid, log))
    for w in state.workers if state is not None else ():
        alive = w.proc.alive()
        rows.append(StatusRow(w.name, "", "running" if alive else "not running", alive, w.proc.pid, w.log))
    return rows, state


# ---- up / down -------------------------------------------------------------------------------------------------


class Interrupted(Exception):
    """SIGINT/SIGTERM arrived while starting: undo what was started."""


class AlreadyRunning(FailedPrecondition):
    pass


def _describe(state: RunState) -> str:
    where = ", ".join(f"{r.name} on {r.address}" for r in state.services.values()) or "no services"
    if state.workers:
        where += f", {len(state.workers)} trainer worker(s)"
    mode = f"foreground, pid {state.supervisor.pid}" if state.supervisor and state.supervisor.alive() else "detached"
    return f"{where}; NATS at {state.nats_url} ({mode})"


class Supervisor:
    """Starts NATS, the services and trainer workers, waits until they are ready, and stops them in reverse order."""

    def __init__(self, data_dir: Path | str | None, *, nats_port: int = DEFAULT_NATS_PORT, report: Report = print,
                 grace: float = STOP_GRACE, only: Sequence[str] = (), workers: int = 1) -> None:
        if workers < 0:
            raise InvalidArgument(f"workers must be 0 or more, not {workers}", code="invalid_workers", field="workers")
        self.layout = Layout.of(data_dir)
        self.only = [spec(n).name for n in only]
        self.workers = workers
        self.nats_port = nats_port
        self.report = report
        self.grace = grace
        self.nats: NatsServer | None = None
        self.popens: dict[str, subprocess.Popen[bytes]] = {}
        self.worker_popens: dict[str, subprocess.Popen[bytes]] = {}
        self.state: RunState | None = None
        self._lock_fd: int | None = None
        self._stop = threading.Event()
        self._starting = True
        self._stopping = False
        self._force = False
        self._signal_name = ""

    def _say(self, message: str) -> None:
        """Report, but never let a closed terminal (SIGHUP) keep the services from being stopped."""
        with contextlib.suppress(OSError):
            self.report(message)

    # -- signals --
    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        self._signal_name = signal.Signals(signum).name
        if self._stopping:
            self._force = True  # a second Ctrl-C while stopping: stop waiting for drains
            return
        self._stop.set()
        if self._starting:
            self._stopping = True
            raise Interrupted(self._signal_name)

    def install_signals(self) -> None:
        """SIGHUP too: closing the terminal of a foreground `up` must not orphan the services."""
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, self._on_signal)

    # -- start --
    def _lock(self) -> None:
        self.layout.run_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.layout.lock_file, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            state = RunState.read(self.layout)
            detail = _describe(state) if state else "still starting"
            raise AlreadyRunning(f"tunery is already running from {self.layout.data_dir}: {detail}; "
                                 "stop it with `tunery down`", code="already_running") from None
        self._lock_fd = fd

    def _unlock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def _check_not_running(self) -> None:
        state = RunState.read(self.layout)
        if state is not None and state.any_alive():
            raise AlreadyRunning(f"tunery is already running from {self.layout.data_dir}: {_describe(state)}; "
                                 "stop it with `tunery down`", code="already_running")

    def _plan(self) -> list[ServiceSpec]:
        plan = []
        for s in SERVICES:
            if self.only and s.name not in self.only:
                continue
            if not s.installed:
                if self.only:
                    raise FailedPrecondition(f"the {s.name} service is not installed: pip install {s.package}",
                                             code="service_not_installed", field="service")
                self._say(f"{s.name}: not installed, skipped (pip install {s.package})")
                continue
            port = s.port()
            if not port_free(port):
                raise FailedPrecondition(f"port {port} for the {s.name} service is in use on {HOST}; stop what "
                                         f"holds it or set {s.env_prefix}PORT", code="port_in_use",
                                         field=f"{s.env_prefix}PORT")
            plan.append(s)
        if not plan:
            raise FailedPrecondition("no Tunery service is installed: pip install tunery-dataset",
                                     code="no_services")
        return plan

    def _start_nats(self) -> tuple[str, ProcRecord | None, str]:
        external = os.environ.get("TUNERY_NATS_URL")
        if external:
            if not nats_reachable(external):
                raise FailedPrecondition(f"TUNERY_NATS_URL={external} does not answer; start that NATS server or "
                                         "unset TUNERY_NATS_URL to use an embedded one", code="nats_unreachable")
            return external, None, ""
        if not port_free(self.nats_port):
            raise FailedPrecondition(f"port {self.nats_port} for the embedded NATS server is in use on {HOST}; "
                                     "pass --nats-port, or set TUNERY_NATS_URL to use that server",
                                     code="port_in_use", field="nats_port")
        log = self.layout.log("nats")
        self.nats = NatsServer(self.layout.data_dir / "nats", port=self.nats_port, host=HOST, log_file=log)
        self.nats.start()
        assert self.nats.proc is not None
        return self.nats.url, ProcRecord.of(self.nats.proc.pid), str(log)

    def _popen(self, module: str, log: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
        """In its own session (a terminal's Ctrl-C reaches only the supervisor), output appended to `log`."""
        with log.open("ab") as fh:
            fh.write(f"\n=== tunery up: starting {module} at {datetime.now(UTC).isoformat()} ===\n".encode())
            fh.flush()
            return subprocess.Popen([sys.executable, "-m", module], env=env, stdin=subprocess.DEVNULL, stdout=fh,
                                    stderr=subprocess.STDOUT, cwd=self.layout.data_dir, start_new_session=True)

    def _spawn(self, s: ServiceSpec, env: dict[str, str]) -> ServiceRecord:
        log = self.layout.log(s.name)
        proc = self.popens[s.name] = self._popen(s.module, log, env)
        port = int(env[f"{s.env_prefix}PORT"])
        return ServiceRecord(s.name, s.module, f"{HOST}:{port}", port, str(log), s.health, ProcRecord.of(proc.pid))

    def _spawn_worker(self, index: int, env: dict[str, str]) -> tuple[WorkerRecord, int]:
        """Returns the record and where this run's output starts in the (appended) log."""
        name = f"{WORKER}-{index}"
        log = self.layout.log(name)
        offset = log.stat().st_size if log.exists() else 0
        proc = self.worker_popens[name] = self._popen(WORKER_MODULE, log, env)
        return WorkerRecord(name, WORKER_MODULE, str(log), ProcRecord.of(proc.pid)), offset

    def _wait_workers_ready(self, offsets: dict[str, int], timeout: float) -> None:
        """A worker is ready once it says so in its log: it has no port, but a bad NATS URL should fail `up` now."""
        assert self.state is not None
        pending = {w.name: w for w in self.state.workers}
        deadline = time.monotonic() + timeout
        while pending:
            for name, rec in list(pending.items()):
                rc = self.worker_popens[name].poll()
                if rc is not None:
                    raise FailedPrecondition(f"{name} exited with code {rc} while starting; last lines of "
                                             f"{rec.log}:\n{log_tail(rec.log)}", code="worker_start_failed")
                with contextlib.suppress(OSError), open(rec.log, "rb") as fh:
                    fh.seek(offsets[name])
                    if WORKER_READY.search(fh.read()):
                        del pending[name]
            if pending and time.monotonic() > deadline:
                name, rec = next(iter(pending.items()))
                raise FailedPrecondition(f"{name} did not become ready within {timeout:.0f} s; last lines of "
                                         f"{rec.log}:\n{log_tail(rec.log)}", code="worker_start_timeout")
            if pending:
                time.sleep(0.1)

    def _wait_healthy(self, timeout: float) -> None:
        assert self.state is not None
        pending = dict(self.state.services)
        deadline = time.monotonic() + timeout
        while pending:
            for name, rec in list(pending.items()):
                rc = self.popens[name].poll()
                if rc is not None:
                    raise FailedPrecondition(f"the {name} service exited with code {rc} while starting; last lines "
                                             f"of {rec.log}:\n{log_tail(rec.log)}", code="service_start_failed")
                if check_health(rec.address, rec.health, timeout=1.0) == "SERVING":
                    del pending[name]
            if pending and time.monotonic() > deadline:
                name, rec = next(iter(pending.items()))
                raise FailedPrecondition(f"the {name} service did not become healthy within {timeout:.0f} s; last "
                                         f"lines of {rec.log}:\n{log_tail(rec.log)}", code="service_start_timeout")
            if pending:
                time.sleep(0.1)

    def start(self, timeout: float = START_TIMEOUT) -> RunState:
        """Start everything and return once all services answer SERVING; on any failure, stop what started."""
        self._check_not_running()
        self._lock()
        try:
            self._check_not_running()  # a detached `up` holds no lock: its up.json is the claim
        except BaseException:
            self._unlock()
            raise
        try:
            self.layout.log_dir.mkdir(parents=True, exist_ok=True)
            plan = self._plan()
            nats_url, nats_proc, nats_log = self._start_nats()
            env = {**os.environ, "TUNERY_DATA_DIR": str(self.layout.data_dir), "TUNERY_NATS_URL": nats_url,
                   "PYTHONUNBUFFERED": "1"}
            for s in plan:
                env[f"{s.env_prefix}HOST"] = HOST
                env[f"{s.env_prefix}PORT"] = str(s.port())
                env[f"{s.env_prefix}ADDR"] = f"{HOST}:{s.port()}"  # so services find each other
            if "dataset" in (s.name for s in plan):  # the trainer (and its workers) use the dataset service we start
                env["TUNERY_TRAINER_DATASET_ADDR"] = env["TUNERY_DATASET_ADDR"]
            self.state = RunState(str(self.layout.data_dir), nats_url, nats_proc, nats_log,
                                  supervisor=ProcRecord.of(os.getpid()),
                                  started_at=datetime.now(UTC).isoformat(timespec="seconds"))
            for s in plan:
                self.state.services[s.name] = self._spawn(s, env)
                self.state.write(self.layout)
            self.state.write(self.layout)
            started = time.monotonic()
            self._wait_healthy(timeout)
            if "trainer" in self.state.services and self.workers:
                offsets = {}
                for i in range(self.workers):
                    rec, offsets[rec.name] = self._spawn_worker(i, env)
                    self.state.workers.append(rec)
                    self.state.write(self.layout)
                self._wait_workers_ready(offsets, max(10.0, timeout - (time.monotonic() - started)))
            self.state.ready = True
            self.state.write(self.layout)
            self._starting = False
            return self.state
        except BaseException:
            self._stopping = True
            self.stop()
            raise

    # -- run / stop --
    def detach(self) -> RunState:
        """Leave everything running; `tunery down` takes over from up.json."""
        assert self.state is not None
        self.state.supervisor = None
        self.state.write(self.layout)
        self.popens.clear()  # they are on their own now
        self.worker_popens.clear()
        self.nats = None
        self._unlock()
        return self.state

    def supervise(self) -> int:
        """Block until a signal (exit 0) or until a process dies on its own (exit 1); then stop everything."""
        assert self.state is not None
        code = 0
        logs = {w.name: w.log for w in self.state.workers} | {n: r.log for n, r in self.state.services.items()}
        while not self._stop.wait(0.5):
            dead = [(n, p.returncode) for n, p in (self.popens | self.worker_popens).items() if p.poll() is not None]
            if self.nats and self.nats.proc and self.nats.proc.poll() is not None:
                dead.append(("nats", self.nats.proc.returncode))
            if dead:
                for name, rc in dead:
                    log = logs.get(name, self.state.nats_log)
                    self._say(f"{name} exited with code {rc} on its own; see {log}. Stopping everything.")
                code = 1
                break
        if self._signal_name:
            self._say(f"{self._signal_name}: stopping (again to skip the drain)")
        self._stopping = True
        self.stop()
        return code

    def stop(self) -> None:
        """Workers first (while the trainer still takes their hand-back), services in reverse start order, NATS last,
        then forget the run."""
        procs: dict[str, ProcRecord] = {}
        workers: dict[str, ProcRecord] = {}
        if self.state is not None:
            procs = {n: r.proc for n, r in self.state.services.items()}
            workers = {w.name: w.proc for w in self.state.workers}
        for name, p in self.popens.items():
            procs.setdefault(name, ProcRecord(p.pid))
        for name, p in self.worker_popens.items():
            workers.setdefault(name, ProcRecord(p.pid))
        ordered = [procs[n] for n in reversed([s.name for s in SERVICES]) if n in procs]
        popens = {p.pid: p for p in (*self.popens.values(), *self.worker_popens.values())}
        def force() -> bool:
            return self._force

        killed = stop_processes(list(workers.values()), self.grace, popens=popens, force=force)
        killed += stop_processes(ordered, self.grace, popens=popens, force=force)
        for pid in killed:
            self._say(f"pid {pid} did not stop within {self.grace:.0f} s: killed")
        if self.nats is not None:
            self.nats.stop(kill=self._force)
            self.nats = None
        self.popens.clear()
        self.worker_popens.clear()
        remove_state(self.layout)
        self._unlock()


def down(data_dir: Path | str | None, *, grace: float = STOP_GRACE, report: Report = print) -> RunState | None:
    """Stop what `up.json` names: through the foreground supervisor when there is one, else directly."""
    layout = Layout.of(data_dir)
    state = RunState.read(layout)
    if state is None:
        return None
    sup = state.supervisor
    if sup is not None and sup.alive() and sup.pid != os.getpid():
        _signal(sup, signal.SIGTERM)
        deadline = time.monotonic() + grace + 10
        while sup.alive() and time.monotonic() < deadline:
            time.sleep(0.05)
    killed = stop_processes([w.proc for w in state.workers], grace)
    services = [state.services[s.name].proc for s in reversed(SERVICES) if s.name in state.services]
    killed += stop_processes(services, grace)
    if state.nats is not None:
        killed += stop_processes([state.nats], grace)
    for pid in killed:
        report(f"pid {pid} did not stop within {grace:.0f} s: killed")
    remove_state(layout)
    return state


def pids(state: RunState) -> Iterator[tuple[str, int]]:
    for name, rec in state.services.items():
        yield name, rec.proc.pid
    for w in state.workers:
        yield w.name, w.proc.pid
    if state.nats is not None:
        yield "nats", state.nats.pid


def serve_argv(name: str) -> list[str]:
    """The command `tunery serve` execs: the service's own module (or the trainer worker) under this interpreter."""
    if name == WORKER:
        if not SPECS["trainer"].installed:
            raise FailedPrecondition(f"trainer workers come with the trainer service: pip install "
                                     f"{SPECS['trainer'].package}", code="service_not_installed", field="service")
        return [sys.executable, "-m", WORKER_MODULE]
    s = spec(name)
    if not s.installed:
        raise FailedPrecondition(f"the {name} service is not installed: pip install {s.package}",
                                 code="service_not_installed", field="service")
    return [sys.executable, "-m", s.module]

