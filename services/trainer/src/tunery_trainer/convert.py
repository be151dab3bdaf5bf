"""Domain objects <-> protobuf messages; with server.py and wire.py the only modules that know proto types."""

from __future__ import annotations

from datetime import UTC
from typing import Any, cast

from google.protobuf import json_format, struct_pb2

from tunery.common.v1 import common_pb2
from tunery.runtime.protoconv import ts
from tunery.trainer.v1 import trainer_pb2 as pb
from tunery_trainer import evalconvert
from tunery_trainer.domain import (
    BackendInfo,
    BaseModelInfo,
    Checkpoint,
    DatasetRef,
    EventData,
    Hyperparameters,
    Job,
    JobError,
    JobEvaluation,
    JobEvent,
    JobSpec,
    LoraSettings,
    Method,
    Metrics,
    ResolvedHyperparameters,
    StateChange,
    StepLog,
    TrainTask,
    Validation,
)
from tunery_trainer.states import State

_STATES: dict[str, int] = {
    "validating_files": common_pb2.JOB_STATE_VALIDATING_FILES,
    "queued": common_pb2.JOB_STATE_QUEUED,
    "running": common_pb2.JOB_STATE_RUNNING,
    "succeeded": common_pb2.JOB_STATE_SUCCEEDED,
    "failed": common_pb2.JOB_STATE_FAILED,
    "cancelled": common_pb2.JOB_STATE_CANCELLED,
    "paused": common_pb2.JOB_STATE_PAUSED,
}
_STATE_NAMES = {v: k for k, v in _STATES.items()}
_METHODS: dict[str, int] = {"sft": pb.METHOD_SFT, "dpo": pb.METHOD_DPO}


def state_to_pb(state: str) -> Any:
    return _STATES.get(state, common_pb2.JOB_STATE_UNSPECIFIED)


def state_from_pb(value: int) -> Any:
    """The state's name; "" for JOB_STATE_UNSPECIFIED (no filter, or a job that did not exist yet)."""
    return _STATE_NAMES.get(value, "")


def method_to_pb(method: str) -> Any:
    return _METHODS[method]


def _opt(msg: Any, name: str) -> Any:
    return getattr(msg, name) if msg.HasField(name) else None


# ---- the spec --------------------------------------------------------------------------------------------------------
def _ref(r: pb.DatasetRef) -> DatasetRef:
    return DatasetRef(dataset=r.dataset, version=r.version)


def spec_from_pb(s: pb.JobSpec) -> JobSpec:
    h, lora = s.hyperparameters, s.lora
    method: Method = "dpo" if s.method == pb.METHOD_DPO else "sft"
    return JobSpec(
        training_data=_ref(s.training_data),
        base_model=s.base_model,
        validation_data=_ref(s.validation_data) if s.validation_data.dataset else None,
        validation_split=s.validation_split,
        method=method,
        hyperparameters=Hyperparameters(**{f.name: _opt(h, f.name) for f in pb.Hyperparameters.DESCRIPTOR.fields}),
        lora=LoraSettings(
            rank=_opt(lora, "rank"),
            alpha=_opt(lora, "alpha"),
            dropout=_opt(lora, "dropout"),
            target_modules=tuple(lora.target_modules),
        ),
        max_seq_length=s.max_seq_length,
        seed=s.seed,
        suffix=s.suffix,
        backend=s.backend,
        backend_config=json_format.MessageToDict(s.backend_config),
        checkpoint_every_steps=s.checkpoint_every_steps,
        eval_every_steps=s.eval_every_steps,
        idempotency_key=s.idempotency_key,
        evaluation=evalconvert.spec_from_pb(s.evaluation) if s.HasField("evaluation") else None,
    )


def _fields(obj: Any, names: Any) -> dict[str, Any]:
    return {n: getattr(obj, n) for n in names if getattr(obj, n) is not None}


def spec_to_pb(s: JobSpec) -> pb.JobSpec:
    config = struct_pb2.Struct()
    config.update(s.backend_config)
    lora = s.lora
    return pb.JobSpec(
        base_model=s.base_model,
        training_data=pb.DatasetRef(dataset=s.training_data.dataset, version=s.training_data.version),
        validation_data=(
            pb.DatasetRef(dataset=s.validation_data.dataset, version=s.validation_data.version)
            if s.validation_data
            else None
        ),
        validation_split=s.validation_split,
        method=cast(Any, _METHODS[s.method]),
        hyperparameters=pb.Hyperparameters(**_fields(s.hyperparameters, Hyperparameters.__slots__)),
        lora=pb.LoraConfig(**_fields(lora, ("rank", "alpha", "dropout")), target_modules=list(lora.target_modules)),
        max_seq_length=s.max_seq_length,
        seed=s.seed,
        suffix=s.suffix,
        backend=s.backend,
        backend_config=config,
        checkpoint_every_steps=s.checkpoint_every_steps,
        eval_every_steps=s.eval_every_steps,
        idempotency_key=s.idempotency_key,
        evaluation=evalconvert.spec_to_pb(s.evaluation) if s.evaluation is not None else None,
    )


def resolved_to_pb(h: ResolvedHyperparameters) -> pb.Hyperparameters:
    return pb.Hyperparameters(**_fields(h, ResolvedHyperparameters.__slots__))


def resolved_from_pb(h: pb.Hyperparameters) -> ResolvedHyperparameters:
    return ResolvedHyperparameters(
        n_epochs=h.n_epochs,
        batch_size=h.batch_size,
        learning_rate=h.learning_rate,
        gradient_accumulation_steps=h.gradient_accumulation_steps or 1,
        warmup_ratio=h.warmup_ratio,
        weight_decay=h.weight_decay,
        learning_rate_multiplier=_opt(h, "learning_rate_multiplier"),
    )


# ---- jobs ------------------------------------------------------------------------------------------------------------
def _metrics(m: Metrics) -> pb.Metrics:
    return pb.Metrics(
        train_loss=m.train_loss,
        valid_loss=m.valid_loss,
        valid_token_accuracy=m.valid_token_accuracy,
        tokens_per_second=m.tokens_per_second,
    )


def _error(e: JobError) -> pb.JobError:
    return pb.JobError(code=e.code, message=e.message, param=e.param)


# Fields of the same name and type on both sides.
_JOB_FIELDS = ("id", "fine_tuned_model", "step", "total_steps", "epoch", "trained_tokens", "adapter_path", "attempts",
               "worker", "eta_seconds")  # fmt: skip
_TASK_FIELDS = ("generation", "base_model", "train_file", "validation_file", "train_examples", "validation_examples",
                "max_seq_length")  # fmt: skip


def job(j: Job) -> pb.Job:
    out = pb.Job(
        **{name: getattr(j, name) for name in _JOB_FIELDS},
        spec=spec_to_pb(j.spec),
        state=state_to_pb(j.state),
        resolved_hyperparameters=resolved_to_pb(j.hyperparameters),
        metrics=_metrics(j.metrics),
        create_time=ts(j.created_at),
    )
    if j.started_at is not None:
        out.start_time.CopyFrom(ts(j.started_at))
    if j.ended_at is not None:
        out.end_time.CopyFrom(ts(j.ended_at))
    if j.error is not None:
        out.error.CopyFrom(_error(j.error))
    if j.evaluation is not None:
        out.evaluation.CopyFrom(evalconvert.job_evaluation_to_pb(j.evaluation))
    return out


def checkpoint(c: Checkpoint) -> pb.Checkpoint:
    return pb.Checkpoint(step=c.step, epoch=c.epoch, path=c.path, create_time=ts(c.create_time))


def backend(b: BackendInfo) -> pb.Backend:
    return pb.Backend(
        name=b.name,
        description=b.description,
        methods=[cast(Any, _METHODS[m]) for m in b.methods if m in _METHODS],
        config=[pb.ConfigField(name=f.name, type=f.type, default_json=f.default_json, help=f.help) for f in b.config],
        provided_by=b.provided_by,
    )


def base_model(m: BaseModelInfo) -> pb.BaseModel:
    return pb.BaseModel(
        name=m.name, description=m.description, context_length=m.context_length, source=m.source, default=m.default
    )


# ---- events ----------------------------------------------------------------------------------------------------------
def event_to_pb(e: JobEvent) -> pb.JobEvent:
    out = pb.JobEvent(job_id=e.job_id, sequence=e.sequence, level=e.level, message=e.message, time=ts(e.time))
    d = e.data
    if isinstance(d, StateChange):
        sc = pb.StateChange(
            from_state=state_to_pb(d.from_state),
            to_state=state_to_pb(d.to_state),
            reason=d.reason,
            adapter_path=d.adapter_path,
            trained_tokens=d.trained_tokens,
            worker=d.worker,
            fine_tuned_model=d.fine_tuned_model,
            base_model=d.base_model,
        )
        if d.error is not None:
            sc.error.CopyFrom(_error(d.error))
        if d.metrics is not None:
            sc.metrics.CopyFrom(_metrics(d.metrics))
        out.state_change.CopyFrom(sc)
    elif isinstance(d, StepLog):
        out.step.CopyFrom(pb.StepLog(**_fields(d, StepLog.__slots__)))
    elif isinstance(d, Checkpoint):
        out.checkpoint.CopyFrom(checkpoint(d))
    elif isinstance(d, Validation):
        out.validation.CopyFrom(pb.Validation(**_fields(d, Validation.__slots__)))
    elif isinstance(d, JobEvaluation):
        out.evaluation.CopyFrom(evalconvert.job_evaluation_to_pb(d))
    return out


def event_from_pb(e: pb.JobEvent) -> JobEvent:
    kind = e.WhichOneof("data")
    data: EventData | None = None
    if kind == "state_change":
        sc = e.state_change
        data = StateChange(
            from_state=state_from_pb(sc.from_state),
            to_state=cast(State, state_from_pb(sc.to_state)),
            reason=sc.reason,
            error=JobError(sc.error.code, sc.error.message, sc.error.param) if sc.HasField("error") else None,
            adapter_path=sc.adapter_path,
            metrics=Metrics(**_fields(sc.metrics, Metrics.__slots__)) if sc.HasField("metrics") else None,
            trained_tokens=sc.trained_tokens,
            fine_tuned_model=sc.fine_tuned_model,
            base_model=sc.base_model,
            worker=sc.worker,
        )
    elif kind == "step":
        data = StepLog(**_fields(e.step, StepLog.__slots__))
    elif kind == "checkpoint":
        c = e.checkpoint
        data = Checkpoint(c.step, c.epoch, c.path, c.create_time.ToDatetime(tzinfo=UTC))
    elif kind == "validation":
        data = Validation(**_fields(e.validation, Validation.__slots__))
    elif kind == "evaluation":
        data = evalconvert.job_evaluation_from_pb(e.evaluation)
    level = e.level if e.level in ("info", "warning", "error") else "info"
    return JobEvent(
        job_id=e.job_id,
        message=e.message,
        level=cast(Any, level),
        time=e.time.ToDatetime(tzinfo=UTC),
        sequence=e.sequence,
        data=data,
    )


# ---- the work queue --------------------------------------------------------------------------------------------------
def task_to_pb(t: TrainTask) -> pb.TrainTask:
    job = pb.Job(
        id=t.job_id,
        spec=spec_to_pb(t.spec),
        fine_tuned_model=t.fine_tuned_model,
        resolved_hyperparameters=resolved_to_pb(t.hyperparameters),
    )
    return pb.TrainTask(job=job, **{name: getattr(t, name) for name in _TASK_FIELDS})


def task_from_pb(t: pb.TrainTask) -> TrainTask:
    return TrainTask(
        job_id=t.job.id,
        spec=spec_from_pb(t.job.spec),
        hyperparameters=resolved_from_pb(t.job.resolved_hyperparameters),
        fine_tuned_model=t.job.fine_tuned_model,
        **{name: getattr(t, name) for name in _TASK_FIELDS},
    )
