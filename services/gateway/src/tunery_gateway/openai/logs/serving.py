"""Request logs: list and filter, feedback, and the way back to training (import into a dataset over gRPC).

Reads flush the log writer first, so a call that has returned is always visible in the listing after it.
"""

from __future__ import annotations

import logging
from typing import Any

import grpc
import orjson
from opentelemetry import trace
from opentelemetry.propagate import inject
from opentelemetry.trace import SpanKind

from tunery.dataset.v1 import dataset_pb2 as dpb
from tunery.dataset.v1 import dataset_pb2_grpc
from tunery.errors import FailedPrecondition, Unavailable
from tunery.runtime.grpcerrors import from_rpc_error
from tunery_gateway.errors import PermissionDenied
from tunery_gateway.keys import KeyInfo
from tunery_gateway.openai.logs.protocol import Feedback, ImportLogsRequest, LogFilterBody, log_object
from tunery_gateway.runtime import Gateway

log = logging.getLogger("tunery.gateway.logs")
IMPORT_TAG = "from-logs"
CHUNK = 1024 * 1024


def example_from_log(row: dict[str, Any]) -> dict[str, Any] | None:
    """OpenAI's chat fine-tuning format; None for logs that cannot be one (no text stored, failed, not chat)."""
    if row["endpoint"] != "chat.completions" or row["status"] != "ok":
        return None
    messages, completion = row["request"], row["completion"]
    if not isinstance(messages, list) or not completion or not isinstance(completion[0], str):
        return None
    out = []
    for m in messages:
        msg = {"role": "system" if m.get("role") == "developer" else m.get("role"), "content": m.get("content")}
        if isinstance(msg["content"], list):  # content parts: keep their text
            msg["content"] = "".join(p.get("text") or "" for p in msg["content"] if isinstance(p, dict))
        for extra in ("name", "tool_calls", "tool_call_id"):
            if m.get(extra):
                msg[extra] = m[extra]
        out.append(msg)
    out.append({"role": "assistant", "content": completion[0]})
    return {"messages": out}


class LogsService:
    def __init__(self, gw: Gateway) -> None:
        self.gw = gw

    async def _flush(self) -> None:
        if self.gw.logs is not None:
            await self.gw.db(self.gw.logs.flush)

    async def list_logs(self, flt: LogFilterBody, limit: int, after: str) -> dict[str, Any]:
        await self._flush()
        rows, more = await self.gw.db(self.gw.log_store.list, flt.to_filter(), limit=limit, after=after)
        data = [log_object(r) for r in rows]
        return {"object": "list", "data": data, "has_more": more,
                "last_id": data[-1]["id"] if data else None}

    async def get(self, log_id: str) -> dict[str, Any]:
        await self._flush()
        return log_object(await self.gw.db(self.gw.log_store.get, log_id))

    async def feedback(self, log_id: str, body: Feedback, key: KeyInfo) -> dict[str, Any]:
        """Admins rate any call; other keys only the calls they made themselves."""
        await self._flush()
        row = await self.gw.db(self.gw.log_store.get, log_id)
        if not key.allows("admin") and row["key_id"] != key.id:
            raise PermissionDenied(f"request log {log_id} was made with another API key; only an admin key can "
                                   "give feedback on it", code="not_your_log")
        return log_object(await self.gw.db(self.gw.log_store.set_feedback, log_id, body.score, body.comment))

    async def import_to_dataset(self, body: ImportLogsRequest) -> dict[str, Any]:
        await self._flush()
        flt = body.to_filter()
        examples: list[bytes] = []
        scanned = skipped = 0
        after = ""
        while scanned < body.limit:
            rows, more = await self.gw.db(self.gw.log_store.list, flt, limit=min(1000, body.limit - scanned),
                                          after=after)
            for row in rows:
                ex = example_from_log(row)
                if ex is None:
                    skipped += 1
                else:
                    examples.append(orjson.dumps(ex) + b"\n")
            scanned += len(rows)
            if not more or not rows:
                break
            after = rows[-1]["id"]
        if not examples:
            raise FailedPrecondition(f"none of the {scanned} matching request logs can become an example (only "
                                     "successful chat calls with stored text can)", code="nothing_to_import")
        tags = sorted({IMPORT_TAG, *body.tags})
        result = await self._upload(body.dataset, tags, b"".join(examples))
        return {"object": "log_import", "dataset": body.dataset, "matched": scanned, "imported":
                result.examples_added, "skipped": skipped, "tags": tags,
                "warnings": [w.message for w in result.warnings]}

    async def _upload(self, dataset: str, tags: list[str], data: bytes) -> dpb.UploadExamplesResponse:
        """UploadExamples over gRPC, inside a client span whose context travels in the call's metadata."""
        stub = dataset_pb2_grpc.DatasetServiceStub(self.gw.dataset_channel())
        requests = [dpb.UploadExamplesRequest(header=dpb.UploadHeader(
            dataset=dataset, filename="request-logs.jsonl", size_bytes=len(data), tags=tags))]
        requests += [dpb.UploadExamplesRequest(chunk=data[i:i + CHUNK]) for i in range(0, len(data), CHUNK)]
        with self.gw.tracer.start_as_current_span(
                "tunery.dataset.v1.DatasetService/UploadExamples", kind=SpanKind.CLIENT,
                attributes={"rpc.system": "grpc", "rpc.service": "tunery.dataset.v1.DatasetService",
                            "rpc.method": "UploadExamples", "server.address": self.gw.settings.dataset_addr}) as span:
            carrier: dict[str, str] = {}
            inject(carrier)
            try:
                return await stub.UploadExamples(iter(requests), metadata=tuple(carrier.items()))  # type: ignore
            except grpc.RpcError as err:
                span.set_status(trace.Status(trace.StatusCode.ERROR, str(err.code())))  # type: ignore[attr-defined]
                if err.code() == grpc.StatusCode.UNAVAILABLE:  # type: ignore[attr-defined]
                    raise Unavailable(f"cannot reach the dataset service at {self.gw.settings.dataset_addr}",
                                      code="dataset_service_unavailable") from err
                raise from_rpc_error(err) from err
