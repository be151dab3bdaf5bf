"""`tunery jobs watch`: follow one job live to its end (a progress bar on a terminal, throttled lines elsewhere),
riding out a trainer service that restarts on the way."""

from __future__ import annotations

import time
from collections import deque
from datetime import UTC

import grpc
import typer
from google.protobuf.timestamp_pb2 import Timestamp
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn

from tunery.cli import output
from tunery.cli.evalview import pairs_table, summary_table
from tunery.cli.jobview import (
    TERMINAL,
    duration,
    error_text,
    metrics_text,
    num,
    seconds,
    sparkline,
    state_name,
    styled,
)
from tunery.cli.output import console, info, say
from tunery.errors import TuneryError
from tunery.trainer.v1 import trainer_pb2 as pb
from tunery.trainer.v1 import trainer_pb2_grpc

WATCH_DEADLINE = 24 * 3600.0
"""Deadline of one event stream; a job that runs longer is followed on a fresh stream from the last event."""
RECONNECT_FOR = 300.0
"""How long `watch` keeps reconnecting to a trainer service that went away (a restart takes seconds)."""


class Reconnect:
    """Backoff across the calls of one watch: a restarted trainer service costs a pause, not the watch."""

    def __init__(self, view: View) -> None:
        self.view = view
        self.lost_since: float | None = None
        self.delay = 0.5

    def ok(self) -> None:
        if self.lost_since is not None:
            self.view.line("reconnected to the trainer service")
        self.lost_since, self.delay = None, 0.5

    def wait_or_raise(self, err: grpc.RpcError, last: int, elapsed: float) -> None:
        """Sleep before the next try; re-raise what is not transient, or a service that stays away."""
        code = err.code()  # type: ignore[attr-defined]
        if code == grpc.StatusCode.DEADLINE_EXCEEDED and elapsed >= WATCH_DEADLINE * 0.9:
            self.ok()  # a day-long job outlived one stream: follow on at once
            return
        if code not in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
            raise err
        now = time.monotonic()
        if self.lost_since is None:
            self.lost_since = now
            self.view.line(f"lost the trainer service ({escape(err.details() or code.name)}); "  # type: ignore[attr-defined]
                           f"reconnecting from event {last}", "warning")
        elif now - self.lost_since > RECONNECT_FOR:
            raise err
        time.sleep(self.delay)
        self.delay = min(self.delay * 2, 5.0)


class View:
    """Draws a watch: a live bar on a terminal, else throttled plain lines (CI logs, `make demo`)."""

    def __init__(self, job: pb.Job, log_every: int, live: bool) -> None:
        self.job_id = job.id
        self.log_every = log_every
        self.live = live
        self.losses: dict[int, float] = {}  # by step: a redelivered job repeats steps, the last value counts
        self.window: deque[tuple[float, int]] = deque(maxlen=20)
        self.printed_step = False
        self.evaluation: pb.JobEvaluation | None = None
        self.progress: Progress | None = None
        self.task: TaskID | None = None
        if live:
            self.progress = Progress(
                TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                TextColumn("epoch {task.fields[epoch]}"), TextColumn("loss {task.fields[loss]}"),
                TextColumn("{task.fields[speed]}"), TextColumn("ETA {task.fields[eta]}"), console=console)
            self.task = self.progress.add_task(state_name(job.state), total=job.total_steps or None,
                                               completed=job.step, epoch=f"{job.epoch:.2f}", loss="-", speed="",
                                               eta="-")

    def __enter__(self) -> View:
        if self.progress is not None:
            self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.progress is not None:
            self.progress.stop()

    def line(self, text: str, level: str = "info", ts: Timestamp | None = None) -> None:
        stamp = clock(ts)
        style = {"warning": "yellow", "error": "red"}.get(level)
        body = f"[{style}]{level}:[/] {text}" if style else text
        (self.progress.console if self.progress else console).print(f"[dim]{stamp}[/] {body}", soft_wrap=True,
                                                                    highlight=False)

    def event(self, ev: pb.JobEvent) -> None:
        kind = ev.WhichOneof("data")
        if kind == "step":
            self.step(ev.step, ev.time)
        elif kind == "state_change":
            self.state(ev.state_change, ev.time)
        elif kind == "checkpoint":
            c = ev.checkpoint
            self.line(f"checkpoint at step {c.step} (epoch {c.epoch:.2f}): {escape(c.path)}", ts=ev.time)
        elif kind == "evaluation":
            self.line(escape(ev.message), ev.level, ev.time)
            self.evaluation = ev.evaluation
        elif kind == "validation":
            v = ev.validation
            self.line(f"validation at step {v.step}: loss {num(v.valid_loss)}, token accuracy "
                      f"{v.valid_token_accuracy:.3f}", ts=ev.time)
        else:
            self.line(escape(ev.message), ev.level, ev.time)

    def state(self, sc: pb.StateChange, ts: Timestamp) -> None:
        to = state_name(sc.to_state)
        text = f"{state_name(sc.from_state) if sc.from_state else 'new'} → {styled(sc.to_state)}"
        if sc.reason and to != "failed":
            text += f": {escape(sc.reason)}"
        if sc.error.code:
            text += f": {escape(error_text(sc.error))}"
        self.line(text, "error" if to == "failed" else "info", ts)
        if to == "running":
            self.window.clear()  # a new attempt: its speed is its own
        if self.progress is not None and self.task is not None:
            self.progress.update(self.task, description=to)

    def step(self, s: pb.StepLog, ts: Timestamp) -> None:
        self.losses[s.step] = s.train_loss
        self.window.append((seconds(ts), s.step))
        eta = s.eta_seconds if s.eta_seconds > 0 else self._eta(s)
        speed = f"{s.tokens_per_second:.0f} tok/s" if s.tokens_per_second else ""
        if self.progress is not None and self.task is not None:
            self.progress.update(self.task, total=s.total_steps or None, completed=s.step, epoch=f"{s.epoch:.2f}",
                                 loss=num(s.train_loss), speed=speed, eta=duration(eta) if eta is not None else "-")
            return
        if self.printed_step and s.step % self.log_every and s.step != s.total_steps and s.step != 1:
            return
        self.printed_step = True
        eta_text = f" ETA {duration(eta)}" if eta is not None and s.step != s.total_steps else ""
        self.line(f"step {s.step}/{s.total_steps} epoch {s.epoch:.2f} loss {num(s.train_loss)} "
                  f"lr {s.learning_rate:.2e}{f' {speed}' if speed else ''}{eta_text}", ts=ts)

    def _eta(self, s: pb.StepLog) -> float | None:
        """From the events' own times, so steps replayed from history do not look infinitely fast."""
        if len(self.window) < 2:
            return None
        (t0, s0), (t1, s1) = self.window[0], self.window[-1]
        if s1 <= s0 or t1 <= t0:
            return None
        return (s.total_steps - s.step) * (t1 - t0) / (s1 - s0)

    def summary(self, job: pb.Job) -> int:
        """Final state, loss curve, metrics, adapter or error; the exit code says whether it succeeded."""
        name = state_name(job.state)
        took = ""
        if job.start_time.seconds and job.end_time.seconds:
            took = f" in {duration(seconds(job.end_time) - seconds(job.start_time))}"
        steps = ""
        if job.total_steps:
            tokens = f", {job.trained_tokens} trained tokens" if job.trained_tokens else ""
            steps = f" ({job.step}/{job.total_steps} steps{tokens})"
        say(f"job {job.id} {styled(job.state)}{took}{steps}")
        losses = [self.losses[k] for k in sorted(self.losses)]
        if losses:
            say(f"loss {num(losses[0])} → {num(losses[-1])}  {sparkline(losses)}")
        if job.metrics.train_loss or job.metrics.valid_loss:
            say(f"metrics: {metrics_text(job.metrics)}")
        if name == "succeeded":
            say(f"adapter: {escape(job.adapter_path)}; model name {escape(job.fine_tuned_model)}")
            if job.HasField("evaluation"):
                self.evaluation_summary(job.evaluation)
            return 0
        if name == "failed":
            output.print_error(TuneryError(f"job {job.id} failed: {error_text(job.error)}", code=job.error.code,
                                           field=job.error.param))
        return 1


    def evaluation_summary(self, ev: pb.JobEvaluation) -> None:
        """The job's evaluation ends within the watch (the trainer's stream follows it): its tables, or its error."""
        say(f"evaluation {escape(ev.evaluation_id or '(not created)')} {styled(ev.state)}"
            + (f": {escape(ev.error.code)}: {escape(ev.error.message)}" if ev.error.code else ""))
        for t in (summary_table(ev.summary), pairs_table(ev.summary)):
            if t is not None:
                console.print(t)


def clock(ts: Timestamp | None) -> str:
    if ts is None or not ts.seconds:
        return time.strftime("%H:%M:%S")
    return ts.ToDatetime(tzinfo=UTC).astimezone().strftime("%H:%M:%S")


def follow(stub: trainer_pb2_grpc.TrainerServiceStub, job_id: str, after: int, log_every: int) -> int:
    """Follow until the job ends; returns the exit code. Ctrl-C stops watching, never the job."""
    job = stub.GetJob(pb.GetJobRequest(job_id=job_id)).job
    view = View(job, log_every, live=console.is_terminal)
    if not view.live:
        progress = f", step {job.step}/{job.total_steps}" if job.total_steps else ""
        say(f"watching job {job.id} ({state_name(job.state)}{progress})")
    last = after
    retry = Reconnect(view)
    try:
        with output.stdout_pipe(), view:
            while True:
                started = time.monotonic()
                try:
                    for r in stub.StreamJobEvents(pb.StreamJobEventsRequest(job_id=job_id, after_sequence=last),
                                                  timeout=WATCH_DEADLINE):
                        retry.ok()
                        last = r.event.sequence
                        view.event(r.event)
                    job = stub.GetJob(pb.GetJobRequest(job_id=job_id)).job
                except grpc.RpcError as err:
                    retry.wait_or_raise(err, last, time.monotonic() - started)
                    continue
                retry.ok()
                if job.state in TERMINAL:
                    break
                time.sleep(0.5)  # the stream closed early (a service shutting down): follow on from the last event
    except KeyboardInterrupt:
        info(f"stopped watching; job {job_id} goes on (`tunery jobs cancel {job_id}` stops it)")
        raise typer.Exit(130) from None
    with output.stdout_pipe():
        return view.summary(job)

