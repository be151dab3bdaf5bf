"""Job records <-> protobuf messages."""

from __future__ import annotations

from google.protobuf import json_format

from tunery.runtime.protoconv import ts
from tunery.trainer.v1 import trainer_pb2 as pb
from tunery_trainer import states
from tunery_trainer.store import JobRecord


def spec_from_json(text: str) -> pb.JobSpec:
    return json_format.Parse(text, pb.JobSpec())


def spec_to_json(spec: pb.JobSpec) -> str:
    return json_format.MessageToJson(spec, indent=None, preserving_proto_field_name=True)


def job(r: JobRecord) -> pb.Job:
    out = pb.Job(
        id=r.id,
        spec=spec_from_json(r.spec_json),
        state=states.to_proto(r.state),  # type: ignore[arg-type]
        fine_tuned_model=r.fine_tuned_model,
        resolved_hyperparameters=json_format.Parse(r.resolved_json or "{}", pb.Hyperparameters()),
        step=r.step,
        total_steps=r.total_steps,
        epoch=r.epoch,
        trained_tokens=r.trained_tokens,
        metrics=pb.Metrics(
            train_loss=r.train_loss,
            valid_loss=r.valid_loss,
            valid_token_accuracy=r.valid_token_accuracy,
            tokens_per_second=r.tokens_per_second,
        ),
        adapter_path=r.adapter_path,
        attempts=r.attempts,
        worker=r.worker,
        eta_seconds=r.eta_seconds,
    )
    for name, value in (("create_time", r.created_at), ("start_time", r.started_at), ("end_time", r.ended_at)):
        if value is not None:
            getattr(out, name).CopyFrom(ts(value))
    if r.error_code:
        out.error.CopyFrom(pb.JobError(code=r.error_code, message=r.error_message, param=r.error_param))
    return out
