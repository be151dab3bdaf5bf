"""Tables of the gateway: API keys (hashes only), request logs, and the fine-tuned models it can serve."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, Column, Index, Text
from sqlmodel import Field, SQLModel


def now() -> datetime:
    return datetime.now(UTC)


class ApiKeyRow(SQLModel, table=True):
    __tablename__ = "gateway_api_keys"

    id: str = Field(primary_key=True, max_length=40)
    name: str = Field(max_length=200, index=True)
    # sha256 of the whole key: keys are 256-bit random, so a slow password hash would add latency and no safety.
    key_hash: str = Field(max_length=64)
    scopes: str = Field(max_length=200)
    rpm: int = 0
    created_at: datetime = Field(default_factory=now)
    revoked_at: datetime | None = None


class RequestLogRow(SQLModel, table=True):
    __tablename__ = "gateway_request_logs"
    __table_args__ = (Index("ix_gateway_request_logs_model_created", "model", "created_at"),)

    id: str = Field(primary_key=True, max_length=64)
    created_at: datetime = Field(default_factory=now, index=True)
    endpoint: str = Field(max_length=40)
    model: str = Field(max_length=600)
    base_model: str = Field(default="", max_length=600)
    key_id: str = Field(default="", max_length=40, index=True)
    user: str = Field(default="", max_length=256)
    request_metadata: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    # Messages (chat) or prompt (completions); null where text is not stored (TUNERY_GATEWAY_LOG_CONTENT=false).
    request: Any = Field(default=None, sa_column=Column(JSON, nullable=True))
    params: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    # One text per choice; null where text is not stored.
    completion: Any = Field(default=None, sa_column=Column(JSON, nullable=True))
    finish_reasons: str = Field(default="", max_length=200)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    latency_ms: float = 0.0
    ttft_ms: float | None = None
    status: str = Field(default="ok", max_length=20, index=True)
    http_status: int = 200
    error_code: str = Field(default="", max_length=64)
    error_message: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))
    stream: bool = False
    trace_id: str = Field(default="", max_length=32)
    feedback_score: float | None = Field(default=None, index=True)
    feedback_comment: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))
    feedback_at: datetime | None = None


class AdapterRow(SQLModel, table=True):
    """A fine-tuned model: its adapter folder and the base model it was trained on."""

    __tablename__ = "gateway_adapters"

    id: str = Field(primary_key=True, max_length=600)
    base_model: str = Field(max_length=600)
    adapter_path: str = Field(max_length=2000)
    job_id: str = Field(default="", max_length=64)
    source: str = Field(default="job_event", max_length=20)
    created_at: datetime = Field(default_factory=now)


TABLES = [ApiKeyRow.__table__, RequestLogRow.__table__, AdapterRow.__table__]  # type: ignore[attr-defined]
