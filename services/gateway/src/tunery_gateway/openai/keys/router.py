"""POST /v1/keys (the key is in this one answer only), GET /v1/keys, DELETE /v1/keys/{id} (revoke); scope: admin."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from tunery_gateway.auth import gateway, require
from tunery_gateway.openai.keys.protocol import CreateKeyRequest
from tunery_gateway.openai.serving import json_response, parse_body

router = APIRouter(dependencies=[Depends(require("admin"))])


@router.post("/v1/keys")
async def create_key(request: Request) -> Response:
    body = await parse_body(request, CreateKeyRequest)
    gw = gateway(request)
    rec, key = await gw.db(gw.keys.create, body.name, body.scopes, body.rpm)
    return json_response(rec.as_dict() | {"key": key}, status=201)


@router.get("/v1/keys")
async def list_keys(request: Request, include_revoked: bool = False) -> Response:
    gw = gateway(request)
    recs = await gw.db(gw.keys.list, include_revoked=include_revoked)
    return json_response({"object": "list", "data": [r.as_dict() for r in recs]})


@router.delete("/v1/keys/{key_id}")
async def revoke_key(key_id: str, request: Request) -> Response:
    gw = gateway(request)
    return json_response((await gw.db(gw.keys.revoke, key_id)).as_dict())
