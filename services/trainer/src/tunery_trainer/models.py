"""Tables of the trainer service. The job's spec and resolved hyperparameters are stored as JSON of the domain
dataclasses (records.py; keys as in the proto): a column per field would only duplicate them."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Column, Index, LargeBinary, Text, UniqueConstraint
from sqlmodel import Field, SQLModel

from tunery_trainer.domain import now


class JobRow(SQLModel, table=True):
    __tablename__ = "jobs"

    id: str = Field(primary_key=True, max_length=40)
    state: str = Field(index=True, max_length=24)
    spec_json: str = Field(sa_column=Column(Text, nullable=False))
    resolved_json: str = Field(default="{}", sa_column=Column(Text, nullable=False, default="{}"))
    base_model: str = Field(index=True, max_length=500)
    dataset_id: str = Field(index=True, max_length=40)
    dataset_version: int = 0
    fine_tuned_model: str = Field(max_length=600)
    idempotency_key: str | None = Field(default=None, unique=True, max_length=200)
    error_code: str = Field(default="", max_length=64)
    error_message: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))
    error_param: str = Field(default="", max_length=200)
    created_at: datetime = Field(default_factory=now, index=True)
    started_at: datetime | None = None
    ended_at: datetime | None = None
    step: int = 0
    total_steps: int = 0
    epoch: float = 0.0
    trained_tokens: int = 0
    train_loss: float = 0.0
    valid_loss: float = 0.0
    valid_token_accuracy: float = 0.0
    tokens_per_second: float = 0.0
    eta_seconds: float = 0.0
    adapter_path: str = Field(default="", max_length=1000)
    attempts: int = 0
    worker: str = Field(default="", max_length=200)
    generation: int = 0
    train_file: str = Field(default="", max_length=1000)
    validation_file: str = Field(default="", max_length=1000)
    train_examples: int = 0
    validation_examples: int = 0


class JobEventRow(SQLModel, table=True):
    __tablename__ = "job_events"
    __table_args__ = (UniqueConstraint("job_id", "sequence"), Index("ix_job_events_job_seq", "job_id", "sequence"))

    id: int | None = Field(default=None, primary_key=True)
    job_id: str = Field(max_length=40)
    sequence: int
    event_id: str = Field(unique=True, max_length=300)
    # The event as JSON (records.py), sequence included; rows from before that: a serialized trainer.v1.JobEvent.
    data: bytes = Field(sa_column=Column(LargeBinary, nullable=False))


class CheckpointRow(SQLModel, table=True):
    __tablename__ = "checkpoints"

    job_id: str = Field(primary_key=True, max_length=40)
    step: int = Field(primary_key=True)
    epoch: float = 0.0
    path: str = Field(max_length=1000)
    created_at: datetime = Field(default_factory=now)


class JobEvaluationRow(SQLModel, table=True):
    """The evaluation a succeeded job asked for (spec.evaluation): a table of its own, so databases from before it
    gain it by create_all and their job rows read as they are (no evaluation)."""

    __tablename__ = "job_evaluations"

    job_id: str = Field(primary_key=True, max_length=40)
    evaluation_id: str = Field(default="", max_length=100)
    # "" until the evaluation is created; then the evaluator's state (queued, running, succeeded, ...).
    state: str = Field(default="", max_length=24, index=True)
    # The evaluator's EvaluationSummary as JSON; empty until it has one.
    summary_json: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))
    error_code: str = Field(default="", max_length=64)
    error_message: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))
    error_param: str = Field(default="", max_length=200)
    updated_at: datetime = Field(default_factory=now)
