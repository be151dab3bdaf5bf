"""Chat completions: messages through the model's chat template, answers as `chat.completion` objects or chunks."""

from __future__ import annotations

from typing import Any

from tunery_gateway.engines.base import AdapterRef, GenerationRequest, SamplingParams, ServedBase
from tunery_gateway.openai.chat.protocol import ChatCompletionRequest, chunk_body, completion_body, usage_chunk
from tunery_gateway.openai.serving import CallObserver, OpenAIServing


class OpenAIServingChat(OpenAIServing):
    endpoint = "chat.completions"
    operation = "chat"
    id_prefix = "chatcmpl"

    def content(self, body: ChatCompletionRequest) -> Any:
        return [m.model_dump(exclude_none=True) for m in body.messages]

    def default_max_tokens(self, body: ChatCompletionRequest) -> int | None:
        return body.token_limit()

    def generation_request(self, body: ChatCompletionRequest, request_id: str, base: ServedBase,
                           adapter: AdapterRef | None, params: SamplingParams) -> GenerationRequest:
        return GenerationRequest(request_id, base.id, params, adapter=adapter, messages=body.template_messages())

    def full_body(self, obs: CallObserver, body: ChatCompletionRequest, texts: list[str], reasons: list[str],
                  use: dict[str, Any]) -> dict[str, Any]:
        return completion_body(obs.request_id, obs.created, body.model, texts, reasons, use)

    def start_chunks(self, obs: CallObserver, body: ChatCompletionRequest) -> list[dict[str, Any]]:
        with_usage = bool(body.stream_options and body.stream_options.include_usage)
        return [chunk_body(obs.request_id, obs.created, body.model, i, {"role": "assistant", "content": ""},
                           None, with_usage) for i in range(body.n)]

    def delta_chunk(self, obs: CallObserver, body: ChatCompletionRequest, index: int, text: str,
                    finish_reason: str | None) -> dict[str, Any]:
        with_usage = bool(body.stream_options and body.stream_options.include_usage)
        delta = {"content": text} if text else {}
        return chunk_body(obs.request_id, obs.created, body.model, index, delta, finish_reason, with_usage)

    def usage_chunk(self, obs: CallObserver, body: ChatCompletionRequest, use: dict[str, Any]) -> dict[str, Any]:
        return usage_chunk(obs.request_id, obs.created, body.model, use)
