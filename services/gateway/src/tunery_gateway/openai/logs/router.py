"""Request logs: GET /v1/logs, GET /v1/logs/{id}, POST /v1/logs/import (scope: admin);
POST /v1/logs/{id}/feedback (scope: inference, for the caller's own calls; admin for any)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response

from tunery_gateway.auth import require
from tunery_gateway.keys import KeyInfo
from tunery_gateway.openai.logs.protocol import Feedback, ImportLogsRequest, LogFilterBody
from tunery_gateway.openai.serving import json_response, parse_body

router = APIRouter()


@router.get("/v1/logs", dependencies=[Depends(require("admin"))])
async def list_logs(request: Request, limit: int = Query(50, ge=1, le=1000), after: str = "") -> Response:
    q = request.query_params
    metadata = {k.removeprefix("metadata."): v for k, v in q.items() if k.startswith("metadata.")}
    flt = LogFilterBody.model_validate({k: v for k, v in q.items() if k in LogFilterBody.model_fields and
                                        k != "metadata"} | {"metadata": metadata})
    return json_response(await request.app.state.logs.list_logs(flt, limit, after))


@router.post("/v1/logs/import", dependencies=[Depends(require("admin"))])
async def import_logs(request: Request) -> Response:
    body = await parse_body(request, ImportLogsRequest)
    return json_response(await request.app.state.logs.import_to_dataset(body))


@router.get("/v1/logs/{log_id}", dependencies=[Depends(require("admin"))])
async def get_log(log_id: str, request: Request) -> Response:
    return json_response(await request.app.state.logs.get(log_id))


@router.post("/v1/logs/{log_id}/feedback")
async def give_feedback(log_id: str, request: Request, key: KeyInfo = Depends(require("inference"))) -> Response:
    body = await parse_body(request, Feedback)
    return json_response(await request.app.state.logs.feedback(log_id, body, key))
