"""GET /v1/models, GET /v1/models/{id} (scope: inference); POST and DELETE /v1/models (scope: admin)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from tunery_gateway.auth import require
from tunery_gateway.openai.models.protocol import RegisterModelRequest
from tunery_gateway.openai.serving import json_response, parse_body

router = APIRouter()


@router.get("/v1/models", dependencies=[Depends(require("inference"))])
async def list_models(request: Request) -> Response:
    return json_response(await request.app.state.models.list())


@router.get("/v1/models/{model_id:path}", dependencies=[Depends(require("inference"))])
async def retrieve_model(model_id: str, request: Request) -> Response:
    return json_response(await request.app.state.models.get(model_id))


@router.post("/v1/models", dependencies=[Depends(require("admin"))])
async def register_model(request: Request) -> Response:
    body = await parse_body(request, RegisterModelRequest)
    return json_response(await request.app.state.models.register(body), status=201)


@router.delete("/v1/models/{model_id:path}", dependencies=[Depends(require("admin"))])
async def delete_model(model_id: str, request: Request) -> Response:
    return json_response(await request.app.state.models.delete(model_id))
