"""The evaluator service over gRPC, and its evaluation events on NATS, as the trainer's domain sees them
(`domain.EvaluatorClient`).

Errors come back as tunery.errors: what the evaluator says about the request (InvalidArgument, NotFound,
FailedPrecondition, AlreadyExists) as it is, anything else as Unavailable naming the address. News of an evaluation
is any message on `tunery.events.evaluation.<id>.>` (core NATS; the payload is not read: the follower asks
GetEvaluation for the truth, so an event it misses costs a poll interval, never the result).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable
from typing import Any, TypeVar

import grpc
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg

from tunery.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound, Unavailable
from tunery.evaluator.v1 import evaluator_pb2 as epb
from tunery.evaluator.v1 import evaluator_pb2_grpc
from tunery.runtime.events import SUBJECT_PREFIX
from tunery.runtime.grpcerrors import from_rpc_error
from tunery_trainer import evalconvert
from tunery_trainer.domain import EvaluationRequest, GraderInfo, JobEvaluation

log = logging.getLogger("tunery.trainer.evaluator")
T = TypeVar("T")
TIMEOUT = 30
SUBJECT = f"{SUBJECT_PREFIX}.evaluation.>"


class GrpcEvaluatorClient:
    def __init__(self, channel: grpc.aio.Channel, address: str, nc: NATS | None = None) -> None:
        self.stub = evaluator_pb2_grpc.EvaluatorServiceStub(channel)
        self.address = address
        self.nc = nc
        self.sub: Any = None
        self._news: dict[str, asyncio.Event] = {}

    async def start(self) -> None:
        if self.nc is not None:
            self.sub = await self.nc.subscribe(SUBJECT, cb=self._on_event)

    async def stop(self) -> None:
        if self.sub is not None:
            with contextlib.suppress(Exception):
                await self.sub.unsubscribe()
            self.sub = None

    async def _on_event(self, msg: Msg) -> None:
        parts = msg.subject.split(".")
        if len(parts) > 3 and (news := self._news.get(parts[3])) is not None:
            news.set()

    async def _call(self, call: Awaitable[T]) -> T:
        try:
            return await call
        except grpc.RpcError as rpc:
            err = from_rpc_error(rpc)
            if isinstance(err, NotFound | InvalidArgument | FailedPrecondition | AlreadyExists):
                raise err from None
            raise Unavailable(
                f"the evaluator service at {self.address} did not answer: {err.message}",
                code="evaluator_unavailable",
            ) from None

    async def list_graders(self) -> list[GraderInfo]:
        resp = await self._call(self.stub.ListGraders(epb.ListGradersRequest(), timeout=TIMEOUT))
        return [evalconvert.grader_info_from_pb(g) for g in resp.graders]

    async def create(self, request: EvaluationRequest) -> JobEvaluation:
        resp = await self._call(self.stub.CreateEvaluation(evalconvert.request_to_pb(request), timeout=TIMEOUT))
        self._news.setdefault(resp.evaluation.id, asyncio.Event())
        return evalconvert.evaluation_from_pb(resp.evaluation)

    async def get(self, evaluation_id: str) -> JobEvaluation:
        self._news.setdefault(evaluation_id, asyncio.Event())
        resp = await self._call(
            self.stub.GetEvaluation(epb.GetEvaluationRequest(evaluation_id=evaluation_id), timeout=TIMEOUT)
        )
        return evalconvert.evaluation_from_pb(resp.evaluation)

    async def changed(self, evaluation_id: str, timeout: float) -> None:
        news = self._news.setdefault(evaluation_id, asyncio.Event())
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(news.wait(), timeout)
        news.clear()

    def forget(self, evaluation_id: str) -> None:
        self._news.pop(evaluation_id, None)
