"""Restart with backoff, give up on a crash loop: what `tunery up` does about a process that exits on its own.

Written here rather than taken from a retry library (tenacity and the like): those retry one call and block while
they wait, but a supervisor watches every process at once, backs each off on its own clock and must stop at once
on Ctrl-C, also in the middle of a backoff. `Restarter.tick` is one non-blocking look at all of them.
"""

from __future__ import annotations

import math
import subprocess
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from tunery.errors import InvalidArgument, TuneryError
from tunery.up.procs import ProcRecord, describe_exit, note, proc_start
from tunery.up.state import Restarts

Report = Callable[[str], None]


def _now_iso(after: float = 0.0) -> str:
    return (datetime.now(UTC) + timedelta(seconds=after)).isoformat(timespec="seconds")


@dataclass(frozen=True, slots=True)
class RestartPolicy:
    """How `tunery up` treats a process that exits on its own (options of `tunery up`, env `TUNERY_UP_<FIELD>`).

    It is started again after `backoff` seconds, doubled for each restart it had within the last `window` seconds,
    at most `backoff_max` (or `backoff`, if that is longer): 1, 2, 4, 8, 16 s by default. A process that exits once
    more after `max_restarts` restarts within `window` seconds crash-loops: it is given up on, and everything else
    keeps running. Only restarts within the window count, so a process that runs a while starts over at `backoff`.
    """

    backoff: float = 1.0
    backoff_max: float = 30.0
    max_restarts: int = 5
    window: float = 60.0

    def __post_init__(self) -> None:
        for name in ("backoff", "backoff_max", "window"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0) or (name == "window" and value == 0):
                least = "above 0" if name == "window" else "0 or more"
                raise InvalidArgument(f"{name.replace('_', ' ')} must be {least} seconds, not {value}",
                                      code="invalid_restart_policy", field=name)
        if self.max_restarts < 0:
            raise InvalidArgument(f"max restarts must be 0 or more, not {self.max_restarts}",
                                  code="invalid_restart_policy", field="max_restarts")

    def delay(self, recent: int) -> float:
        """Seconds before the next start of a process restarted `recent` times within the window."""
        return min(max(self.backoff_max, self.backoff), self.backoff * 2.0 ** min(recent, 60))

    def describe(self) -> str:
        return (f"restarts after {self.backoff:g} s, doubling up to {self.backoff_max:g} s; gives up after "
                f"{self.max_restarts} restarts within {self.window:g} s")


@dataclass(eq=False)
class Child:
    """One process `up` keeps running: how to start it again, and what up.json says about it.

    `proc` and `restarts` are the very objects in the process's record of up.json: a restart updates them in place,
    so the next write of the state names the new pid and start time.
    """

    name: str
    log: Path
    launch: Callable[[], subprocess.Popen[bytes]]
    proc: ProcRecord
    restarts: Restarts
    popen: subprocess.Popen[bytes] | None = None
    history: deque[float] = field(default_factory=deque)
    """Monotonic times of its restarts within the policy's window."""
    due: float | None = None
    """Monotonic time its next start is due while it backs off; None while it runs (or was given up on)."""
    ready: Callable[[], bool] | None = None
    """Whether it is ready again after a restart (a health probe; a worker's ready line), to say so."""
    restarted_at: float | None = None
    """Monotonic time of its latest restart while it is not yet ready."""

    @property
    def running(self) -> bool:
        return self.popen is not None and self.popen.poll() is None


class Restarter:
    """Watches children without blocking: notices exits, schedules restarts, starts what is due, gives up on loops."""

    def __init__(self, policy: RestartPolicy, report: Report, *, ready_timeout: float = 120.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.policy = policy
        self.report = report
        self.ready_timeout = ready_timeout
        self.clock = clock

    def tick(self, children: Iterable[Child]) -> bool:
        """One look at every child; True when something changed that up.json must show."""
        changed = False
        for child in children:
            if child.restarts.gave_up:
                continue
            if child.due is None:
                rc = child.popen.poll() if child.popen is not None else None
                if child.popen is not None and rc is not None:
                    self._exited(child, rc)
                    changed = True
                elif child.restarted_at is not None:
                    self._check_ready(child)
            elif self.clock() >= child.due:
                self._start(child)
                changed = True
        return changed

    def next_due(self, children: Iterable[Child]) -> float | None:
        """Seconds until the earliest scheduled restart, so the supervisor wakes up in time for it."""
        dues = [c.due for c in children if c.due is not None]
        return max(0.0, min(dues) - self.clock()) if dues else None

    def _check_ready(self, child: Child) -> None:
        assert child.restarted_at is not None
        if child.ready is None or child.ready():
            child.restarted_at = None
            self.report(f"{child.name} is ready again")
        elif self.clock() - child.restarted_at > self.ready_timeout:
            child.restarted_at = None
            self.report(f"{child.name} runs again but is not ready after {self.ready_timeout:g} s; see {child.log}")

    def _exited(self, child: Child, rc: int | None) -> None:
        now = self.clock()
        child.restarted_at = None
        while child.history and now - child.history[0] > self.policy.window:
            child.history.popleft()
        what = describe_exit(rc)
        pid = f" (pid {child.proc.pid})" if rc is not None else ""
        child.restarts.last_exit = rc
        child.restarts.last_exit_at = _now_iso()
        if len(child.history) >= self.policy.max_restarts:
            child.due = None
            child.restarts.gave_up = True
            child.restarts.restart_at = ""
            loop = (f"after {len(child.history)} restarts within {self.policy.window:g} s" if child.history
                    else "and restarts are off (max restarts 0)")
            note(child.log, f"{child.name} {what} {loop}: gave up on it, the rest keeps running")
            self.report(f"{child.name}{pid} {what} {loop}: a crash loop, so `tunery up` gave up on it; everything "
                        f"else keeps running. See {child.log}; once fixed, `tunery down` and `tunery up` again.")
            return
        delay = self.policy.delay(len(child.history))
        child.due = now + delay
        child.restarts.restart_at = _now_iso(delay)
        nth = len(child.history) + 1
        note(child.log, f"{child.name} {what}; restarting in {delay:g} s (restart {nth} of at most "
                        f"{self.policy.max_restarts} within {self.policy.window:g} s)")
        self.report(f"{child.name}{pid} {what}; restarting it in {delay:g} s (restart {nth} of at most "
                    f"{self.policy.max_restarts} within {self.policy.window:g} s); see {child.log}")

    def _start(self, child: Child) -> None:
        child.due = None
        child.restarts.restart_at = ""
        child.history.append(self.clock())
        child.restarts.count += 1
        try:
            child.popen = child.launch()
        except (OSError, TuneryError) as err:
            child.popen = None
            self.report(f"{child.name}: could not be started again: {err}")
            self._exited(child, None)
            return
        child.proc.pid, child.proc.start = child.popen.pid, proc_start(child.popen.pid)
        child.restarted_at = self.clock()
        self.report(f"{child.name} restarted (pid {child.popen.pid}, restart {child.restarts.count})")
