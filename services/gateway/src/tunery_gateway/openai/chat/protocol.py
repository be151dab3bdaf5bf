"""POST /v1/chat/completions: request model and response shapes (OpenAI's Chat Completions API)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator

from tunery.chatformat import normalize_messages
from tunery_gateway.openai.protocol import OpenAIModel, SamplingRequest


class ContentPart(OpenAIModel):
    type: str
    text: str | None = None


class ChatMessage(OpenAIModel):
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[ContentPart] | None = None
    name: str | None = None
    tool_calls: list[dict[str, Any]] | None = None
    tool_call_id: str | None = None


class ChatCompletionRequest(SamplingRequest):
    messages: list[ChatMessage]
    max_completion_tokens: int | None = Field(None, ge=1)
    logprobs: bool | None = None
    top_logprobs: int | None = None
    tools: list[dict[str, Any]] | None = None
    response_format: dict[str, Any] | None = None
    store: bool | None = None

    @field_validator("messages")
    @classmethod
    def _messages(cls, v: list[ChatMessage]) -> list[ChatMessage]:
        if not v:
            raise ValueError("messages must contain at least one message")
        return v

    def unsupported(self) -> str | None:
        if self.logprobs or self.top_logprobs:
            return "logprobs"
        if self.tools:
            return "tools"
        if self.response_format and self.response_format.get("type", "text") != "text":
            return "response_format"
        return super().unsupported()

    def token_limit(self) -> int | None:
        """max_completion_tokens supersedes the deprecated max_tokens, as in OpenAI's API."""
        return self.max_completion_tokens if self.max_completion_tokens is not None else self.max_tokens

    def template_messages(self) -> list[dict[str, Any]]:
        """The messages as every service hands them to a chat template (`tunery.chatformat`): `developer` as
        `system`, text parts joined (other parts are refused with `unsupported_content`)."""
        return normalize_messages([m.model_dump(exclude_none=True) for m in self.messages])


def completion_body(request_id: str, created: int, model: str, texts: list[str], reasons: list[str],
                    usage: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": request_id, "object": "chat.completion", "created": created, "model": model,
        "choices": [{"index": i, "message": {"role": "assistant", "content": t}, "logprobs": None,
                     "finish_reason": r} for i, (t, r) in enumerate(zip(texts, reasons, strict=True))],
        "usage": usage, "system_fingerprint": None,
    }


def chunk_body(request_id: str, created: int, model: str, index: int, delta: dict[str, Any],
               finish_reason: str | None = None, with_usage: bool = False) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": request_id, "object": "chat.completion.chunk", "created": created, "model": model,
        "choices": [{"index": index, "delta": delta, "logprobs": None, "finish_reason": finish_reason}],
        "system_fingerprint": None,
    }
    if with_usage:
        body["usage"] = None
    return body


def usage_chunk(request_id: str, created: int, model: str, usage: dict[str, Any]) -> dict[str, Any]:
    return {"id": request_id, "object": "chat.completion.chunk", "created": created, "model": model, "choices": [],
            "usage": usage, "system_fingerprint": None}
