"""POST /v1/completions: the legacy text completions API (a prompt in, text out, no chat template)."""

from __future__ import annotations

from typing import Any

from pydantic import field_validator

from tunery_gateway.openai.protocol import SamplingRequest

DEFAULT_MAX_TOKENS = 16
"""OpenAI's default for this endpoint."""


class CompletionRequest(SamplingRequest):
    prompt: str | list[str]
    echo: bool = False
    suffix: str | None = None
    logprobs: int | None = None
    best_of: int | None = None

    @field_validator("prompt")
    @classmethod
    def _prompt(cls, v: str | list[str]) -> str | list[str]:
        if isinstance(v, list) and len(v) != 1:
            raise ValueError("send one prompt per call (a string, or a list with one string)")
        return v

    def text(self) -> str:
        return self.prompt if isinstance(self.prompt, str) else self.prompt[0]

    def unsupported(self) -> str | None:
        if self.echo:
            return "echo"
        if self.suffix:
            return "suffix"
        if self.logprobs:
            return "logprobs"
        if self.best_of not in (None, 1):
            return "best_of"
        return super().unsupported()


def completion_body(request_id: str, created: int, model: str, texts: list[str], reasons: list[str],
                    usage: dict[str, Any]) -> dict[str, Any]:
    return {"id": request_id, "object": "text_completion", "created": created, "model": model,
            "choices": [{"index": i, "text": t, "logprobs": None, "finish_reason": r}
                        for i, (t, r) in enumerate(zip(texts, reasons, strict=True))],
            "usage": usage, "system_fingerprint": None}


def chunk_body(request_id: str, created: int, model: str, index: int, text: str,
               finish_reason: str | None) -> dict[str, Any]:
    return {"id": request_id, "object": "text_completion", "created": created, "model": model,
            "choices": [{"index": index, "text": text, "logprobs": None, "finish_reason": finish_reason}],
            "system_fingerprint": None}
