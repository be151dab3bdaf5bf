"""gRPC transport of the dataset service: converts messages and delegates to `DatasetService`."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc

from tunery.common.v1 import common_pb2
from tunery.dataset.v1 import dataset_pb2 as pb
from tunery.dataset.v1 import dataset_pb2_grpc
from tunery.errors import InvalidArgument, Problem
from tunery.runtime.grpcerrors import problem_to_proto
from tunery_dataset import convert
from tunery_dataset.service import DatasetService, UploadHeader, UploadResult

Ctx = grpc.aio.ServicerContext


def _page(next_token: str, total: int) -> common_pb2.PageResponse:
    return common_pb2.PageResponse(next_page_token=next_token, total_size=total)


def _problems(ps: list[Problem]) -> list[common_pb2.ProblemDetail]:
    return [problem_to_proto(p) for p in ps]


class DatasetServicer(dataset_pb2_grpc.DatasetServiceServicer):
    def __init__(self, service: DatasetService) -> None:
        self.svc = service

    async def CreateDataset(self, request: pb.CreateDatasetRequest, context: Ctx) -> pb.CreateDatasetResponse:
        return pb.CreateDatasetResponse(
            dataset=convert.dataset(await self.svc.create(request.name, request.description))
        )

    async def GetDataset(self, request: pb.GetDatasetRequest, context: Ctx) -> pb.GetDatasetResponse:
        return pb.GetDatasetResponse(dataset=convert.dataset(await self.svc.get(request.dataset)))

    async def ListDatasets(self, request: pb.ListDatasetsRequest, context: Ctx) -> pb.ListDatasetsResponse:
        items, token, total = await self.svc.list(request.page.page_size, request.page.page_token)
        return pb.ListDatasetsResponse(datasets=[convert.dataset(d) for d in items], page=_page(token, total))

    async def UpdateDataset(self, request: pb.UpdateDatasetRequest, context: Ctx) -> pb.UpdateDatasetResponse:
        desc = request.description if request.HasField("description") else None
        if not request.name and desc is None:
            raise InvalidArgument("nothing to update: give name or description", code="missing_field", field="name")
        return pb.UpdateDatasetResponse(
            dataset=convert.dataset(await self.svc.update(request.dataset, request.name, desc))
        )

    async def DeleteDataset(self, request: pb.DeleteDatasetRequest, context: Ctx) -> pb.DeleteDatasetResponse:
        await self.svc.delete(request.dataset)
        return pb.DeleteDatasetResponse()

    async def _upload(
        self, requests: AsyncIterator[pb.UploadExamplesRequest], store: bool
    ) -> pb.UploadExamplesResponse:
        first = await anext(aiter(requests), None)
        if first is None or not first.HasField("header"):
            raise InvalidArgument(
                "the first message of an upload must carry the header (dataset, filename)",
                code="missing_header",
                field="header",
            )
        h = first.header
        if store and not h.dataset:
            raise InvalidArgument("field 'header.dataset' is required", code="missing_field", field="header.dataset")
        header = UploadHeader(h.dataset, h.filename, h.size_bytes, h.replace, list(h.tags), h.base_model)

        async def chunks() -> AsyncIterator[bytes]:
            async for req in requests:
                if req.HasField("header"):
                    raise InvalidArgument(
                        "only the first message may carry a header", code="duplicate_header", field="header"
                    )
                yield req.chunk

        r: UploadResult = await self.svc.upload(header, chunks(), store=store)
        return pb.UploadExamplesResponse(
            examples_added=r.examples_added,
            lines=r.lines,
            bytes=r.bytes,
            format=r.format,
            warnings=_problems(r.warnings),
            warning_count=r.warning_count,
            dataset=convert.dataset(r.dataset) if r.dataset else None,
        )

    async def UploadExamples(self, request_iterator: Any, context: Ctx) -> pb.UploadExamplesResponse:
        return await self._upload(request_iterator, store=True)

    async def ValidateFile(self, request_iterator: Any, context: Ctx) -> pb.UploadExamplesResponse:
        return await self._upload(request_iterator, store=False)

    async def AddExample(self, request: pb.AddExampleRequest, context: Ctx) -> pb.AddExampleResponse:
        ex, warnings = await self.svc.add_example(request.dataset, request.json, list(request.tags))
        return pb.AddExampleResponse(example=convert.example(ex), warnings=_problems(warnings))

    async def GetExample(self, request: pb.GetExampleRequest, context: Ctx) -> pb.GetExampleResponse:
        return pb.GetExampleResponse(
            example=convert.example(await self.svc.get_example(request.dataset, request.example_id))
        )

    async def ListExamples(self, request: pb.ListExamplesRequest, context: Ctx) -> pb.ListExamplesResponse:
        items, token, total = await self.svc.list_examples(
            request.dataset, request.version, request.page.page_size, request.page.page_token, request.tag, request.text
        )
        return pb.ListExamplesResponse(examples=[convert.example(e) for e in items], page=_page(token, total))

    async def UpdateExample(self, request: pb.UpdateExampleRequest, context: Ctx) -> pb.UpdateExampleResponse:
        ex, warnings = await self.svc.update_example(request.dataset, request.example_id, request.json)
        return pb.UpdateExampleResponse(example=convert.example(ex), warnings=_problems(warnings))

    async def DeleteExample(self, request: pb.DeleteExampleRequest, context: Ctx) -> pb.DeleteExampleResponse:
        await self.svc.delete_example(request.dataset, request.example_id)
        return pb.DeleteExampleResponse()

    async def TagExamples(self, request: pb.TagExamplesRequest, context: Ctx) -> pb.TagExamplesResponse:
        n = await self.svc.tag_examples(
            request.dataset, list(request.example_ids), list(request.add_tags), list(request.remove_tags)
        )
        return pb.TagExamplesResponse(updated=n)

    async def FreezeVersion(self, request: pb.FreezeVersionRequest, context: Ctx) -> pb.FreezeVersionResponse:
        return pb.FreezeVersionResponse(
            version=convert.version(await self.svc.freeze(request.dataset, request.message))
        )

    async def GetVersion(self, request: pb.GetVersionRequest, context: Ctx) -> pb.GetVersionResponse:
        return pb.GetVersionResponse(
            version=convert.version(await self.svc.get_version(request.dataset, request.version))
        )

    async def ListVersions(self, request: pb.ListVersionsRequest, context: Ctx) -> pb.ListVersionsResponse:
        items, token, total = await self.svc.list_versions(
            request.dataset, request.page.page_size, request.page.page_token
        )
        return pb.ListVersionsResponse(versions=[convert.version(v) for v in items], page=_page(token, total))

    async def DeleteVersion(self, request: pb.DeleteVersionRequest, context: Ctx) -> pb.DeleteVersionResponse:
        await self.svc.delete_version(request.dataset, request.version)
        return pb.DeleteVersionResponse()

    async def SetVersionReference(
        self, request: pb.SetVersionReferenceRequest, context: Ctx
    ) -> pb.SetVersionReferenceResponse:
        v = await self.svc.set_reference(request.dataset, request.version, request.reference, request.add)
        return pb.SetVersionReferenceResponse(version=convert.version(v))

    async def SplitVersion(self, request: pb.SplitVersionRequest, context: Ctx) -> pb.SplitVersionResponse:
        train, val = await self.svc.split(request.dataset, request.version, request.validation_fraction, request.seed)
        return pb.SplitVersionResponse(train=convert.version(train), validation=convert.version(val))

    async def Deduplicate(self, request: pb.DeduplicateRequest, context: Ctx) -> pb.DeduplicateResponse:
        groups, removed, ds = await self.svc.deduplicate(
            request.dataset, request.near, request.threshold, request.remove
        )
        return pb.DeduplicateResponse(
            groups=[convert.duplicate_group(g) for g in groups], removed=removed, dataset=convert.dataset(ds)
        )

    async def GetStatistics(self, request: pb.GetStatisticsRequest, context: Ctx) -> pb.GetStatisticsResponse:
        r = await self.svc.statistics(request.dataset, request.version, request.base_model, request.n_epochs)
        s = r.stats
        return pb.GetStatisticsResponse(
            statistics=pb.Statistics(
                examples=s.examples,
                total_tokens=s.total_tokens,
                min_tokens=s.min_tokens,
                mean_tokens=s.mean_tokens,
                max_tokens=s.max_tokens,
                p50_tokens=s.p50_tokens,
                p95_tokens=s.p95_tokens,
                trained_tokens=s.trained_tokens,
                over_context=s.over_context,
                context_length=r.context_length,
                n_epochs=s.n_epochs,
                estimated_training_tokens=s.estimated_training_tokens,
                base_model=r.base_model,
            )
        )

    async def ExportVersion(
        self, request: pb.ExportVersionRequest, context: Ctx
    ) -> AsyncIterator[pb.ExportVersionResponse]:
        async for chunk in self.svc.export(request.dataset, request.version):
            yield pb.ExportVersionResponse(chunk=chunk)
