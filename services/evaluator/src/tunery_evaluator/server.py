"""gRPC transport of the evaluator: converts messages (convert.py) and delegates to `EvaluatorService`."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc

from tunery.common.v1 import common_pb2
from tunery.errors import InvalidArgument
from tunery.evaluator.v1 import evaluator_pb2 as pb
from tunery.evaluator.v1 import evaluator_pb2_grpc
from tunery_evaluator import convert
from tunery_evaluator.domain import Evaluation
from tunery_evaluator.service import EvaluatorService

Ctx = grpc.aio.ServicerContext


class EvaluatorServicer(evaluator_pb2_grpc.EvaluatorServiceServicer):
    def __init__(self, service: EvaluatorService) -> None:
        self.svc = service

    async def CreateEvaluation(self, request: pb.CreateEvaluationRequest, context: Ctx) -> pb.CreateEvaluationResponse:
        if not request.HasField("spec"):
            raise InvalidArgument("field 'spec' is required", code="missing_field", field="spec")
        ev, existing = await self.svc.create(convert.spec_from_pb(request.spec))
        return pb.CreateEvaluationResponse(evaluation=convert.evaluation(ev), existing=existing)

    async def GetEvaluation(self, request: pb.GetEvaluationRequest, context: Ctx) -> pb.GetEvaluationResponse:
        return pb.GetEvaluationResponse(evaluation=convert.evaluation(await self.svc.get(request.evaluation_id)))

    async def ListEvaluations(self, request: pb.ListEvaluationsRequest, context: Ctx) -> pb.ListEvaluationsResponse:
        states = [convert.state_from_pb(s) for s in request.states]
        evs, token, total = await self.svc.list_evaluations(request.page.page_size, request.page.page_token,
                                                states=[s or "unspecified" for s in states], model=request.model,
                                                dataset=request.dataset, job_id=request.job_id)
        return pb.ListEvaluationsResponse(evaluations=[convert.evaluation(e) for e in evs],
                                          page=common_pb2.PageResponse(next_page_token=token, total_size=total))

    async def CancelEvaluation(self, request: pb.CancelEvaluationRequest, context: Ctx) -> pb.CancelEvaluationResponse:
        return pb.CancelEvaluationResponse(evaluation=convert.evaluation(await self.svc.cancel(request.evaluation_id)))

    async def DeleteEvaluation(self, request: pb.DeleteEvaluationRequest, context: Ctx) -> pb.DeleteEvaluationResponse:
        await self.svc.delete(request.evaluation_id)
        return pb.DeleteEvaluationResponse()

    async def StreamEvaluationResults(
        self, request: pb.StreamEvaluationResultsRequest, context: Ctx
    ) -> AsyncIterator[pb.StreamEvaluationResultsResponse]:
        async for item in self.svc.stream_results(request.evaluation_id, request.after_sequence,
                                                  not request.no_follow):
            if isinstance(item, Evaluation):
                yield pb.StreamEvaluationResultsResponse(evaluation=convert.evaluation(item))
            else:
                yield pb.StreamEvaluationResultsResponse(result=convert.result(item))

    async def Compare(self, request: pb.CompareRequest, context: Ctx) -> pb.CompareResponse:
        conversations = [[{"role": m.role, "content": m.content} for m in c.messages] for c in request.conversations]
        results = await self.svc.compare(
            conversations, tuple(convert.model_from_pb(m) for m in request.models),
            convert.generation_from_pb(request.generation), tuple(convert.grader_from_pb(g) for g in request.graders),
            list(request.references))
        return pb.CompareResponse(results=[convert.result(r) for r in results])

    async def ListGraders(self, request: pb.ListGradersRequest, context: Ctx) -> pb.ListGradersResponse:
        return pb.ListGradersResponse(graders=[convert.grader_info(g) for g in self.svc.graders()])
