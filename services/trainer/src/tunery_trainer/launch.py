"""One job across several processes: the worker starts the ranks with torchrun and relays their reports.

Launch path (a worker with `TUNERY_TRAINER_PROCESSES_PER_JOB` > 1, or 0 = one per visible GPU):

    worker (NATS, heartbeats, control)            the job's folder: jobs/<id>/launch/<attempt>/
      └─ python -m torch.distributed.run --standalone --nproc-per-node N -m tunery_trainer.launch <launch dir>
           ├─ rank 0: builds the same TrainingContext, trains, writes reports to events.jsonl, result.json
           └─ rank 1..N-1: train their share of every batch; nothing written but their own error file

Each rank joins the process group (NCCL on GPUs, gloo on CPUs), the backend splits every global batch across the
ranks and sums their gradients, so a step sees the same batch as one process would (the same number of steps, and
the same loss up to floating-point summation order). Cancel, pause and a worker shutdown reach the ranks through a
control file that rank 0 reads between steps and broadcasts, so all ranks stop at the same step. The ranks die with
the worker (parent-death signal), so a SIGKILLed worker leaves no training behind and the job is redelivered and
resumed from its latest checkpoint like a single-process job.

torchrun is torch's own launcher (`torch.distributed.run`); `accelerate launch` starts processes the same way and
works for the rank entry point too. Only one machine per job: the ranks share the worker's artifact folder.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import logging
import os
import signal
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from tunery_trainer.backends.base import (
    CheckpointInfo,
    Control,
    Reporter,
    StepMetrics,
    TrainingResult,
    ValidationMetrics,
)

log = logging.getLogger("tunery.trainer.launch")
CONTROLS: tuple[Control, ...] = ("continue", "cancel", "pause")
EVENTS = "events.jsonl"
CONTROL = "control"
RESULT = "result.json"
TASK = "task.pb"


def visible_gpus() -> int:
    try:
        import torch

        return torch.cuda.device_count() if torch.cuda.is_available() else 0
    except Exception:
        return 0


def processes_for(setting: int) -> int:
    """Processes per job from the worker setting: N as given, 0 = one per visible GPU (1 without GPUs)."""
    return setting if setting > 0 else max(visible_gpus(), 1)


def _die_with_parent() -> None:
    """Ask Linux to SIGKILL this process when its parent dies (a SIGKILLed worker must not leave ranks behind)."""
    with contextlib.suppress(Exception):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


# ---- worker side ----


class LaunchFailed(RuntimeError):
    """A rank failed; the message is the failing rank's error (errno kept for the disk-full check)."""

    def __init__(self, message: str, errno_: int | None = None) -> None:
        super().__init__(message)
        self.errno = errno_


def run_distributed(
    task_bytes: bytes,
    reporter: Reporter,
    launch_dir: Path,
    nprocs: int,
    env: dict[str, str] | None = None,
    poll_seconds: float = 0.2,
) -> TrainingResult:
    """Start `nprocs` ranks with torchrun for one job and relay rank 0's reports to `reporter` until they exit."""
    if launch_dir.exists():
        for old in launch_dir.iterdir():
            if old.is_file():
                old.unlink()
    launch_dir.mkdir(parents=True, exist_ok=True)
    (launch_dir / TASK).write_bytes(task_bytes)
    (launch_dir / CONTROL).write_text("continue")
    (launch_dir / EVENTS).touch()
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nnodes=1",
        f"--nproc-per-node={nprocs}",
        "--max-restarts=0",
        "-m",
        "tunery_trainer.launch",
        str(launch_dir),
    ]
    log.info("launching %d ranks: %s", nprocs, " ".join(cmd))
    # Its own session: a SIGTERM/SIGINT sent to the worker's process group (tini -g, Ctrl-C) reaches the worker only,
    # which turns it into a pause (checkpoint, hand the job back) that the ranks carry out together.
    proc = subprocess.Popen(
        cmd, env={**os.environ, **(env or {})}, preexec_fn=_die_with_parent, start_new_session=True
    )
    relay = _Relay(launch_dir / EVENTS, reporter)
    last: Control = "continue"
    try:
        while proc.poll() is None:
            relay.pump()
            control = reporter.control()
            if control != last:
                _write_atomic(launch_dir / CONTROL, control)
                last = control
            time.sleep(poll_seconds)
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    relay.pump()
    result_file = launch_dir / RESULT
    if proc.returncode == 0 and result_file.exists():
        r = json.loads(result_file.read_text())
        return TrainingResult(
            outcome=r["outcome"],
            steps=r["steps"],
            total_steps=r["total_steps"],
            trained_tokens=r["trained_tokens"],
            adapter_dir=Path(r["adapter_dir"]) if r["adapter_dir"] else None,
            metrics=r["metrics"],
        )
    # The first error is the cause; ranks that fail after it mostly report the lost peer.
    errors = sorted(launch_dir.glob("error-rank*.json"), key=lambda f: f.stat().st_mtime_ns)
    if errors:
        e = json.loads(errors[0].read_text())
        raise LaunchFailed(f"rank {e['rank']}: {e['type']}: {e['message']}", e.get("errno"))
    raise LaunchFailed(f"the training processes exited with status {proc.returncode} (see the worker's log)")


class _Relay:
    """Reads the JSON lines rank 0 appends and calls the worker's reporter with them, in order."""

    def __init__(self, path: Path, reporter: Reporter) -> None:
        self.path, self.reporter, self.offset, self.partial = path, reporter, 0, b""

    def pump(self) -> None:
        with self.path.open("rb") as f:
            f.seek(self.offset)
            data = f.read()
        self.offset += len(data)
        lines = (self.partial + data).split(b"\n")
        self.partial = lines.pop()
        for line in lines:
            if line.strip():
                self._dispatch(json.loads(line))

    def _dispatch(self, ev: dict[str, Any]) -> None:
        kind, body = ev["kind"], ev["body"]
        if kind == "start":
            self.reporter.on_start(body["total_steps"], body["start_step"])
        elif kind == "step":
            self.reporter.on_step(StepMetrics(**body))
        elif kind == "checkpoint":
            self.reporter.on_checkpoint(CheckpointInfo(body["step"], body["epoch"], Path(body["path"])))
        elif kind == "validation":
            self.reporter.on_validation(ValidationMetrics(**body))


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    tmp.replace(path)


# ---- rank side ----


class RankReporter:
    """A rank's reporter: rank 0 appends reports to the events file; control() is rank 0's word, broadcast."""

    def __init__(self, launch_dir: Path, rank: int, device: Any) -> None:
        self.launch_dir, self.rank, self.device = launch_dir, rank, device
        self._events = (launch_dir / EVENTS).open("a", encoding="utf-8") if rank == 0 else None

    def _write(self, kind: str, body: dict[str, Any]) -> None:
        if self._events is not None:
            self._events.write(json.dumps({"kind": kind, "body": body}, default=str) + "\n")
            self._events.flush()

    def on_start(self, total_steps: int, start_step: int) -> None:
        self._write("start", {"total_steps": total_steps, "start_step": start_step})

    def on_step(self, m: StepMetrics) -> None:
        self._write("step", asdict(m))

    def on_checkpoint(self, c: CheckpointInfo) -> None:
        self._write("checkpoint", {"step": c.step, "epoch": c.epoch, "path": str(c.path)})

    def on_validation(self, v: ValidationMetrics) -> None:
        self._write("validation", asdict(v))

    def control(self) -> Control:
        import torch
        import torch.distributed as dist

        flag = torch.zeros(1, dtype=torch.int64, device=self.device)
        if self.rank == 0:
            with contextlib.suppress(OSError):
                word = (self.launch_dir / CONTROL).read_text().strip()
                flag[0] = CONTROLS.index(word) if word in CONTROLS else 0
        dist.broadcast(flag, src=0)
        return CONTROLS[int(flag.item())]

    def close(self) -> None:
        if self._events is not None:
            self._events.close()


def rank_main(launch_dir: Path) -> int:
    """Entry point of one rank (started by torchrun, which sets RANK, WORLD_SIZE, LOCAL_RANK, MASTER_*)."""
    _die_with_parent()
    if os.getppid() == 1:  # the launcher died before the signal was armed
        return 1
    import torch
    import torch.distributed as dist

    from tunery_trainer import wire
    from tunery_trainer.settings import TrainerSettings
    from tunery_trainer.worker import build_context

    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local_rank = int(os.environ.get("LOCAL_RANK", rank))
    logging.basicConfig(level=logging.INFO, format=f"%(asctime)s rank{rank} %(levelname)s %(name)s: %(message)s")
    use_cuda = torch.cuda.is_available() and torch.cuda.device_count() > local_rank
    if use_cuda:
        torch.cuda.set_device(local_rank)
        device = torch.device("cuda", local_rank)
    else:
        device = torch.device("cpu")
        # the machine's cores shared between the ranks on it
        per_node = int(os.environ.get("LOCAL_WORLD_SIZE", world))
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // per_node))
    dist.init_process_group("nccl" if use_cuda else "gloo")
    reporter = RankReporter(launch_dir, rank, device)
    try:
        task = wire.decode_task((launch_dir / TASK).read_bytes())
        backend, config, ctx = build_context(task, TrainerSettings(), reporter)
        result = backend.train(ctx, config)
        dist.barrier()
        if rank == 0:
            body = {
                "outcome": result.outcome,
                "steps": result.steps,
                "total_steps": result.total_steps,
                "trained_tokens": result.trained_tokens,
                "adapter_dir": str(result.adapter_dir) if result.adapter_dir else None,
                "metrics": result.metrics,
            }
            _write_atomic(launch_dir / RESULT, json.dumps(body))
        return 0
    except BaseException as err:
        _write_atomic(
            launch_dir / f"error-rank{rank:04d}.json",
            json.dumps(
                {"rank": rank, "type": type(err).__name__, "message": str(err), "errno": _errno_of(err)},
            ),
        )
        raise
    finally:
        reporter.close()
        with contextlib.suppress(Exception):
            dist.destroy_process_group()


def _errno_of(err: BaseException | None) -> int | None:
    seen = 0
    while err is not None and seen < 10:
        if isinstance(err, OSError) and err.errno:
            return err.errno
        err = err.__cause__ or err.__context__
        seen += 1
    return None


if __name__ == "__main__":
    sys.exit(rank_main(Path(sys.argv[1])))
