"""POST /v1/score (scope: inference)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from tunery_gateway.auth import require
from tunery_gateway.openai.score.protocol import ScoreRequest
from tunery_gateway.openai.serving import json_response, parse_body

router = APIRouter()


@router.post("/v1/score", dependencies=[Depends(require("inference"))])
async def create_score(request: Request) -> Response:
    body = await parse_body(request, ScoreRequest)
    return json_response(await request.app.state.score.create(body))
