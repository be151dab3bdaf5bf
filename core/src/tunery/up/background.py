"""`tunery up --detach`: the supervisor itself runs in the background, so a detached stack is kept running too.

The background supervisor is a plain foreground `tunery up` in its own session, its output in `logs/up.log`; the
command that started it returns once up.json says everything is ready under that supervisor, or relays the
supervisor's own error and exit code when it could not start.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from tunery.up.procs import popen_logged
from tunery.up.state import Layout, RunState
from tunery.up.supervisor import START_TIMEOUT, AlreadyRunning, describe


class StartFailed(Exception):
    """The background supervisor exited before everything was ready; `output` is what it said, `code` its status."""

    def __init__(self, code: int, output: str) -> None:
        super().__init__(output)
        self.code = code
        self.output = output


def _since(log: Path, offset: int) -> str:
    with log.open("rb") as fh:
        fh.seek(offset)
        lines = fh.read().decode(errors="replace").splitlines()
    return "\n".join(line for line in lines if line and not line.startswith("=== tunery up:"))


def start_in_background(args: Sequence[str], data_dir: Path | str | None, *,
                        timeout: float = START_TIMEOUT) -> tuple[RunState, Path]:
    """Start `tunery up <args>` (no --detach) as a background supervisor; return the ready state and its log.

    Ctrl-C while it starts stops it, and it undoes what it had started.
    """
    layout = Layout.of(data_dir)
    state = RunState.read(layout)
    if state is not None and state.any_alive():  # said here, in the terminal, rather than in the log
        raise AlreadyRunning(f"tunery is already running from {layout.data_dir}: {describe(state)}; "
                             "stop it with `tunery down`", code="already_running")
    layout.log_dir.mkdir(parents=True, exist_ok=True)
    log = layout.log("up")
    offset = log.stat().st_size if log.exists() else 0
    argv = [sys.executable, "-m", "tunery.cli.main", "up", "--data-dir", str(layout.data_dir), *args]
    child = popen_logged(argv, log, os.environ, layout.data_dir, header="starting the supervisor")
    deadline = time.monotonic() + timeout + 60  # it gives up by itself after `timeout`; this is a last resort
    try:
        while True:
            rc = child.poll()
            if rc is not None:
                raise StartFailed(rc, _since(log, offset) or f"the supervisor exited with code {rc}; see {log}")
            state = RunState.read(layout)
            if state is not None and state.ready and state.supervisor and state.supervisor.pid == child.pid:
                return state, log
            if time.monotonic() > deadline:
                _stop(child)
                raise StartFailed(1, f"error: the supervisor did not get ready within {timeout + 60:.0f} s; see {log}")
            time.sleep(0.1)
    except KeyboardInterrupt:
        _stop(child)
        raise


def _stop(child: subprocess.Popen[bytes]) -> None:
    child.send_signal(signal.SIGTERM)
    try:
        child.wait(60)
    except subprocess.TimeoutExpired:
        child.send_signal(signal.SIGTERM)  # the second signal skips the drains
        child.wait()
