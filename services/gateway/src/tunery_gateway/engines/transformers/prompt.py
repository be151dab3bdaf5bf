"""A generation request's prompt as token ids: chat messages through `tunery.chatformat`, the module the trainer
trains with, so a fine-tuned model is served exactly the format it learnt."""

from __future__ import annotations

from typing import Any

from tunery.chatformat import encode_prompt
from tunery.errors import InvalidArgument
from tunery_gateway.engines.base import GenerationRequest


def encode_request(tok: Any, req: GenerationRequest, model: str) -> list[int]:
    """Prompt token ids of `req` for the base model `model` (named in errors): a prompt as it is, messages with the
    model's chat template and its generation prompt."""
    if req.messages is None:
        return list(tok(req.prompt or "")["input_ids"])
    if not getattr(tok, "chat_template", None):
        raise InvalidArgument(f"{model} has no chat template; use /v1/completions with a prompt",
                              code="no_chat_template", field="messages")
    return encode_prompt(tok, req.messages, model=model)
