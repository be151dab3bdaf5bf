"""GET /v1/models shapes, and the body of registering an adapter folder by hand (a Tunery extension)."""

from __future__ import annotations

from pydantic import Field

from tunery_gateway.openai.protocol import OpenAIModel


class RegisterModelRequest(OpenAIModel):
    """A LoRA folder trained elsewhere (or by hand); jobs of the trainer are registered from their events."""

    id: str = Field(min_length=1, max_length=600)
    adapter_path: str = Field(min_length=1, max_length=2000)
    # Empty: the base model named in the folder's tunery_metadata.json.
    base_model: str = ""
