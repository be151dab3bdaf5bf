"""The supervisor of `tunery up`: starts NATS, the services and trainer workers, keeps them running, stops them.

Once everything is ready, a process that exits on its own is started again after a backoff (`restart.RestartPolicy`)
while the rest keeps running; only a crash loop makes it give up on that one process. While starting, any exit
fails `up` at once instead: a bad setting should be said, not retried. Services run in their own sessions: a Ctrl-C
in the terminal reaches only the supervisor, which then stops trainer workers first (they checkpoint and hand their
job back), then services, and NATS last, so in-flight work can still publish its events while draining.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType

from tunery.errors import FailedPrecondition, InvalidArgument
from tunery.runtime.natsd import NatsServer
from tunery.up.catalog import DEFAULT_NATS_PORT, HOST, SERVICES, WORKER, WORKER_MODULE, WORKER_READY, ServiceSpec, spec
from tunery.up.probes import check_health, nats_reachable
from tunery.up.procs import ProcRecord, log_tail, popen_logged, port_free, signal_proc, stop_processes
from tunery.up.restart import Child, Restarter, RestartPolicy
from tunery.up.state import Layout, RunState, ServiceRecord, WorkerRecord, remove_state
from tunery.up.wiring import wire

STOP_GRACE = 15.0
"""Longer than a service's own drain (`grace_seconds`, 10 s) so a clean drain is never cut short by SIGKILL."""
START_TIMEOUT = 120.0
POLL = 0.5
"""How often the supervisor looks at its processes (sooner when a restart is due)."""

Report = Callable[[str], None]


class Interrupted(Exception):
    """SIGINT/SIGTERM arrived while starting: undo what was started."""


class AlreadyRunning(FailedPrecondition):
    pass


def describe(state: RunState) -> str:
    where = ", ".join(f"{r.name} on {r.address}" for r in state.services.values()) or "no services"
    if state.workers:
        where += f", {len(state.workers)} trainer worker(s)"
    sup = state.supervisor
    mode = f"supervisor pid {sup.pid}" if sup and sup.alive() else "no supervisor: nothing restarts what exits"
    return f"{where}; NATS at {state.nats_url} ({mode})"


def _worker_ready(log: Path, offset: int) -> bool:
    """The worker said it is subscribed, in the part of its (appended) log that this run wrote."""
    with contextlib.suppress(OSError), open(log, "rb") as fh:
        fh.seek(offset)
        return WORKER_READY.search(fh.read()) is not None
    return False


class Supervisor:
    """Starts NATS, the services and trainer workers, waits until they are ready, restarts what exits on its own, and
    stops them in reverse order."""

    def __init__(self, data_dir: Path | str | None, *, nats_port: int = DEFAULT_NATS_PORT, report: Report = print,
                 grace: float = STOP_GRACE, only: Sequence[str] = (), workers: int = 1,
                 policy: RestartPolicy | None = None) -> None:
        if workers < 0:
            raise InvalidArgument(f"workers must be 0 or more, not {workers}", code="invalid_workers", field="workers")
        self.layout = Layout.of(data_dir)
        self.only = [spec(n).name for n in only]
        self.workers = workers
        self.nats_port = nats_port
        self.report = report
        self.grace = grace
        self.policy = policy or RestartPolicy()
        self.nats: NatsServer | None = None
        self.services: dict[str, Child] = {}
        self.worker_children: dict[str, Child] = {}
        self.nats_child: Child | None = None
        self.state: RunState | None = None
        self._lock_fd: int | None = None
        self._stop = threading.Event()
        self._starting = True
        self._stopping = False
        self._force = False
        self._signal_name = ""

    @property
    def children(self) -> list[Child]:
        """Every process this supervisor started and keeps running: NATS (when embedded), services, workers."""
        nats = [self.nats_child] if self.nats_child is not None else []
        return [*nats, *self.services.values(), *self.worker_children.values()]

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
            detail = describe(state) if state else "still starting"
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
            raise AlreadyRunning(f"tunery is already running from {self.layout.data_dir}: {describe(state)}; "
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
        nats = self.nats = NatsServer(self.layout.data_dir / "nats", port=self.nats_port, host=HOST, log_file=log)
        nats.start()
        assert nats.proc is not None
        return nats.url, ProcRecord.of(nats.proc.pid), str(log)

    def _restart_nats(self) -> subprocess.Popen[bytes]:
        """Same port and store directory: JetStream streams and consumers come back, clients reconnect."""
        assert self.nats is not None
        self.nats.start()
        assert self.nats.proc is not None
        return self.nats.proc

    def _launcher(self, module: str, log: Path, env: dict[str, str]) -> Callable[[], subprocess.Popen[bytes]]:
        def launch() -> subprocess.Popen[bytes]:
            return popen_logged([sys.executable, "-m", module], log, env, self.layout.data_dir,
                                header=f"starting {module}")
        return launch

    def _spawn(self, s: ServiceSpec, env: dict[str, str]) -> ServiceRecord:
        log = self.layout.log(s.name)
        launch = self._launcher(s.module, log, env)
        popen = launch()
        port = int(env[f"{s.env_prefix}PORT"])
        rec = ServiceRecord(s.name, s.module, f"{HOST}:{port}", port, str(log), s.health, ProcRecord.of(popen.pid))
        self.services[s.name] = Child(s.name, log, launch, rec.proc, rec.restarts, popen,
                                      ready=lambda: check_health(rec.address, rec.health, timeout=1.0) == "SERVING")
        return rec

    def _spawn_worker(self, index: int, env: dict[str, str]) -> WorkerRecord:
        name = f"{WORKER}-{index}"
        log = self.layout.log(name)
        offset = [0]  # where the current run's output starts in the appended log
        start = self._launcher(WORKER_MODULE, log, env)

        def launch() -> subprocess.Popen[bytes]:
            offset[0] = log.stat().st_size if log.exists() else 0
            return start()

        popen = launch()
        rec = WorkerRecord(name, WORKER_MODULE, str(log), ProcRecord.of(popen.pid))
        self.worker_children[name] = Child(name, log, launch, rec.proc, rec.restarts, popen,
                                           ready=lambda: _worker_ready(log, offset[0]))
        return rec

    def _wait_ready(self, children: dict[str, Child], timeout: float, kind: str) -> None:
        """Until every child is ready (a service answers SERVING; a worker, which has no port, says so in its log),
        so that a bad setting fails `up` now; a child that exits or takes longer than `timeout` fails it too."""
        what = (lambda name: name) if kind == "worker" else (lambda name: f"the {name} service")
        pending = dict(children)
        deadline = time.monotonic() + timeout
        while pending:
            for name, child in list(pending.items()):
                assert child.popen is not None and child.ready is not None
                rc = child.popen.poll()
                if rc is not None:
                    raise FailedPrecondition(f"{what(name)} exited with code {rc} while starting; last lines of "
                                             f"{child.log}:\n{log_tail(child.log)}", code=f"{kind}_start_failed")
                if child.ready():
                    del pending[name]
            if pending and time.monotonic() > deadline:
                name, child = next(iter(pending.items()))
                state = "ready" if kind == "worker" else "healthy"
                raise FailedPrecondition(f"{what(name)} did not become {state} within {timeout:.0f} s; last lines of "
                                         f"{child.log}:\n{log_tail(child.log)}", code=f"{kind}_start_timeout")
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
            if "evaluator" in (s.name for s in plan):  # jobs with spec.evaluation ask the evaluator we start
                env["TUNERY_TRAINER_EVALUATOR_ADDR"] = env["TUNERY_EVALUATOR_ADDR"]
            wire(env, {s.name for s in plan}, self.layout.data_dir)  # the evaluator: addresses, gateway URL and key
            state = self.state = RunState(str(self.layout.data_dir), nats_url, nats_proc, nats_log,
                                          supervisor=ProcRecord.of(os.getpid()),
                                          started_at=datetime.now(UTC).isoformat(timespec="seconds"))
            if nats_proc is not None and self.nats is not None:
                self.nats_child = Child("nats", Path(nats_log), self._restart_nats, nats_proc, state.nats_restarts,
                                        self.nats.proc, ready=lambda: nats_reachable(nats_url, timeout=1.0))
            for s in plan:
                state.services[s.name] = self._spawn(s, env)
                state.write(self.layout)
            state.write(self.layout)
            started = time.monotonic()
            self._wait_ready(self.services, timeout, "service")
            if "trainer" in state.services and self.workers:
                for i in range(self.workers):
                    state.workers.append(self._spawn_worker(i, env))
                    state.write(self.layout)
                self._wait_ready(self.worker_children, max(10.0, timeout - (time.monotonic() - started)), "worker")
            state.ready = True
            state.write(self.layout)
            self._starting = False
            return state
        except BaseException:
            self._stopping = True
            self.stop()
            raise

    # -- run / stop --
    def supervise(self) -> int:
        """Keep everything running until a signal: restart what exits on its own (backoff), give up on crash loops.
        Then stop everything; exit code 0, or 1 when a process had to be given up on."""
        assert self.state is not None
        restarter = Restarter(self.policy, self._say)
        children = self.children
        while True:
            due = restarter.next_due(children)
            if self._stop.wait(POLL if due is None else min(POLL, due)):
                break
            if restarter.tick(children):
                self.state.write(self.layout)
        if self._signal_name:
            self._say(f"{self._signal_name}: stopping (again to skip the drain)")
        self._stopping = True
        gave_up = [c.name for c in children if c.restarts.gave_up]
        self.stop()
        return 1 if gave_up else 0

    def stop(self) -> None:
        """Workers first (while the trainer still takes their hand-back), services in reverse start order, NATS last,
        then forget the run. A process waiting for its restart has nothing left to stop."""
        ordered = [self.services[n] for n in reversed([s.name for s in SERVICES]) if n in self.services]
        workers = list(self.worker_children.values())
        popens = {c.popen.pid: c.popen for c in (*ordered, *workers) if c.popen is not None}

        def force() -> bool:
            return self._force

        def procs(children: list[Child]) -> list[ProcRecord]:
            return [c.proc for c in children if c.popen is not None]  # c.proc names c.popen (a restart updates both)

        killed = stop_processes(procs(workers), self.grace, popens=popens, force=force)
        killed += stop_processes(procs(ordered), self.grace, popens=popens, force=force)
        for pid in killed:
            self._say(f"pid {pid} did not stop within {self.grace:.0f} s: killed")
        if self.nats is not None:
            self.nats.stop(kill=self._force)
            self.nats = None
        self.services.clear()
        self.worker_children.clear()
        self.nats_child = None
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
        signal_proc(sup, signal.SIGTERM)
        deadline = time.monotonic() + grace + 10
        while sup.alive() and time.monotonic() < deadline:
            time.sleep(0.05)
        state = RunState.read(layout) or state  # it may have restarted a process since: stop the one named now
    killed = stop_processes([w.proc for w in state.workers], grace)
    services = [state.services[s.name].proc for s in reversed(SERVICES) if s.name in state.services]
    killed += stop_processes(services, grace)
    if state.nats is not None:
        killed += stop_processes([state.nats], grace)
    for pid in killed:
        report(f"pid {pid} did not stop within {grace:.0f} s: killed")
    remove_state(layout)
    return state
