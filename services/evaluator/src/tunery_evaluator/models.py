"""Tables of the evaluator. The spec, summary and per-example answers and grades are JSON of the domain dataclasses
(keys as in the proto); the columns are what lists filter on and what a restarted run needs to skip work."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Column, Index, Text, UniqueConstraint
from sqlmodel import Field, SQLModel

from tunery_evaluator.domain import now


class EvaluationRow(SQLModel, table=True):
    __tablename__ = "eval_evaluations"

    id: str = Field(primary_key=True, max_length=40)
    state: str = Field(index=True, max_length=24)
    spec_json: str = Field(sa_column=Column(Text, nullable=False))
    # "|a|b|" of the models' names, so a model filter is one LIKE.
    models: str = Field(default="|", sa_column=Column(Text, nullable=False, default="|"))
    dataset_id: str = Field(default="", index=True, max_length=40)
    dataset_name: str = Field(default="", max_length=64)
    dataset_version: int = 0
    job_id: str = Field(default="", index=True, max_length=40)
    idempotency_key: str | None = Field(default=None, unique=True, max_length=200)
    created_at: datetime = Field(default_factory=now, index=True)
    started_at: datetime | None = None
    ended_at: datetime | None = None
    total_examples: int = 0
    finished_examples: int = 0
    errored_examples: int = 0
    attempts: int = 0
    summary_json: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))
    error_code: str = Field(default="", max_length=64)
    error_message: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))
    error_field: str = Field(default="", max_length=200)


class EvaluationItemRow(SQLModel, table=True):
    """The examples of an evaluation, read once when it is created (a run never asks the dataset service again)."""

    __tablename__ = "eval_items"

    evaluation_id: str = Field(primary_key=True, max_length=40)
    index: int = Field(primary_key=True)
    example_id: str = Field(default="", max_length=200)
    messages_json: str = Field(sa_column=Column(Text, nullable=False))
    reference: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))


class EvaluationResultRow(SQLModel, table=True):
    __tablename__ = "eval_results"
    __table_args__ = (
        UniqueConstraint("evaluation_id", "sequence", name="uq_eval_results_sequence"),
        Index("ix_eval_results_seq", "evaluation_id", "sequence"),
    )

    evaluation_id: str = Field(primary_key=True, max_length=40)
    index: int = Field(primary_key=True)
    sequence: int
    errored: bool = False
    payload_json: str = Field(sa_column=Column(Text, nullable=False))
    finished_at: datetime = Field(default_factory=now)


EV = EvaluationRow.__table__
IT = EvaluationItemRow.__table__
RS = EvaluationResultRow.__table__
