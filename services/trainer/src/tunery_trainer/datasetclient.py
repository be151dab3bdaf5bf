"""The dataset service over gRPC, as the trainer's domain sees it (`domain.DatasetClient`).

Errors come back as tunery.errors: what the dataset service says about the caller's request (NotFound,
InvalidArgument, FailedPrecondition) as it is, anything else as Unavailable naming the address.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable
from typing import TypeVar

import grpc

from tunery.dataset.v1 import dataset_pb2 as dpb
from tunery.dataset.v1 import dataset_pb2_grpc
from tunery.errors import FailedPrecondition, InvalidArgument, NotFound, Unavailable
from tunery.runtime.grpcerrors import from_rpc_error
from tunery_trainer.domain import DatasetInfo, DatasetVersion

T = TypeVar("T")
TIMEOUT = 30
EXPORT_TIMEOUT = 600


class GrpcDatasetClient:
    def __init__(self, channel: grpc.aio.Channel, address: str) -> None:
        self.stub = dataset_pb2_grpc.DatasetServiceStub(channel)
        self.address = address

    async def _call(self, call: Awaitable[T]) -> T:
        try:
            return await call
        except grpc.RpcError as rpc:
            err = from_rpc_error(rpc)
            if isinstance(err, NotFound | InvalidArgument | FailedPrecondition):
                raise err from None
            raise Unavailable(
                f"the dataset service at {self.address} did not answer: {err.message}",
                code="dataset_service_unavailable",
            ) from None

    async def get_version(self, dataset: str, version: int) -> DatasetVersion:
        resp = await self._call(
            self.stub.GetVersion(dpb.GetVersionRequest(dataset=dataset, version=version), timeout=TIMEOUT)
        )
        v = resp.version
        return DatasetVersion(dataset_id=v.dataset_id, number=v.number, example_count=v.example_count, format=v.format)

    async def get_dataset(self, dataset: str) -> DatasetInfo:
        resp = await self._call(self.stub.GetDataset(dpb.GetDatasetRequest(dataset=dataset), timeout=TIMEOUT))
        return DatasetInfo(id=resp.dataset.id, name=resp.dataset.name)

    async def set_reference(self, dataset: str, version: int, reference: str, add: bool = True) -> None:
        request = dpb.SetVersionReferenceRequest(dataset=dataset, version=version, reference=reference, add=add)
        await self._call(self.stub.SetVersionReference(request, timeout=TIMEOUT))

    async def export(self, dataset: str, version: int) -> AsyncIterator[bytes]:
        call = self.stub.ExportVersion(
            dpb.ExportVersionRequest(dataset=dataset, version=version), timeout=EXPORT_TIMEOUT
        )
        try:
            async for chunk in call:
                yield chunk.chunk
        except grpc.RpcError as rpc:
            raise from_rpc_error(rpc) from None
