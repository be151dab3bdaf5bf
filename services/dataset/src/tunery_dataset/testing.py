"""What the dataset service's tests (and other services' tests that need a dataset service) share."""

from __future__ import annotations

from dataclasses import dataclass

import grpc

from tunery.dataset.v1 import dataset_pb2_grpc
from tunery_dataset.app import DatasetApp
from tunery_dataset.settings import DatasetSettings


@dataclass
class Service:
    app: DatasetApp
    stub: dataset_pb2_grpc.DatasetServiceStub
    channel: grpc.Channel
    settings: DatasetSettings
    backend: str
