"""`tunery jobs ...`: fine-tuning jobs on the trainer service over gRPC; `watch` follows one job to its end.

Every value the user gives is sent as typed; the server validates the spec and names the field at fault, and the
error line adds the option to fix, so the CLI never second-guesses the server's rules.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from collections import deque
from collections.abc import Sequence
from contextlib import AbstractContextManager
from datetime import UTC, timedelta
from enum import StrEnum
from typing import Annotated, Any

import grpc
import typer
from google.protobuf import struct_pb2
from google.protobuf.timestamp_pb2 import Timestamp
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn

from tunery.cli import output, rpc
from tunery.cli.datasets import JsonOpt, _kv, _more_hint, _page, _paged
from tunery.cli.output import console, info, print_json, say, to_dict, when
from tunery.common.v1 import common_pb2
from tunery.errors import TuneryError
from tunery.trainer.v1 import trainer_pb2 as pb
from tunery.trainer.v1 import trainer_pb2_grpc

app = typer.Typer(help="Fine-tuning jobs: create, list, follow, cancel, pause, resume.", no_args_is_help=True)

WATCH_DEADLINE = 24 * 3600.0
"""Deadline of one event stream; a job that runs longer is followed on a fresh stream from the last event."""
RECONNECT_FOR = 300.0
"""How long `watch` keeps reconnecting to a trainer service that went away (a restart takes seconds)."""
SPARK = "▁▂▃▄▅▆▇█"
TERMINAL = frozenset({common_pb2.JOB_STATE_SUCCEEDED, common_pb2.JOB_STATE_FAILED, common_pb2.JOB_STATE_CANCELLED})
_STATE_STYLE = {"succeeded": "green", "failed": "red", "cancelled": "yellow", "running": "cyan", "paused": "magenta"}

AddrOpt = Annotated[str | None, typer.Option("--addr", envvar="TUNERY_TRAINER_ADDR", show_envvar=True,
                                             help="Trainer service host:port (default: up.json, else 127.0.0.1:50052)")]
JobArg = Annotated[str, typer.Argument(metavar="JOB", help="Job id.")]


class MethodChoice(StrEnum):
    sft = "sft"
    dpo = "dpo"


class StateChoice(StrEnum):
    validating_files = "validating_files"
    queued = "queued"
    running = "running"
    succeeded = "succeeded"
    failed = "failed"
    cancelled = "cancelled"
    paused = "paused"


# ---- connection and errors -------------------------------------------------------------------------------------

# Spec fields (as the server names them) -> the option that sets them.
_OPTIONS = {
    "base_model": "--model", "backend": "--backend", "method": "--method", "suffix": "--suffix",
    "max_seq_length": "--max-seq-length", "validation_split": "--validation-split", "backend_config": "--config",
    "training_data": "--dataset", "training_data.dataset": "--dataset", "training_data.version": "--version",
    "validation_data": "--validation-dataset", "validation_data.dataset": "--validation-dataset",
    "validation_data.version": "--validation-version", "hyperparameters.n_epochs": "--epochs",
    "hyperparameters.batch_size": "--batch-size", "hyperparameters.learning_rate": "--learning-rate",
    "hyperparameters.learning_rate_multiplier": "--lr-multiplier",
    "hyperparameters.gradient_accumulation_steps": "--grad-accum", "hyperparameters.warmup_ratio": "--warmup-ratio",
    "hyperparameters.weight_decay": "--weight-decay", "lora.rank": "--lora-rank", "lora.alpha": "--lora-alpha",
    "lora.dropout": "--lora-dropout", "checkpoint_every_steps": "--checkpoint-every",
    "eval_every_steps": "--eval-every",
}


def _option_of(field: str) -> str:
    if field.startswith("backend_config."):
        return f"--config {field.removeprefix('backend_config.')}=..."
    if field.startswith("lora.target_modules"):
        return "--target-module"
    return _OPTIONS.get(field, "")


def _with_field(err: TuneryError) -> TuneryError:
    """The server names the spec field; the user typed an option: name both, so the fix is obvious either way."""
    if not err.field or err.field == "job_id":
        return err
    opt = _option_of(err.field)
    return dataclasses.replace(err, message=f"{err.message} (field {err.field}{f', option {opt}' if opt else ''})")


def connect(addr: str | None) -> AbstractContextManager[trainer_pb2_grpc.TrainerServiceStub]:
    """A trainer service stub; any failure inside ends the command with one clear line and exit code 1."""
    return rpc.connect("trainer", trainer_pb2_grpc.TrainerServiceStub, addr, refine=_with_field)


# ---- formatting ------------------------------------------------------------------------------------------------


def state_name(state: int) -> str:
    return common_pb2.JobState.Name(state).removeprefix("JOB_STATE_").lower() if state else "unknown"  # type: ignore[arg-type]


def _styled(state: int) -> str:
    name = state_name(state)
    style = _STATE_STYLE.get(name)
    return f"[{style}]{name}[/]" if style else name


def _num(v: float) -> str:
    return f"{v:.4g}"


def _duration(seconds: float) -> str:
    return str(timedelta(seconds=round(seconds))) if seconds >= 0 and math.isfinite(seconds) else "-"


def _seconds(ts: Timestamp) -> float:
    return ts.seconds + ts.nanos / 1e9


def _hyperparameters(job: pb.Job) -> str:
    """Resolved values; those the server chose (the spec left them unset) are marked auto."""
    h, asked = job.resolved_hyperparameters, job.spec.hyperparameters
    parts = []
    for name, label, fmt in (("n_epochs", "epochs", str), ("batch_size", "batch size", str),
                             ("learning_rate", "learning rate", "{:g}".format),
                             ("learning_rate_multiplier", "lr multiplier", "{:g}".format),
                             ("gradient_accumulation_steps", "grad accum", str),
                             ("warmup_ratio", "warmup ratio", "{:g}".format),
                             ("weight_decay", "weight decay", "{:g}".format)):
        if not h.HasField(name):
            continue
        auto = name in ("n_epochs", "batch_size", "learning_rate") and not asked.HasField(name)
        parts.append(f"{label} {fmt(getattr(h, name))}{' (auto)' if auto else ''}")
    return ", ".join(parts) or "-"


def _lora(spec: pb.JobSpec) -> str:
    lora = spec.lora
    rank = lora.rank if lora.HasField("rank") else 16
    alpha = lora.alpha if lora.HasField("alpha") else 2 * rank
    text = f"rank {rank}, alpha {alpha}"
    if lora.HasField("dropout"):
        text += f", dropout {lora.dropout:g}"
    return text + f", modules {', '.join(lora.target_modules) or 'all attention and MLP projections'}"


def _data(ref: pb.DatasetRef) -> str:
    return f"{ref.dataset} v{ref.version}" if ref.dataset else "-"


def _progress(job: pb.Job) -> str:
    if not job.total_steps:
        return ""
    return f"{job.step}/{job.total_steps}"


def _error(e: pb.JobError) -> str:
    return f"{e.code}: {e.message}" + (f" (field {e.param})" if e.param else "")


def _job_rows(job: pb.Job) -> list[tuple[str, Any]]:
    s = job.spec
    validation = _data(s.validation_data) if s.validation_data.dataset else (
        f"{s.validation_split:g} of the training data" if s.validation_split else "-")
    rows: list[tuple[str, Any]] = [
        ("id", job.id), ("state", state_name(job.state)), ("fine-tuned model", job.fine_tuned_model),
        ("base model", s.base_model), ("training data", _data(s.training_data)), ("validation", validation),
        ("backend", s.backend + (f" {json.dumps(to_dict(s.backend_config))}" if s.backend_config.fields else "")),
        ("method", pb.Method.Name(s.method).removeprefix("METHOD_").lower() if s.method else "sft"),
        ("hyperparameters", _hyperparameters(job)), ("lora", _lora(s)),
    ]
    if job.total_steps:
        eta = f", ETA {_duration(job.eta_seconds)}" if job.eta_seconds and job.state not in TERMINAL else ""
        rows.append(("progress", f"step {job.step}/{job.total_steps}, epoch {job.epoch:.2f}{eta}"))
    if job.trained_tokens:
        rows.append(("trained tokens", job.trained_tokens))
    m = job.metrics
    if m.train_loss or m.valid_loss:
        rows.append(("metrics", _metrics(m)))
    if job.adapter_path:
        rows.append(("adapter", job.adapter_path))
    if job.error.code:
        rows.append(("error", _error(job.error)))
    if job.worker:
        rows.append(("worker", f"{job.worker} (attempt {job.attempts})"))
    rows += [("created", when(job.create_time)), ("started", when(job.start_time) or "-"),
             ("ended", when(job.end_time) or "-")]
    return rows


def _metrics(m: pb.Metrics) -> str:
    parts = [f"train loss {_num(m.train_loss)}"]
    if m.valid_loss:
        parts.append(f"valid loss {_num(m.valid_loss)}")
    if m.valid_token_accuracy:
        parts.append(f"valid token accuracy {m.valid_token_accuracy:.3f}")
    if m.tokens_per_second:
        parts.append(f"{m.tokens_per_second:.0f} tokens/s")
    return ", ".join(parts)


def sparkline(values: Sequence[float], width: int = 40) -> str:
    """Loss at a glance: bucket means (so a long run still fits a line), scaled between their min and max."""
    vals = [v for v in values if math.isfinite(v)]
    if not vals:
        return ""
    n = len(vals)
    if n > width:
        vals = [sum(b) / len(b) for b in (vals[i * n // width:(i + 1) * n // width] for i in range(width))]
    lo, hi = min(vals), max(vals)
    if hi - lo < 1e-12:
        return SPARK[3] * len(vals)
    return "".join(SPARK[round((v - lo) / (hi - lo) * (len(SPARK) - 1))] for v in vals)


# ---- create ----------------------------------------------------------------------------------------------------


def _auto_number(value: str | None, kind: type[int] | type[float], option: str) -> int | float | None:
    """`auto` (or nothing) leaves the field unset, which the server reads as "choose from the dataset size"."""
    if value is None or value.strip().lower() == "auto":
        return None
    try:
        return kind(value)
    except ValueError:
        what = "an integer" if kind is int else "a number"
        raise typer.BadParameter(f"{value!r} is not {what} or 'auto'", param_hint=option) from None


def _backend_config(pairs: Sequence[str]) -> struct_pb2.Struct:
    """KEY=VALUE pairs; a value that parses as JSON keeps its type (3, 0.5, true, [..]), anything else is a string."""
    values: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key.strip():
            raise typer.BadParameter(f"{pair!r} is not KEY=VALUE", param_hint="--config")
        try:
            value: Any = json.loads(raw)
        except ValueError:
            value = raw
        values[key.strip()] = value
    cfg = struct_pb2.Struct()
    cfg.update(values)
    return cfg


@app.command()
def create(
    dataset: Annotated[str, typer.Option("--dataset", "-d", help="Training dataset (name or id).")],
    version: Annotated[int, typer.Option("--version", "-v", help="Frozen version of the training dataset.")],
    validation_dataset: Annotated[str, typer.Option(help="Validation dataset (name or id).")] = "",
    validation_version: Annotated[int, typer.Option(help="Frozen version of --validation-dataset.")] = 0,
    validation_split: Annotated[float, typer.Option(help="Hold out this fraction of the training data instead.")
                                ] = 0.0,
    model: Annotated[str, typer.Option("--model", "-m", help="Base model: catalog name (`tunery jobs models`), "
                                       "local transformers folder or hub id (default: the catalog's default).")] = "",
    backend: Annotated[str, typer.Option(help="Training backend (`tunery jobs backends`); default peft.")] = "",
    config: Annotated[list[str] | None, typer.Option("--config", "-c", metavar="KEY=VALUE",
                                                     help="Backend setting (repeatable); VALUE is JSON or a string.")
                      ] = None,
    epochs: Annotated[str, typer.Option(metavar="N|auto", help="Passes over the training data.")] = "auto",
    batch_size: Annotated[str, typer.Option(metavar="N|auto", help="Examples per optimizer step.")] = "auto",
    learning_rate: Annotated[str, typer.Option(metavar="X|auto", help="Peak learning rate (LoRA: 1e-5 to 1e-3).")
                             ] = "auto",
    lr_multiplier: Annotated[float | None, typer.Option(help="Scales the automatic learning rate.")] = None,
    grad_accum: Annotated[int | None, typer.Option(help="Gradient accumulation steps (default 1).")] = None,
    warmup_ratio: Annotated[float | None, typer.Option()] = None,
    weight_decay: Annotated[float | None, typer.Option()] = None,
    lora_rank: Annotated[int | None, typer.Option(help="Default 16.")] = None,
    lora_alpha: Annotated[int | None, typer.Option(help="Default 2 x rank.")] = None,
    lora_dropout: Annotated[float | None, typer.Option()] = None,
    target_module: Annotated[list[str] | None, typer.Option(
        help="LoRA target module (repeatable); default every attention and MLP projection.")] = None,
    max_seq_length: Annotated[int, typer.Option(help="0: min(2048, the model's context).")] = 0,
    seed: Annotated[int, typer.Option()] = 0,
    suffix: Annotated[str, typer.Option(help="Part of the model name ft:<base>:<suffix>:<job>; [a-z0-9-], <= 40.")
                      ] = "",
    checkpoint_every: Annotated[int, typer.Option(help="Checkpoint every N steps (0: at epoch ends only).")] = 0,
    eval_every: Annotated[int, typer.Option(help="Validate every N steps (0: at epoch ends only).")] = 0,
    idempotency_key: Annotated[str, typer.Option(help="A retry with the same key returns the same job.")] = "",
    method: Annotated[MethodChoice, typer.Option(help="sft, or dpo on preference data.")] = MethodChoice.sft,
    watch: Annotated[bool, typer.Option("--watch", "-w", help="Then follow the job until it ends.")] = False,
    log_every: Annotated[int, typer.Option(min=1, help="With --watch off a terminal: a step line every N steps.")
                         ] = 10,
    addr: AddrOpt = None, as_json: JsonOpt = False,
) -> None:
    """Queue a fine-tuning job on a frozen dataset version; unset or `auto` hyperparameters are chosen for you."""
    if validation_version and not validation_dataset:
        raise typer.BadParameter("give --validation-dataset too", param_hint="--validation-version")
    if as_json and watch:
        raise typer.BadParameter("--json prints the created job; watch it with `tunery jobs watch`",
                                 param_hint="--watch")
    h = pb.Hyperparameters()
    for name, raw, kind, option in (("n_epochs", epochs, int, "--epochs"), ("batch_size", batch_size, int,
                                    "--batch-size"), ("learning_rate", learning_rate, float, "--learning-rate")):
        if (value := _auto_number(raw, kind, option)) is not None:
            setattr(h, name, value)
    for name, opt in (("learning_rate_multiplier", lr_multiplier), ("gradient_accumulation_steps", grad_accum),
                      ("warmup_ratio", warmup_ratio), ("weight_decay", weight_decay)):
        if opt is not None:
            setattr(h, name, opt)
    lora = pb.LoraConfig(target_modules=target_module or [])
    for name, opt in (("rank", lora_rank), ("alpha", lora_alpha), ("dropout", lora_dropout)):
        if opt is not None:
            setattr(lora, name, opt)
    spec = pb.JobSpec(
        base_model=model, training_data=pb.DatasetRef(dataset=dataset, version=version),
        validation_split=validation_split, method=pb.METHOD_DPO if method is MethodChoice.dpo else pb.METHOD_SFT,
        hyperparameters=h, lora=lora, max_seq_length=max_seq_length, seed=seed, suffix=suffix, backend=backend,
        backend_config=_backend_config(config or []), checkpoint_every_steps=checkpoint_every,
        eval_every_steps=eval_every, idempotency_key=idempotency_key)
    if validation_dataset:
        spec.validation_data.CopyFrom(pb.DatasetRef(dataset=validation_dataset, version=validation_version))
    with connect(addr) as stub:
        r = stub.CreateJob(pb.CreateJobRequest(spec=spec))
        if as_json:
            print_json(r)
            return
        job = r.job
        if r.existing:
            info(f"a job with idempotency key {escape(idempotency_key)!r} exists already: this is that job")
        say(f"created job [bold]{job.id}[/] ({_styled(job.state)})" if not r.existing
            else f"job [bold]{job.id}[/] ({_styled(job.state)})")
        console.print(_kv([("fine-tuned model", job.fine_tuned_model), ("base model", job.spec.base_model),
                           ("backend", job.spec.backend), ("hyperparameters", _hyperparameters(job))]))
        if not watch:
            info(f"follow it with `tunery jobs watch {job.id}`")
            return
        code = _watch(stub, job.id, 0, log_every)
    raise typer.Exit(code)


# ---- read ------------------------------------------------------------------------------------------------------


@app.command("list")
def list_jobs(state: Annotated[StateChoice | None, typer.Option(help="Only jobs in this state.")] = None,
              model: Annotated[str, typer.Option("--model", "-m", help="Only jobs on this base model.")] = "",
              dataset: Annotated[str, typer.Option("--dataset", "-d", help="Only jobs training on this dataset.")] = "",
              page_size: Annotated[int, typer.Option(min=0, max=1000)] = 50,
              page_token: Annotated[str, typer.Option()] = "",
              every: Annotated[bool, typer.Option("--all", help="Follow page tokens to the end.")] = False,
              addr: AddrOpt = None, as_json: JsonOpt = False) -> None:
    """List jobs, newest first."""
    wanted = common_pb2.JobState.Value(f"JOB_STATE_{state.value.upper()}") if state else 0
    with connect(addr) as stub:
        def fetch(token: str) -> tuple[list[Any], common_pb2.PageResponse]:
            r = stub.ListJobs(pb.ListJobsRequest(page=_page(page_size, token), state=wanted,  # type: ignore[arg-type]
                                                 base_model=model, dataset=dataset))
            return list(r.jobs), r.page

        items, page = _paged(fetch, page_token, every)
    if as_json:
        print_json({"jobs": [to_dict(j) for j in items], "page": to_dict(page)})
        return
    t = output.table("id", "state", "progress", "base model", "training data", "fine-tuned model", "created")
    for j in items:
        t.add_row(j.id, _styled(j.state), _progress(j), escape(j.spec.base_model), escape(_data(j.spec.training_data)),
                  escape(j.fine_tuned_model), when(j.create_time))
    if items:
        console.print(t)
    else:
        info("no jobs match" if state or model or dataset else "no jobs yet: `tunery jobs create --dataset D -v N`")
    _more_hint(len(items), page)


@app.command()
def show(job_id: JobArg, addr: AddrOpt = None, as_json: JsonOpt = False) -> None:
    """Show one job: spec, resolved hyperparameters, progress, metrics, adapter or error."""
    with connect(addr) as stub:
        job = stub.GetJob(pb.GetJobRequest(job_id=job_id)).job
    if as_json:
        print_json(job)
        return
    console.print(_kv(_job_rows(job)))


@app.command()
def checkpoints(job_id: JobArg, addr: AddrOpt = None, as_json: JsonOpt = False) -> None:
    """List a job's checkpoints (artifact paths); a paused or redelivered job resumes from the latest."""
    with connect(addr) as stub:
        items = list(stub.ListCheckpoints(pb.ListCheckpointsRequest(job_id=job_id)).checkpoints)
    if as_json:
        print_json({"checkpoints": [to_dict(c) for c in items]})
        return
    if not items:
        info(f"job {job_id} has no checkpoints yet")
        return
    t = output.table("step", "epoch", "path", "created")
    for c in items:
        t.add_row(str(c.step), f"{c.epoch:.2f}", escape(c.path), when(c.create_time))
    console.print(t)


@app.command()
def models(addr: AddrOpt = None, as_json: JsonOpt = False) -> None:
    """Base models of the catalog (a local transformers folder or a hub id works too)."""
    with connect(addr) as stub:
        items = list(stub.ListBaseModels(pb.ListBaseModelsRequest()).models)
    if as_json:
        print_json({"models": [to_dict(m) for m in items]})
        return
    t = output.table("name", "default", "context", "source", "description")
    for m in items:
        t.add_row(escape(m.name), "yes" if m.default else "", str(m.context_length or ""), m.source,
                  escape(m.description))
    console.print(t)


@app.command()
def backends(addr: AddrOpt = None, as_json: JsonOpt = False) -> None:
    """Installed training backends and every setting `--config KEY=VALUE` accepts."""
    with connect(addr) as stub:
        items = list(stub.ListBackends(pb.ListBackendsRequest()).backends)
    if as_json:
        print_json({"backends": [to_dict(b) for b in items]})
        return
    for b in items:
        methods = ", ".join(pb.Method.Name(m).removeprefix("METHOD_").lower() for m in b.methods)
        say(f"[bold]{escape(b.name)}[/]: {escape(b.description)} (methods: {methods or '-'}; "
            f"from {escape(b.provided_by or 'tunery')})")
        if not b.config:
            say("  no settings")
            continue
        t = output.table("setting", "type", "default", "help")
        for f in b.config:
            t.add_row(escape(f.name), escape(f.type), escape(f.default_json), escape(f.help))
        console.print(t)


# ---- control ---------------------------------------------------------------------------------------------------


@app.command()
def cancel(job_id: JobArg, addr: AddrOpt = None) -> None:
    """Cancel a job; a running one stops within seconds and keeps its checkpoints."""
    with connect(addr) as stub:
        job = stub.CancelJob(pb.CancelJobRequest(job_id=job_id)).job
    say(f"cancelled job {job.id} ({_styled(job.state)})")


@app.command()
def pause(job_id: JobArg, addr: AddrOpt = None) -> None:
    """Pause a job: a running one checkpoints and stops, a queued one is held back."""
    with connect(addr) as stub:
        job = stub.PauseJob(pb.PauseJobRequest(job_id=job_id)).job
    say(f"paused job {job.id} ({_styled(job.state)}); `tunery jobs resume {job.id}` continues it")


@app.command()
def resume(job_id: JobArg, addr: AddrOpt = None) -> None:
    """Queue a paused job again; it continues from its latest checkpoint."""
    with connect(addr) as stub:
        job = stub.ResumeJob(pb.ResumeJobRequest(job_id=job_id)).job
    say(f"resumed job {job.id} ({_styled(job.state)}); it continues from its latest checkpoint")


# ---- watch -----------------------------------------------------------------------------------------------------


class _Reconnect:
    """Backoff across the calls of one watch: a restarted trainer service costs a pause, not the watch."""

    def __init__(self, view: _View) -> None:
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


class _View:
    """Draws a watch: a live bar on a terminal, else throttled plain lines (CI logs, `make demo`)."""

    def __init__(self, job: pb.Job, log_every: int, live: bool) -> None:
        self.job_id = job.id
        self.log_every = log_every
        self.live = live
        self.losses: dict[int, float] = {}  # by step: a redelivered job repeats steps, the last value counts
        self.window: deque[tuple[float, int]] = deque(maxlen=20)
        self.printed_step = False
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

    def __enter__(self) -> _View:
        if self.progress is not None:
            self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.progress is not None:
            self.progress.stop()

    def line(self, text: str, level: str = "info", ts: Timestamp | None = None) -> None:
        stamp = _clock(ts)
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
        elif kind == "validation":
            v = ev.validation
            self.line(f"validation at step {v.step}: loss {_num(v.valid_loss)}, token accuracy "
                      f"{v.valid_token_accuracy:.3f}", ts=ev.time)
        else:
            self.line(escape(ev.message), ev.level, ev.time)

    def state(self, sc: pb.StateChange, ts: Timestamp) -> None:
        to = state_name(sc.to_state)
        text = f"{state_name(sc.from_state) if sc.from_state else 'new'} → {_styled(sc.to_state)}"
        if sc.reason and to != "failed":
            text += f": {escape(sc.reason)}"
        if sc.error.code:
            text += f": {escape(_error(sc.error))}"
        self.line(text, "error" if to == "failed" else "info", ts)
        if to == "running":
            self.window.clear()  # a new attempt: its speed is its own
        if self.progress is not None and self.task is not None:
            self.progress.update(self.task, description=to)

    def step(self, s: pb.StepLog, ts: Timestamp) -> None:
        self.losses[s.step] = s.train_loss
        self.window.append((_seconds(ts), s.step))
        eta = s.eta_seconds if s.eta_seconds > 0 else self._eta(s)
        speed = f"{s.tokens_per_second:.0f} tok/s" if s.tokens_per_second else ""
        if self.progress is not None and self.task is not None:
            self.progress.update(self.task, total=s.total_steps or None, completed=s.step, epoch=f"{s.epoch:.2f}",
                                 loss=_num(s.train_loss), speed=speed, eta=_duration(eta) if eta is not None else "-")
            return
        if self.printed_step and s.step % self.log_every and s.step != s.total_steps and s.step != 1:
            return
        self.printed_step = True
        eta_text = f" ETA {_duration(eta)}" if eta is not None and s.step != s.total_steps else ""
        self.line(f"step {s.step}/{s.total_steps} epoch {s.epoch:.2f} loss {_num(s.train_loss)} "
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
            took = f" in {_duration(_seconds(job.end_time) - _seconds(job.start_time))}"
        steps = ""
        if job.total_steps:
            tokens = f", {job.trained_tokens} trained tokens" if job.trained_tokens else ""
            steps = f" ({job.step}/{job.total_steps} steps{tokens})"
        say(f"job {job.id} {_styled(job.state)}{took}{steps}")
        losses = [self.losses[k] for k in sorted(self.losses)]
        if losses:
            say(f"loss {_num(losses[0])} → {_num(losses[-1])}  {sparkline(losses)}")
        if job.metrics.train_loss or job.metrics.valid_loss:
            say(f"metrics: {_metrics(job.metrics)}")
        if name == "succeeded":
            say(f"adapter: {escape(job.adapter_path)}; model name {escape(job.fine_tuned_model)}")
            return 0
        if name == "failed":
            output.print_error(TuneryError(f"job {job.id} failed: {_error(job.error)}", code=job.error.code,
                                           field=job.error.param))
        return 1


def _clock(ts: Timestamp | None) -> str:
    if ts is None or not ts.seconds:
        return time.strftime("%H:%M:%S")
    return ts.ToDatetime(tzinfo=UTC).astimezone().strftime("%H:%M:%S")


def _watch(stub: trainer_pb2_grpc.TrainerServiceStub, job_id: str, after: int, log_every: int) -> int:
    """Follow until the job ends; returns the exit code. Ctrl-C stops watching, never the job."""
    job = stub.GetJob(pb.GetJobRequest(job_id=job_id)).job
    view = _View(job, log_every, live=console.is_terminal)
    if not view.live:
        progress = f", step {job.step}/{job.total_steps}" if job.total_steps else ""
        say(f"watching job {job.id} ({state_name(job.state)}{progress})")
    last = after
    retry = _Reconnect(view)
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


@app.command()
def watch(job_id: JobArg,
          from_sequence: Annotated[int, typer.Option(min=0, help="Start after this event (0: from the start).")] = 0,
          log_every: Annotated[int, typer.Option(min=1, help="Off a terminal: one step line every N steps (plus the "
                                                 "first and last).")] = 10,
          addr: AddrOpt = None) -> None:
    """Follow a job live until it ends: progress, loss, checkpoints, validations; exit code 0 only if it succeeded."""
    with connect(addr) as stub:
        code = _watch(stub, job_id, from_sequence, log_every)
    raise typer.Exit(code)
