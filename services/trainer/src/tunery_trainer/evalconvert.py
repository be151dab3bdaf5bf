"""The evaluation domain objects (domain.py) <-> the evaluator's protobuf messages (tunery.evaluator.v1), for the
job spec (convert.py), job events (convert.py) and the evaluator client (evaluatorclient.py). An edge module."""

from __future__ import annotations

from typing import Any, cast

from google.protobuf import json_format, struct_pb2

from tunery.common.v1 import common_pb2
from tunery.evaluator.v1 import evaluator_pb2 as epb
from tunery.trainer.v1 import trainer_pb2 as pb
from tunery_trainer.domain import (
    EvaluationData,
    EvaluationRequest,
    GenerationConfig,
    GraderInfo,
    GraderSpec,
    JobError,
    JobEvaluation,
    JobEvaluationSpec,
    ModelRef,
)

_STATES: dict[str, int] = {
    "": common_pb2.JOB_STATE_UNSPECIFIED,
    "queued": common_pb2.JOB_STATE_QUEUED,
    "running": common_pb2.JOB_STATE_RUNNING,
    "succeeded": common_pb2.JOB_STATE_SUCCEEDED,
    "failed": common_pb2.JOB_STATE_FAILED,
    "cancelled": common_pb2.JOB_STATE_CANCELLED,
}
_STATE_NAMES = {v: k for k, v in _STATES.items()}


def state_from_pb(value: int) -> Any:
    """An evaluation's state; one the trainer does not know (validating, paused) reads as queued: not ended."""
    return _STATE_NAMES.get(value, "queued")


def _opt(msg: Any, name: str) -> Any:
    return getattr(msg, name) if msg.HasField(name) else None


# ---- the spec ---------------------------------------------------------------------------------------------------
def grader_from_pb(g: epb.GraderSpec) -> GraderSpec:
    return GraderSpec(type=g.type, name=g.name, config=json_format.MessageToDict(g.config))


def grader_to_pb(g: GraderSpec) -> epb.GraderSpec:
    config = struct_pb2.Struct()
    config.update(g.config)
    return epb.GraderSpec(type=g.type, name=g.name, config=config)


def generation_from_pb(g: epb.GenerationConfig) -> GenerationConfig:
    return GenerationConfig(
        temperature=_opt(g, "temperature"),
        max_tokens=g.max_tokens,
        seed=_opt(g, "seed"),
        stop=tuple(g.stop),
        concurrency=g.concurrency,
        top_p=_opt(g, "top_p"),
    )


def generation_to_pb(g: GenerationConfig) -> epb.GenerationConfig:
    out = epb.GenerationConfig(max_tokens=g.max_tokens, stop=list(g.stop), concurrency=g.concurrency)
    for name in ("temperature", "seed", "top_p"):
        if getattr(g, name) is not None:
            setattr(out, name, getattr(g, name))
    return out


def data_from_pb(d: epb.EvaluationData) -> EvaluationData:
    ref = d.dataset_version
    return EvaluationData(dataset=ref.dataset, version=ref.version, job_id=d.job_id, limit=d.limit)


def data_to_pb(d: EvaluationData) -> epb.EvaluationData:
    """Neither a job nor a dataset: only a limit (a job's own validation part, filled in when it is evaluated)."""
    if d.job_id:
        return epb.EvaluationData(job_id=d.job_id, limit=d.limit)
    if not d.dataset:
        return epb.EvaluationData(limit=d.limit)
    return epb.EvaluationData(
        dataset_version=epb.DatasetVersionRef(dataset=d.dataset, version=d.version), limit=d.limit
    )


def model_from_pb(m: epb.ModelRef) -> ModelRef:
    return ModelRef(model=m.model, base_url=m.base_url, api_key=m.api_key, label=m.label)


def model_to_pb(m: ModelRef, *, with_key: bool) -> epb.ModelRef:
    """`with_key` only towards the evaluator: what callers read back says whether a key is set, never the key."""
    return epb.ModelRef(
        model=m.model, base_url=m.base_url, label=m.label, api_key=m.api_key if with_key else "",
        api_key_set=bool(m.api_key),
    )


def spec_from_pb(s: pb.JobEvaluationSpec) -> JobEvaluationSpec:
    return JobEvaluationSpec(
        graders=tuple(grader_from_pb(g) for g in s.graders),
        generation=generation_from_pb(s.generation),
        data=data_from_pb(s.data) if s.HasField("data") else None,
        extra_models=tuple(model_from_pb(m) for m in s.extra_models),
        skip_base=s.skip_base,
    )


def spec_to_pb(s: JobEvaluationSpec) -> pb.JobEvaluationSpec:
    out = pb.JobEvaluationSpec(
        graders=[grader_to_pb(g) for g in s.graders],
        generation=generation_to_pb(s.generation),
        extra_models=[model_to_pb(m, with_key=False) for m in s.extra_models],
        skip_base=s.skip_base,
    )
    if s.data is not None:
        out.data.CopyFrom(data_to_pb(s.data))
    return out


# ---- where the evaluation has got -------------------------------------------------------------------------------
def _details(e: JobError) -> common_pb2.ErrorDetails:
    return common_pb2.ErrorDetails(code=e.code, message=e.message, field=e.param)


def job_evaluation_to_pb(e: JobEvaluation) -> pb.JobEvaluation:
    out = pb.JobEvaluation(evaluation_id=e.evaluation_id, state=cast(Any, _STATES.get(e.state, 0)))
    if e.summary is not None:
        json_format.ParseDict(e.summary, out.summary, ignore_unknown_fields=True)
    if e.error is not None:
        out.error.CopyFrom(_details(e.error))
    return out


def _summary(msg: Any) -> dict[str, Any] | None:
    return json_format.MessageToDict(msg.summary, preserving_proto_field_name=True) if msg.HasField("summary") else None


def _error(msg: Any) -> JobError | None:
    return JobError(msg.error.code, msg.error.message, msg.error.field) if msg.error.code else None


def job_evaluation_from_pb(e: pb.JobEvaluation) -> JobEvaluation:
    return JobEvaluation(
        evaluation_id=e.evaluation_id,
        state=_STATE_NAMES.get(e.state, ""),  # type: ignore[arg-type]
        summary=_summary(e),
        error=_error(e),
    )


def evaluation_from_pb(e: epb.Evaluation) -> JobEvaluation:
    return JobEvaluation(evaluation_id=e.id, state=state_from_pb(e.state), summary=_summary(e), error=_error(e))


def request_to_pb(r: EvaluationRequest) -> epb.CreateEvaluationRequest:
    return epb.CreateEvaluationRequest(
        spec=epb.EvaluationSpec(
            models=[model_to_pb(m, with_key=True) for m in r.models],
            data=data_to_pb(r.data),
            graders=[grader_to_pb(g) for g in r.graders],
            generation=generation_to_pb(r.generation),
            display_name=r.display_name,
            metadata=r.metadata,
            idempotency_key=r.idempotency_key,
        )
    )


def grader_info_from_pb(g: epb.GraderInfo) -> GraderInfo:
    return GraderInfo(
        type=g.type, config_schema=json_format.MessageToDict(g.config_schema), needs_reference=g.needs_reference
    )
