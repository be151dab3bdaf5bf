"""The dataset and trainer services over gRPC, as the evaluator's domain sees them (plain values in and out).

Errors come back as tunery.errors: what the other service says about the caller's request (NotFound,
InvalidArgument, FailedPrecondition) as it is, anything else as Unavailable naming the address.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any, TypeVar

import grpc
import orjson

from tunery.dataset.v1 import dataset_pb2 as dpb
from tunery.dataset.v1 import dataset_pb2_grpc
from tunery.errors import FailedPrecondition, InvalidArgument, NotFound, Unavailable
from tunery.runtime.grpcerrors import from_rpc_error
from tunery.trainer.v1 import trainer_pb2 as tpb
from tunery.trainer.v1 import trainer_pb2_grpc
from tunery_evaluator.domain import DatasetVersionRef, JobData, VersionInfo

T = TypeVar("T")
TIMEOUT = 30
EXPORT_TIMEOUT = 600


async def _call(call: Awaitable[T], service: str, address: str) -> T:
    try:
        return await call
    except grpc.RpcError as rpc:
        err = from_rpc_error(rpc)
        if isinstance(err, NotFound | InvalidArgument | FailedPrecondition):
            raise err from None
        raise Unavailable(f"the {service} service at {address} did not answer: {err.message}",
                          code=f"{service}_service_unavailable") from None


class GrpcDatasetClient:
    def __init__(self, channel: grpc.aio.Channel, address: str) -> None:
        self.stub = dataset_pb2_grpc.DatasetServiceStub(channel)
        self.address = address

    async def get_version(self, dataset: str, version: int) -> VersionInfo:
        v = (await _call(self.stub.GetVersion(dpb.GetVersionRequest(dataset=dataset, version=version),
                                              timeout=TIMEOUT), "dataset", self.address)).version
        d = (await _call(self.stub.GetDataset(dpb.GetDatasetRequest(dataset=v.dataset_id), timeout=TIMEOUT),
                         "dataset", self.address)).dataset
        return VersionInfo(v.dataset_id, d.name, v.number, v.example_count)

    async def export(self, dataset: str, version: int) -> list[dict[str, Any]]:
        """The version's examples, in order."""
        call = self.stub.ExportVersion(dpb.ExportVersionRequest(dataset=dataset, version=version),
                                       timeout=EXPORT_TIMEOUT)
        buf = bytearray()
        try:
            async for chunk in call:
                buf.extend(chunk.chunk)
        except grpc.RpcError as rpc:
            raise from_rpc_error(rpc) from None
        return [orjson.loads(line) for line in bytes(buf).splitlines() if line.strip()]

    async def set_reference(self, dataset: str, version: int, reference: str, add: bool = True) -> None:
        request = dpb.SetVersionReferenceRequest(dataset=dataset, version=version, reference=reference, add=add)
        await _call(self.stub.SetVersionReference(request, timeout=TIMEOUT), "dataset", self.address)


class GrpcTrainerClient:
    def __init__(self, channel: grpc.aio.Channel, address: str) -> None:
        self.stub = trainer_pb2_grpc.TrainerServiceStub(channel)
        self.address = address

    async def job_data(self, job_id: str) -> JobData:
        job = (await _call(self.stub.GetJob(tpb.GetJobRequest(job_id=job_id), timeout=TIMEOUT), "trainer",
                           self.address)).job
        s = job.spec
        val = DatasetVersionRef(s.validation_data.dataset, s.validation_data.version) if s.validation_data.dataset \
            else None
        train = DatasetVersionRef(s.training_data.dataset, s.training_data.version)
        return JobData(job.id, train, val, s.validation_split, s.seed)
