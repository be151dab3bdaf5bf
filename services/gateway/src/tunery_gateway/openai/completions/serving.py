"""Text completions: the prompt as it is, tokenized without a chat template."""

from __future__ import annotations

from typing import Any

from tunery_gateway.engines.base import AdapterRef, GenerationRequest, SamplingParams, ServedBase
from tunery_gateway.openai.completions.protocol import (
    DEFAULT_MAX_TOKENS,
    CompletionRequest,
    chunk_body,
    completion_body,
)
from tunery_gateway.openai.serving import CallObserver, OpenAIServing


class OpenAIServingCompletion(OpenAIServing):
    endpoint = "completions"
    operation = "text_completion"
    id_prefix = "cmpl"

    def content(self, body: CompletionRequest) -> Any:
        return body.text()

    def default_max_tokens(self, body: CompletionRequest) -> int | None:
        return body.max_tokens if body.max_tokens is not None else DEFAULT_MAX_TOKENS

    def generation_request(self, body: CompletionRequest, request_id: str, base: ServedBase,
                           adapter: AdapterRef | None, params: SamplingParams) -> GenerationRequest:
        return GenerationRequest(request_id, base.id, params, adapter=adapter, prompt=body.text())

    def full_body(self, obs: CallObserver, body: CompletionRequest, texts: list[str], reasons: list[str],
                  use: dict[str, Any]) -> dict[str, Any]:
        return completion_body(obs.request_id, obs.created, body.model, texts, reasons, use)

    def delta_chunk(self, obs: CallObserver, body: CompletionRequest, index: int, text: str,
                    finish_reason: str | None) -> dict[str, Any]:
        return chunk_body(obs.request_id, obs.created, body.model, index, text, finish_reason)

    def usage_chunk(self, obs: CallObserver, body: CompletionRequest, use: dict[str, Any]) -> dict[str, Any]:
        return {"id": obs.request_id, "object": "text_completion", "created": obs.created, "model": body.model,
                "choices": [], "usage": use}
