"""gRPC transport of the trainer service: converts messages (convert.py) and delegates to `TrainerService`."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc

from tunery.common.v1 import common_pb2
from tunery.errors import InvalidArgument
from tunery.trainer.v1 import trainer_pb2 as pb
from tunery.trainer.v1 import trainer_pb2_grpc
from tunery_trainer import convert
from tunery_trainer.service import TrainerService

Ctx = grpc.aio.ServicerContext


class TrainerServicer(trainer_pb2_grpc.TrainerServiceServicer):
    def __init__(self, service: TrainerService) -> None:
        self.svc = service

    async def CreateJob(self, request: pb.CreateJobRequest, context: Ctx) -> pb.CreateJobResponse:
        if not request.HasField("spec"):
            raise InvalidArgument("field 'spec' is required", code="missing_field", field="spec")
        job, existing = await self.svc.create_job(convert.spec_from_pb(request.spec))
        return pb.CreateJobResponse(job=convert.job(job), existing=existing)

    async def GetJob(self, request: pb.GetJobRequest, context: Ctx) -> pb.GetJobResponse:
        return pb.GetJobResponse(job=convert.job(await self.svc.get_job(request.job_id)))

    async def ListJobs(self, request: pb.ListJobsRequest, context: Ctx) -> pb.ListJobsResponse:
        jobs, token, total = await self.svc.list_jobs(
            request.page.page_size,
            request.page.page_token,
            state=convert.state_from_pb(request.state),
            base_model=request.base_model,
            dataset=request.dataset,
        )
        return pb.ListJobsResponse(
            jobs=[convert.job(j) for j in jobs], page=common_pb2.PageResponse(next_page_token=token, total_size=total)
        )

    async def CancelJob(self, request: pb.CancelJobRequest, context: Ctx) -> pb.CancelJobResponse:
        return pb.CancelJobResponse(job=convert.job(await self.svc.cancel(request.job_id)))

    async def PauseJob(self, request: pb.PauseJobRequest, context: Ctx) -> pb.PauseJobResponse:
        return pb.PauseJobResponse(job=convert.job(await self.svc.pause(request.job_id)))

    async def ResumeJob(self, request: pb.ResumeJobRequest, context: Ctx) -> pb.ResumeJobResponse:
        return pb.ResumeJobResponse(job=convert.job(await self.svc.resume(request.job_id)))

    async def StreamJobEvents(
        self, request: pb.StreamJobEventsRequest, context: Ctx
    ) -> AsyncIterator[pb.StreamJobEventsResponse]:
        async for ev in self.svc.stream_events(request.job_id, request.after_sequence, not request.no_follow):
            yield pb.StreamJobEventsResponse(event=convert.event_to_pb(ev))

    async def ListCheckpoints(self, request: pb.ListCheckpointsRequest, context: Ctx) -> pb.ListCheckpointsResponse:
        checkpoints = await self.svc.list_checkpoints(request.job_id)
        return pb.ListCheckpointsResponse(checkpoints=[convert.checkpoint(c) for c in checkpoints])

    async def ListBackends(self, request: pb.ListBackendsRequest, context: Ctx) -> pb.ListBackendsResponse:
        return pb.ListBackendsResponse(backends=[convert.backend(b) for b in self.svc.backends()])

    async def ListBaseModels(self, request: pb.ListBaseModelsRequest, context: Ctx) -> pb.ListBaseModelsResponse:
        return pb.ListBaseModelsResponse(models=[convert.base_model(m) for m in self.svc.base_models()])
