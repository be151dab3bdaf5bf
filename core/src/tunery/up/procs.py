"""Processes by pid and kernel start time: start one with its output in a log, tell whether it still runs, stop it.

A pid alone is not enough: once a process is gone the kernel may hand its pid to an unrelated program, which must
never be signalled. A pid plus the start time from /proc/<pid>/stat names one process for its whole life.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from tunery.up.catalog import HOST


def _proc_stat(pid: int) -> list[str] | None:
    """Fields of /proc/<pid>/stat after the command name (which may itself contain spaces and parentheses)."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return raw.rsplit(")", 1)[1].split()


def proc_start(pid: int) -> str:
    """The kernel's start time of `pid` (clock ticks since boot), or "" where there is no procfs."""
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


@dataclass(slots=True)
class ProcRecord:
    """A pid plus its kernel start time: together they name one process for its whole life, never a successor."""

    pid: int
    start: str = ""

    @classmethod
    def of(cls, pid: int) -> ProcRecord:
        return cls(pid, proc_start(pid))

    def alive(self) -> bool:
        return pid_alive(self.pid, self.start)


def signal_proc(proc: ProcRecord, sig: signal.Signals) -> None:
    """Signal the process group when the process leads one (services do), so helpers it spawned stop too."""
    if not proc.alive():
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        if os.getpgid(proc.pid) == proc.pid:
            os.killpg(proc.pid, sig)
        else:
            os.kill(proc.pid, sig)


def stop_processes(procs: Sequence[ProcRecord], grace: float, *,
                   popens: Mapping[int, subprocess.Popen[bytes]] | None = None,
                   force: Callable[[], bool] = lambda: False) -> list[int]:
    """SIGTERM, wait up to `grace` seconds, then SIGKILL; returns the pids that had to be killed."""
    popens = popens or {}

    def alive(p: ProcRecord) -> bool:
        if p.pid in popens:  # our child: poll() also reaps it
            return popens[p.pid].poll() is None
        return p.alive()

    running = [p for p in procs if alive(p)]
    for p in running:
        signal_proc(p, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while running and time.monotonic() < deadline and not force():
        time.sleep(0.05)
        running = [p for p in running if alive(p)]
    killed = []
    for p in running:
        signal_proc(p, signal.SIGKILL)
        killed.append(p.pid)
    deadline = time.monotonic() + 5
    while running and time.monotonic() < deadline:
        time.sleep(0.05)
        running = [p for p in running if alive(p)]
    return killed


def note(log: Path | str, message: str) -> None:
    """A line from `tunery up` in a process's own log, so the log tells its whole story (starts, exits, restarts)."""
    with contextlib.suppress(OSError), open(log, "ab") as fh:
        fh.write(f"\n=== tunery up: {message} at {datetime.now(UTC).isoformat(timespec='seconds')} ===\n".encode())


def popen_logged(argv: Sequence[str], log: Path, env: Mapping[str, str], cwd: Path, *,
                 header: str = "") -> subprocess.Popen[bytes]:
    """In its own session (a terminal's Ctrl-C reaches only the supervisor), output appended to `log`."""
    note(log, header or f"starting {' '.join(argv[1:])}")
    with log.open("ab") as fh:
        return subprocess.Popen(list(argv), env=dict(env), stdin=subprocess.DEVNULL, stdout=fh,
                                stderr=subprocess.STDOUT, cwd=cwd, start_new_session=True)


def describe_exit(returncode: int | None) -> str:
    """`exited with code 1`, `was killed by SIGKILL`: what a user can look up."""
    if returncode is None:
        return "could not be started"
    if returncode < 0:
        try:
            return f"was killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"was killed by signal {-returncode}"
    return f"exited with code {returncode}"


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
