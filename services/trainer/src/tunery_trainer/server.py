"""gRPC transport of the trainer service: converts messages and delegates to `TrainerService`."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc

from tunery.common.v1 import common_pb2
from tunery.dataset.v1 import dataset_pb2
from tunery.errors import InvalidArgument
from tunery.trainer.v1 import trainer_pb2 as pb
from tunery.trainer.v1 import trainer_pb2_grpc
from tunery_trainer import convert, states
from tunery_trainer.backends.registry import BACKENDS, config_schema, get_backend, provided_by
from tunery_trainer.service import TrainerService, base_models

Ctx = grpc.aio.ServicerContext
_METHODS = {"sft": pb.METHOD_SFT, "dpo": pb.METHOD_DPO}


class TrainerServicer(trainer_pb2_grpc.TrainerServiceServicer):
    def __init__(self, service: TrainerService) -> None:
        self.svc = service

    async def CreateJob(self, request: pb.CreateJobRequest, context: Ctx) -> pb.CreateJobResponse:
        if not request.HasField("spec"):
            raise InvalidArgument("field 'spec' is required", code="missing_field", field="spec")
        job, existing = await self.svc.create_job(request.spec)
        return pb.CreateJobResponse(job=convert.job(job), existing=existing)

    async def GetJob(self, request: pb.GetJobRequest, context: Ctx) -> pb.GetJobResponse:
        return pb.GetJobResponse(job=convert.job(await self.svc._run(self.svc.store.get, request.job_id)))

    async def ListJobs(self, request: pb.ListJobsRequest, context: Ctx) -> pb.ListJobsResponse:
        dataset_ids = None
        if request.dataset:
            resp = await self.svc._dataset_call(
                self.svc.dataset.GetDataset, dataset_pb2.GetDatasetRequest(dataset=request.dataset), "dataset"
            )
            dataset_ids = [resp.dataset.id]
        jobs, token, total = await self.svc._run(
            self.svc.store.list,
            request.page.page_size,
            request.page.page_token,
            states.from_proto(request.state),
            request.base_model,
            dataset_ids,
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
            yield pb.StreamJobEventsResponse(event=ev)

    async def ListCheckpoints(self, request: pb.ListCheckpointsRequest, context: Ctx) -> pb.ListCheckpointsResponse:
        rows = await self.svc._run(self.svc.store.checkpoints, request.job_id)
        out = []
        for r in rows:
            ck = pb.Checkpoint(step=r["step"], epoch=r["epoch"], path=r["path"])
            ck.create_time.CopyFrom(convert.ts(r["created_at"]))
            out.append(ck)
        return pb.ListCheckpointsResponse(checkpoints=out)

    async def ListBackends(self, request: pb.ListBackendsRequest, context: Ctx) -> pb.ListBackendsResponse:
        out = []
        for name in BACKENDS.names():
            b = get_backend(name)
            out.append(
                pb.Backend(
                    name=name,
                    description=b.description,
                    methods=[_METHODS[m] for m in b.methods if m in _METHODS],
                    config=[
                        pb.ConfigField(name=f.name, type=f.type, default_json=f.default_json, help=f.help)
                        for f in config_schema(b.config_class)
                    ],
                    provided_by=provided_by(name),
                )
            )
        return pb.ListBackendsResponse(backends=out)

    async def ListBaseModels(self, request: pb.ListBaseModelsRequest, context: Ctx) -> pb.ListBaseModelsResponse:
        return pb.ListBaseModelsResponse(models=base_models())
