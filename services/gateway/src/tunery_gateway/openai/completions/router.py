"""POST /v1/completions (scope: inference)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from tunery_gateway.auth import require
from tunery_gateway.keys import KeyInfo
from tunery_gateway.openai.completions.protocol import CompletionRequest
from tunery_gateway.openai.serving import parse_body

router = APIRouter()


@router.post("/v1/completions")
async def create_completion(request: Request, key: KeyInfo = Depends(require("inference"))) -> Response:
    body = await parse_body(request, CompletionRequest)
    return await request.app.state.completions.create(body, request, key)  # type: ignore[no-any-return]
