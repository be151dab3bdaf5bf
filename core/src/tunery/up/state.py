"""`<data_dir>/run/up.json`: what `tunery up` started, so `down` and `status` in another terminal act on exactly that.

The supervisor rewrites the file (atomically) whenever a process is restarted, so it always names the pid and start
time of the process that runs now, with how often it was restarted and why.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tunery.errors import FailedPrecondition
from tunery.up.procs import ProcRecord

STATE_VERSION = 1


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
class Restarts:
    """What the supervisor did about a process that exited on its own."""

    count: int = 0
    """Restarts since `up` started it."""
    last_exit: int | None = None
    """Its last exit status (negative: killed by that signal), None while it never exited."""
    last_exit_at: str = ""
    restart_at: str = ""
    """While it waits for its backoff: when it will be started again (UTC, ISO 8601); else empty."""
    gave_up: bool = False
    """It crashed in a loop and is not restarted any more (the rest keeps running)."""

    @classmethod
    def of(cls, d: dict[str, Any] | None) -> Restarts:
        if not d:
            return cls()
        last = d.get("last_exit")
        return cls(int(d.get("count", 0)), None if last is None else int(last), str(d.get("last_exit_at", "")),
                   str(d.get("restart_at", "")), bool(d.get("gave_up", False)))


@dataclass(slots=True)
class ServiceRecord:
    name: str
    module: str
    address: str
    port: int
    log: str
    health: str
    proc: ProcRecord
    restarts: Restarts = field(default_factory=Restarts)


@dataclass(slots=True)
class WorkerRecord:
    """A trainer worker: no address to ask, so its health is whether the process still runs."""

    name: str
    module: str
    log: str
    proc: ProcRecord
    restarts: Restarts = field(default_factory=Restarts)


def _proc(d: dict[str, Any] | None) -> ProcRecord | None:
    return ProcRecord(int(d["pid"]), str(d.get("start", ""))) if d else None


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
    nats_restarts: Restarts = field(default_factory=Restarts)

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
        try:
            services = {
                name: ServiceRecord(s["name"], s["module"], s["address"], int(s["port"]), s["log"],
                                    s.get("health", "grpc"), _proc(s["proc"]) or ProcRecord(0),
                                    Restarts.of(s.get("restarts")))
                for name, s in raw.get("services", {}).items()
            }
            workers = [WorkerRecord(w["name"], w["module"], w["log"], _proc(w["proc"]) or ProcRecord(0),
                                    Restarts.of(w.get("restarts")))
                       for w in raw.get("workers", [])]
            return cls(data_dir=raw["data_dir"], nats_url=raw["nats_url"], nats=_proc(raw.get("nats")),
                       nats_log=raw.get("nats_log", ""), services=services, workers=workers,
                       supervisor=_proc(raw.get("supervisor")),
                       ready=bool(raw.get("ready")), started_at=raw.get("started_at", ""),
                       version=int(raw.get("version", STATE_VERSION)),
                       nats_restarts=Restarts.of(raw.get("nats_restarts")))
        except (KeyError, TypeError, ValueError) as err:
            raise FailedPrecondition(f"{layout.state_file} is malformed ({err!r}); if nothing runs, delete it",
                                     code="bad_state_file") from err


def remove_state(layout: Layout) -> None:
    layout.state_file.unlink(missing_ok=True)


def pids(state: RunState) -> Iterator[tuple[str, int]]:
    for name, rec in state.services.items():
        yield name, rec.proc.pid
    for w in state.workers:
        yield w.name, w.proc.pid
    if state.nats is not None:
        yield "nats", state.nats.pid
