"""How a fine-tuning job reads in the terminal: state names and colours, the rows of `jobs show`, metrics, and a
sparkline of the loss; shared by the job commands and the live watch."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp

from tunery.cli.output import to_dict, when
from tunery.common.v1 import common_pb2
from tunery.trainer.v1 import trainer_pb2 as pb

SPARK = "▁▂▃▄▅▆▇█"
TERMINAL = frozenset({common_pb2.JOB_STATE_SUCCEEDED, common_pb2.JOB_STATE_FAILED, common_pb2.JOB_STATE_CANCELLED})
_STATE_STYLE = {"succeeded": "green", "failed": "red", "cancelled": "yellow", "running": "cyan", "paused": "magenta"}


def state_name(state: int) -> str:
    return common_pb2.JobState.Name(state).removeprefix("JOB_STATE_").lower() if state else "unknown"  # type: ignore[arg-type]


def styled(state: int) -> str:
    name = state_name(state)
    style = _STATE_STYLE.get(name)
    return f"[{style}]{name}[/]" if style else name


def num(v: float) -> str:
    return f"{v:.4g}"


def duration(seconds: float) -> str:
    return str(timedelta(seconds=round(seconds))) if seconds >= 0 and math.isfinite(seconds) else "-"


def seconds(ts: Timestamp) -> float:
    return ts.seconds + ts.nanos / 1e9


def hyperparameters(job: pb.Job) -> str:
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


def lora_text(spec: pb.JobSpec) -> str:
    lora = spec.lora
    rank = lora.rank if lora.HasField("rank") else 16
    alpha = lora.alpha if lora.HasField("alpha") else 2 * rank
    text = f"rank {rank}, alpha {alpha}"
    if lora.HasField("dropout"):
        text += f", dropout {lora.dropout:g}"
    return text + f", modules {', '.join(lora.target_modules) or 'all attention and MLP projections'}"


def data_ref(ref: pb.DatasetRef) -> str:
    return f"{ref.dataset} v{ref.version}" if ref.dataset else "-"


def progress_text(job: pb.Job) -> str:
    if not job.total_steps:
        return ""
    return f"{job.step}/{job.total_steps}"


def error_text(e: pb.JobError) -> str:
    return f"{e.code}: {e.message}" + (f" (field {e.param})" if e.param else "")


def job_rows(job: pb.Job) -> list[tuple[str, Any]]:
    s = job.spec
    validation = data_ref(s.validation_data) if s.validation_data.dataset else (
        f"{s.validation_split:g} of the training data" if s.validation_split else "-")
    rows: list[tuple[str, Any]] = [
        ("id", job.id), ("state", state_name(job.state)), ("fine-tuned model", job.fine_tuned_model),
        ("base model", s.base_model), ("training data", data_ref(s.training_data)), ("validation", validation),
        ("backend", s.backend + (f" {json.dumps(to_dict(s.backend_config))}" if s.backend_config.fields else "")),
        ("method", pb.Method.Name(s.method).removeprefix("METHOD_").lower() if s.method else "sft"),
        ("hyperparameters", hyperparameters(job)), ("lora", lora_text(s)),
    ]
    if job.total_steps:
        eta = f", ETA {duration(job.eta_seconds)}" if job.eta_seconds and job.state not in TERMINAL else ""
        rows.append(("progress", f"step {job.step}/{job.total_steps}, epoch {job.epoch:.2f}{eta}"))
    if job.trained_tokens:
        rows.append(("trained tokens", job.trained_tokens))
    m = job.metrics
    if m.train_loss or m.valid_loss:
        rows.append(("metrics", metrics_text(m)))
    if job.adapter_path:
        rows.append(("adapter", job.adapter_path))
    if job.error.code:
        rows.append(("error", error_text(job.error)))
    if job.worker:
        rows.append(("worker", f"{job.worker} (attempt {job.attempts})"))
    if job.spec.HasField("evaluation"):
        rows.append(("evaluation", evaluation_text(job)))
    rows += [("created", when(job.create_time)), ("started", when(job.start_time) or "-"),
             ("ended", when(job.end_time) or "-")]
    return rows


def evaluation_text(job: pb.Job) -> str:
    """What the job asked to evaluate, and how far that has got (the summary is a table of its own)."""
    spec = job.spec.evaluation
    graders = ", ".join(g.name or g.type for g in spec.graders)
    asked = f"{'fine-tuned alone' if spec.skip_base else 'base vs fine-tuned'} with {graders}"
    ev = job.evaluation
    if not job.HasField("evaluation"):
        return f"{asked}, once the job succeeds"
    if not ev.evaluation_id and not ev.error.code:
        return f"{asked}: being created"
    text = f"{asked}: {ev.evaluation_id or 'not created'} {state_name(ev.state) if ev.state else ''}".rstrip()
    if ev.error.code:
        text += f" ({ev.error.code}: {ev.error.message})"
    return text


def evaluation_cell(job: pb.Job) -> str:
    """The `jobs list` column: how far the job's evaluation has got, in a word ("" when it asked for none)."""
    if not job.spec.HasField("evaluation"):
        return ""
    ev = job.evaluation
    if not job.HasField("evaluation"):
        return "pending"  # until the job succeeds
    if ev.error.code and not ev.state:
        return "[red]error[/]"
    return styled(ev.state) if ev.state else "creating"


def metrics_text(m: pb.Metrics) -> str:
    parts = [f"train loss {num(m.train_loss)}"]
    if m.valid_loss:
        parts.append(f"valid loss {num(m.valid_loss)}")
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

