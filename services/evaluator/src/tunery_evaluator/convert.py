"""Domain objects <-> protobuf messages; with server.py, publish.py and the gRPC clients the only modules that know
proto types."""

from __future__ import annotations

from typing import Any

import orjson
from google.protobuf import json_format, struct_pb2

from tunery.common.v1 import common_pb2
from tunery.evaluator.v1 import evaluator_pb2 as pb
from tunery.runtime.protoconv import ts
from tunery_evaluator.domain import (
    DatasetVersionRef,
    ErrorInfo,
    Evaluation,
    EvaluationData,
    EvaluationSpec,
    ExampleResult,
    GenerationConfig,
    Grade,
    GraderInfo,
    GraderSpec,
    ModelRef,
    Summary,
)
from tunery_evaluator.graders.base import Answer

_STATES: dict[str, Any] = {
    "queued": common_pb2.JOB_STATE_QUEUED,
    "running": common_pb2.JOB_STATE_RUNNING,
    "succeeded": common_pb2.JOB_STATE_SUCCEEDED,
    "failed": common_pb2.JOB_STATE_FAILED,
    "cancelled": common_pb2.JOB_STATE_CANCELLED,
}
_STATE_NAMES = {v: k for k, v in _STATES.items()}


def state_to_pb(state: str) -> Any:
    return _STATES.get(state, common_pb2.JOB_STATE_UNSPECIFIED)


def state_from_pb(value: int) -> str:
    """The state's name; "" for states an evaluation never has (the filter then matches nothing)."""
    return _STATE_NAMES.get(value, "")


def _opt(msg: Any, name: str) -> Any:
    return getattr(msg, name) if msg.HasField(name) else None


def _ints(v: Any) -> Any:
    """Struct numbers are doubles; integral ones come back as ints (a config's "max_tokens": 5 stays 5)."""
    if isinstance(v, float) and v.is_integer() and abs(v) < 2**53:
        return int(v)
    if isinstance(v, dict):
        return {k: _ints(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_ints(x) for x in v]
    return v


def struct_to_dict(s: struct_pb2.Struct) -> dict[str, Any]:
    return _ints(json_format.MessageToDict(s))  # type: ignore[no-any-return]


def dict_to_struct(d: dict[str, Any]) -> struct_pb2.Struct:
    out = struct_pb2.Struct()
    out.update(orjson.loads(orjson.dumps(d)))
    return out


# ---- requests -> domain ------------------------------------------------------------------------------------------
def model_from_pb(m: pb.ModelRef) -> ModelRef:
    return ModelRef(model=m.model.strip(), base_url=m.base_url.strip(), api_key=m.api_key, label=m.label.strip())


def generation_from_pb(g: pb.GenerationConfig) -> GenerationConfig:
    return GenerationConfig(temperature=_opt(g, "temperature"), max_tokens=g.max_tokens, seed=_opt(g, "seed"),
                            stop=tuple(g.stop), concurrency=g.concurrency, top_p=_opt(g, "top_p"))


def grader_from_pb(g: pb.GraderSpec) -> GraderSpec:
    return GraderSpec(type=g.type.strip(), name=g.name.strip(), config=struct_to_dict(g.config))


def data_from_pb(d: pb.EvaluationData) -> EvaluationData:
    which = d.WhichOneof("source")
    ver = None
    if which == "dataset_version":
        ver = DatasetVersionRef(d.dataset_version.dataset, d.dataset_version.version)
    return EvaluationData(dataset_version=ver, job_id=d.job_id if which == "job_id" else "", limit=d.limit)


def spec_from_pb(s: pb.EvaluationSpec) -> EvaluationSpec:
    return EvaluationSpec(
        models=tuple(model_from_pb(m) for m in s.models),
        data=data_from_pb(s.data),
        graders=tuple(grader_from_pb(g) for g in s.graders),
        generation=generation_from_pb(s.generation),
        display_name=s.display_name,
        metadata=dict(s.metadata),
        seed=s.seed,
        idempotency_key=s.idempotency_key,
    )


# ---- domain -> responses -----------------------------------------------------------------------------------------
def model_to_pb(m: ModelRef) -> pb.ModelRef:
    return pb.ModelRef(model=m.model, base_url=m.base_url, label=m.label, api_key_set=bool(m.api_key))


def generation_to_pb(g: GenerationConfig) -> pb.GenerationConfig:
    return pb.GenerationConfig(temperature=g.temperature, max_tokens=g.max_tokens, seed=g.seed, stop=list(g.stop),
                               concurrency=g.concurrency, top_p=g.top_p)


def data_to_pb(d: EvaluationData) -> pb.EvaluationData:
    if d.dataset_version is not None:
        ref = pb.DatasetVersionRef(dataset=d.dataset_version.dataset, version=d.dataset_version.version)
        return pb.EvaluationData(dataset_version=ref, limit=d.limit)
    return pb.EvaluationData(job_id=d.job_id, limit=d.limit) if d.job_id else pb.EvaluationData(limit=d.limit)


def spec_to_pb(s: EvaluationSpec) -> pb.EvaluationSpec:
    return pb.EvaluationSpec(
        models=[model_to_pb(m) for m in s.models], data=data_to_pb(s.data),
        graders=[pb.GraderSpec(type=g.type, name=g.name, config=dict_to_struct(g.config)) for g in s.graders],
        generation=generation_to_pb(s.generation), display_name=s.display_name, metadata=s.metadata, seed=s.seed,
        idempotency_key=s.idempotency_key)


def error_to_pb(e: ErrorInfo) -> common_pb2.ErrorDetails:
    return common_pb2.ErrorDetails(code=e.code, message=e.message, field=e.field)


def summary_to_pb(s: Summary) -> pb.EvaluationSummary:
    return pb.EvaluationSummary(
        graders=[pb.GraderSummary(grader=g.grader, model=g.model, mean=g.mean, ci_low=g.ci_low, ci_high=g.ci_high,
                                  pass_rate=g.pass_rate, count=g.count, errored=g.errored,
                                  higher_is_better=g.higher_is_better, extra=g.extra) for g in s.graders],
        pairs=[pb.PairwiseSummary(grader=p.grader, model_a=p.model_a, model_b=p.model_b, wins=p.wins,
                                  losses=p.losses, ties=p.ties, mean_difference=p.mean_difference, ci_low=p.ci_low,
                                  ci_high=p.ci_high, p_value=p.p_value, test=p.test, count=p.count)
               for p in s.pairs],
        model_errors=s.model_errors,
    )


def evaluation(ev: Evaluation) -> pb.Evaluation:
    out = pb.Evaluation(
        id=ev.id, spec=spec_to_pb(ev.spec), state=state_to_pb(ev.state), create_time=ts(ev.create_time),
        total_examples=ev.total_examples, finished_examples=ev.finished_examples,
        errored_examples=ev.errored_examples, attempts=ev.attempts, job_id=ev.job_id)
    if ev.start_time is not None:
        out.start_time.CopyFrom(ts(ev.start_time))
    if ev.end_time is not None:
        out.end_time.CopyFrom(ts(ev.end_time))
    if ev.error is not None:
        out.error.CopyFrom(error_to_pb(ev.error))
    if ev.summary is not None:
        out.summary.CopyFrom(summary_to_pb(ev.summary))
    if ev.resolved_data is not None:
        out.resolved_data.CopyFrom(pb.DatasetVersionRef(dataset=ev.resolved_data.dataset,
                                                        version=ev.resolved_data.version))
    return out


def answer_to_pb(a: Answer) -> pb.ModelAnswer:
    return pb.ModelAnswer(model=a.model, content=a.content, finish_reason=a.finish_reason,
                          prompt_tokens=a.prompt_tokens, completion_tokens=a.completion_tokens,
                          latency_ms=a.latency_ms, error=a.error, error_message=a.error_message)


def grade_to_pb(g: Grade) -> pb.Grade:
    return pb.Grade(grader=g.grader, model=g.model, score=g.score, passed=g.passed, label=g.label,
                    rationale=g.rationale, error=g.error, error_message=g.error_message, against=g.against)


def result(r: ExampleResult) -> pb.ExampleResult:
    out = pb.ExampleResult(
        evaluation_id=r.evaluation_id, index=r.index, example_id=r.example_id,
        input_json=orjson.dumps(r.messages).decode(), reference=r.reference,
        answers=[answer_to_pb(a) for a in r.answers], grades=[grade_to_pb(g) for g in r.grades], sequence=r.sequence)
    if r.finish_time is not None:
        out.finish_time.CopyFrom(ts(r.finish_time))
    return out


def grader_info(g: GraderInfo) -> pb.GraderInfo:
    return pb.GraderInfo(type=g.type, description=g.description, config_schema=dict_to_struct(g.config_schema),
                         higher_is_better=g.higher_is_better, pairwise=g.pairwise, package=g.package,
                         needs_reference=g.needs_reference)


def event(ev: Evaluation) -> pb.EvaluationEvent:
    out = pb.EvaluationEvent(evaluation_id=ev.id, state=state_to_pb(ev.state), finished_examples=ev.finished_examples,
                             total_examples=ev.total_examples, job_id=ev.job_id)
    if ev.summary is not None:
        out.summary.CopyFrom(summary_to_pb(ev.summary))
    if ev.error is not None:
        out.error.CopyFrom(error_to_pb(ev.error))
    return out


def task(evaluation_id: str) -> bytes:
    return pb.EvaluationTask(evaluation_id=evaluation_id).SerializeToString()


def task_id(data: bytes) -> str:
    t = pb.EvaluationTask()
    t.ParseFromString(data)
    return t.evaluation_id
