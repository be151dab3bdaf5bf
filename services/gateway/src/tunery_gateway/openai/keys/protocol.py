"""API keys over HTTP (scope: admin); `tunery keys` does the same on the database directly."""

from __future__ import annotations

from pydantic import Field

from tunery_gateway.openai.protocol import OpenAIModel


class CreateKeyRequest(OpenAIModel):
    name: str = Field(min_length=1, max_length=200)
    scopes: list[str] | str = "inference"
    rpm: int = Field(0, ge=0)
