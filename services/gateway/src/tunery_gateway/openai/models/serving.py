"""The model list: base models first, then every fine-tuned model whose base this gateway serves."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tunery.errors import InvalidArgument
from tunery_gateway.openai.models.protocol import RegisterModelRequest
from tunery_gateway.runtime import Gateway


class OpenAIServingModels:
    def __init__(self, gw: Gateway) -> None:
        self.gw = gw

    async def list(self) -> dict[str, Any]:
        return {"object": "list", "data": await self.gw.registry.listing()}

    async def get(self, model_id: str) -> dict[str, Any]:
        return await self.gw.registry.get(model_id)

    async def register(self, body: RegisterModelRequest) -> dict[str, Any]:
        path = Path(body.adapter_path)
        if not path.is_absolute():
            path = self.gw.settings.artifact_root / path
        if "\x00" in body.adapter_path or not path.is_dir():
            raise InvalidArgument(f"adapter_path {body.adapter_path!r} is not a folder on the gateway's host",
                                  code="invalid_adapter", field="adapter_path")
        await self.gw.registry.register(body.id, path.resolve(), base_model=body.base_model, source="api")
        return await self.gw.registry.get(body.id)

    async def delete(self, model_id: str) -> dict[str, Any]:
        if model_id in self.gw.registry.bases:
            raise InvalidArgument(f"{model_id!r} is a base model; only fine-tuned models can be deleted",
                                  code="invalid_model", field="model")
        await self.gw.registry.unregister(model_id)
        return {"id": model_id, "object": "model", "deleted": True}
