"""Request logs (a Tunery extension of the API): listing filters, feedback, import into a dataset."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pydantic import Field

from tunery.errors import InvalidArgument
from tunery_gateway.openai.protocol import OpenAIModel
from tunery_gateway.store import LogFilter


class Feedback(OpenAIModel):
    # A score on the caller's scale (for example 1 / -1 for thumbs up / down, or 1-5 stars).
    score: float = Field(ge=-1000, le=1000)
    comment: str = Field("", max_length=10_000)


class LogFilterBody(OpenAIModel):
    model: str = ""
    key_id: str = ""
    user: str = ""
    status: str = ""
    since: str | float | None = None
    until: str | float | None = None
    feedback: str = ""
    min_score: float | None = None
    max_score: float | None = None
    metadata: dict[str, str] = Field(default_factory=dict)

    def to_filter(self) -> LogFilter:
        return LogFilter(model=self.model, key_id=self.key_id, user=self.user, status=self.status,
                         since=parse_time(self.since, "since"), until=parse_time(self.until, "until"),
                         feedback=self.feedback, min_score=self.min_score, max_score=self.max_score,
                         metadata=dict(self.metadata))


class ImportLogsRequest(LogFilterBody):
    """Chat logs that match become examples (the request's messages plus the first choice as the assistant turn)."""

    dataset: str = Field(min_length=1, max_length=200)
    tags: list[str] = Field(default_factory=list)
    limit: int = Field(1000, ge=1, le=100_000)


def parse_time(value: str | float | None, field: str) -> datetime | None:
    """ISO 8601 (naive means UTC) or Unix seconds."""
    if value is None or value == "":
        return None
    try:
        if isinstance(value, int | float) or str(value).replace(".", "", 1).isdigit():
            return datetime.fromtimestamp(float(value), UTC)
        ts = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except (ValueError, OverflowError) as err:
        raise InvalidArgument(f"{field} must be an ISO 8601 time or Unix seconds, not {value!r}",
                              code="invalid_time", field=field) from err
    return ts if ts.tzinfo else ts.replace(tzinfo=UTC)


def _ts(value: datetime | None) -> int | None:
    if value is None:
        return None
    return int((value if value.tzinfo else value.replace(tzinfo=UTC)).timestamp())


def log_object(row: dict[str, Any]) -> dict[str, Any]:
    """A stored request log as the API shows it."""
    feedback = None
    if row["feedback_score"] is not None:
        feedback = {"score": row["feedback_score"], "comment": row["feedback_comment"],
                    "created_at": _ts(row["feedback_at"])}
    return {
        "id": row["id"], "object": "request_log", "created_at": _ts(row["created_at"]), "endpoint": row["endpoint"],
        "model": row["model"], "base_model": row["base_model"], "key_id": row["key_id"], "user": row["user"],
        "metadata": row["request_metadata"], "request": row["request"], "params": row["params"],
        "completion": row["completion"],
        "finish_reasons": [r for r in row["finish_reasons"].split(",") if r],
        "usage": {"prompt_tokens": row["prompt_tokens"], "completion_tokens": row["completion_tokens"],
                  "total_tokens": row["prompt_tokens"] + row["completion_tokens"]},
        "latency_ms": round(row["latency_ms"], 3),
        "ttft_ms": round(row["ttft_ms"], 3) if row["ttft_ms"] is not None else None,
        "status": row["status"], "http_status": row["http_status"],
        "error": {"code": row["error_code"], "message": row["error_message"]} if row["status"] != "ok" else None,
        "stream": row["stream"], "trace_id": row["trace_id"], "feedback": feedback,
    }
