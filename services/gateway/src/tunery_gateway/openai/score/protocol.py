"""POST /v1/score: how well a model predicts a given answer (a Tunery extension; OpenAI has no such route).

The evaluator's reference_loss grader calls it to compare a base model and its fine-tunes on held-out answers
without generating anything.
"""

from __future__ import annotations

import math
from typing import Any

from pydantic import Field, field_validator

from tunery.chatformat import normalize_messages
from tunery_gateway.engines.base import ScoreResult
from tunery_gateway.openai.chat.protocol import ChatMessage
from tunery_gateway.openai.protocol import OpenAIModel


class ScoreRequest(OpenAIModel):
    model: str = Field(max_length=1000)
    messages: list[ChatMessage]
    """The conversation before the answer (OpenAI chat shape)."""
    reference: str = Field(min_length=1)
    """The answer to score, as the assistant's next turn."""

    @field_validator("messages")
    @classmethod
    def _messages(cls, v: list[ChatMessage]) -> list[ChatMessage]:
        if not v:
            raise ValueError("messages must contain at least one message")
        return v

    def template_messages(self) -> list[dict[str, Any]]:
        return normalize_messages([m.model_dump(exclude_none=True) for m in self.messages])


def score_body(model: str, result: ScoreResult) -> dict[str, Any]:
    """`loss`: mean cross-entropy in nats of the reference's `tokens` (content through end-of-turn, the tokens the
    trainer trains on); `perplexity`: exp(loss); `token_accuracy`: share of them that are the model's argmax."""
    return {"object": "score", "model": model, "loss": result.loss, "tokens": result.tokens,
            "perplexity": math.exp(min(result.loss, 700.0)), "token_accuracy": result.token_accuracy,
            "usage": {"prompt_tokens": result.total_tokens, "total_tokens": result.total_tokens}}
