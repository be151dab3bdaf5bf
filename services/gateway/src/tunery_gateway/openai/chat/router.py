"""POST /v1/chat/completions (scope: inference)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from tunery_gateway.auth import require
from tunery_gateway.keys import KeyInfo
from tunery_gateway.openai.chat.protocol import ChatCompletionRequest
from tunery_gateway.openai.serving import parse_body

router = APIRouter()


@router.post("/v1/chat/completions")
async def create_chat_completion(request: Request, key: KeyInfo = Depends(require("inference"))) -> Response:
    body = await parse_body(request, ChatCompletionRequest)
    return await request.app.state.chat.create(body, request, key)  # type: ignore[no-any-return]
