import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from tunery.common.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Dataset(_message.Message):
    __slots__ = ("id", "name", "description", "create_time", "update_time", "draft_example_count", "latest_version", "format", "draft_modified", "upload_in_progress")
    ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    UPDATE_TIME_FIELD_NUMBER: _ClassVar[int]
    DRAFT_EXAMPLE_COUNT_FIELD_NUMBER: _ClassVar[int]
    LATEST_VERSION_FIELD_NUMBER: _ClassVar[int]
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    DRAFT_MODIFIED_FIELD_NUMBER: _ClassVar[int]
    UPLOAD_IN_PROGRESS_FIELD_NUMBER: _ClassVar[int]
    id: str
    name: str
    description: str
    create_time: _timestamp_pb2.Timestamp
    update_time: _timestamp_pb2.Timestamp
    draft_example_count: int
    latest_version: int
    format: str
    draft_modified: bool
    upload_in_progress: bool
    def __init__(self, id: _Optional[str] = ..., name: _Optional[str] = ..., description: _Optional[str] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., update_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., draft_example_count: _Optional[int] = ..., latest_version: _Optional[int] = ..., format: _Optional[str] = ..., draft_modified: _Optional[bool] = ..., upload_in_progress: _Optional[bool] = ...) -> None: ...

class Version(_message.Message):
    __slots__ = ("dataset_id", "number", "example_count", "create_time", "content_sha256", "message", "split", "parent_version", "references", "format")
    DATASET_ID_FIELD_NUMBER: _ClassVar[int]
    NUMBER_FIELD_NUMBER: _ClassVar[int]
    EXAMPLE_COUNT_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    CONTENT_SHA256_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    SPLIT_FIELD_NUMBER: _ClassVar[int]
    PARENT_VERSION_FIELD_NUMBER: _ClassVar[int]
    REFERENCES_FIELD_NUMBER: _ClassVar[int]
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    dataset_id: str
    number: int
    example_count: int
    create_time: _timestamp_pb2.Timestamp
    content_sha256: str
    message: str
    split: str
    parent_version: int
    references: _containers.RepeatedScalarFieldContainer[str]
    format: str
    def __init__(self, dataset_id: _Optional[str] = ..., number: _Optional[int] = ..., example_count: _Optional[int] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., content_sha256: _Optional[str] = ..., message: _Optional[str] = ..., split: _Optional[str] = ..., parent_version: _Optional[int] = ..., references: _Optional[_Iterable[str]] = ..., format: _Optional[str] = ...) -> None: ...

class Example(_message.Message):
    __slots__ = ("id", "dataset_id", "json", "tags", "format", "position", "create_time")
    ID_FIELD_NUMBER: _ClassVar[int]
    DATASET_ID_FIELD_NUMBER: _ClassVar[int]
    JSON_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    POSITION_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    id: str
    dataset_id: str
    json: str
    tags: _containers.RepeatedScalarFieldContainer[str]
    format: str
    position: int
    create_time: _timestamp_pb2.Timestamp
    def __init__(self, id: _Optional[str] = ..., dataset_id: _Optional[str] = ..., json: _Optional[str] = ..., tags: _Optional[_Iterable[str]] = ..., format: _Optional[str] = ..., position: _Optional[int] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class CreateDatasetRequest(_message.Message):
    __slots__ = ("name", "description")
    NAME_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    name: str
    description: str
    def __init__(self, name: _Optional[str] = ..., description: _Optional[str] = ...) -> None: ...

class CreateDatasetResponse(_message.Message):
    __slots__ = ("dataset",)
    DATASET_FIELD_NUMBER: _ClassVar[int]
    dataset: Dataset
    def __init__(self, dataset: _Optional[_Union[Dataset, _Mapping]] = ...) -> None: ...

class GetDatasetRequest(_message.Message):
    __slots__ = ("dataset",)
    DATASET_FIELD_NUMBER: _ClassVar[int]
    dataset: str
    def __init__(self, dataset: _Optional[str] = ...) -> None: ...

class GetDatasetResponse(_message.Message):
    __slots__ = ("dataset",)
    DATASET_FIELD_NUMBER: _ClassVar[int]
    dataset: Dataset
    def __init__(self, dataset: _Optional[_Union[Dataset, _Mapping]] = ...) -> None: ...

class ListDatasetsRequest(_message.Message):
    __slots__ = ("page",)
    PAGE_FIELD_NUMBER: _ClassVar[int]
    page: _common_pb2.PageRequest
    def __init__(self, page: _Optional[_Union[_common_pb2.PageRequest, _Mapping]] = ...) -> None: ...

class ListDatasetsResponse(_message.Message):
    __slots__ = ("datasets", "page")
    DATASETS_FIELD_NUMBER: _ClassVar[int]
    PAGE_FIELD_NUMBER: _ClassVar[int]
    datasets: _containers.RepeatedCompositeFieldContainer[Dataset]
    page: _common_pb2.PageResponse
    def __init__(self, datasets: _Optional[_Iterable[_Union[Dataset, _Mapping]]] = ..., page: _Optional[_Union[_common_pb2.PageResponse, _Mapping]] = ...) -> None: ...

class UpdateDatasetRequest(_message.Message):
    __slots__ = ("dataset", "name", "description")
    DATASET_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    dataset: str
    name: str
    description: str
    def __init__(self, dataset: _Optional[str] = ..., name: _Optional[str] = ..., description: _Optional[str] = ...) -> None: ...

class UpdateDatasetResponse(_message.Message):
    __slots__ = ("dataset",)
    DATASET_FIELD_NUMBER: _ClassVar[int]
    dataset: Dataset
    def __init__(self, dataset: _Optional[_Union[Dataset, _Mapping]] = ...) -> None: ...

class DeleteDatasetRequest(_message.Message):
    __slots__ = ("dataset",)
    DATASET_FIELD_NUMBER: _ClassVar[int]
    dataset: str
    def __init__(self, dataset: _Optional[str] = ...) -> None: ...

class DeleteDatasetResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class UploadHeader(_message.Message):
    __slots__ = ("dataset", "filename", "size_bytes", "replace", "tags", "base_model")
    DATASET_FIELD_NUMBER: _ClassVar[int]
    FILENAME_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    REPLACE_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    BASE_MODEL_FIELD_NUMBER: _ClassVar[int]
    dataset: str
    filename: str
    size_bytes: int
    replace: bool
    tags: _containers.RepeatedScalarFieldContainer[str]
    base_model: str
    def __init__(self, dataset: _Optional[str] = ..., filename: _Optional[str] = ..., size_bytes: _Optional[int] = ..., replace: _Optional[bool] = ..., tags: _Optional[_Iterable[str]] = ..., base_model: _Optional[str] = ...) -> None: ...

class UploadExamplesRequest(_message.Message):
    __slots__ = ("header", "chunk")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    header: UploadHeader
    chunk: bytes
    def __init__(self, header: _Optional[_Union[UploadHeader, _Mapping]] = ..., chunk: _Optional[bytes] = ...) -> None: ...

class UploadExamplesResponse(_message.Message):
    __slots__ = ("examples_added", "lines", "bytes", "format", "warnings", "warning_count", "dataset")
    EXAMPLES_ADDED_FIELD_NUMBER: _ClassVar[int]
    LINES_FIELD_NUMBER: _ClassVar[int]
    BYTES_FIELD_NUMBER: _ClassVar[int]
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    WARNINGS_FIELD_NUMBER: _ClassVar[int]
    WARNING_COUNT_FIELD_NUMBER: _ClassVar[int]
    DATASET_FIELD_NUMBER: _ClassVar[int]
    examples_added: int
    lines: int
    bytes: int
    format: str
    warnings: _containers.RepeatedCompositeFieldContainer[_common_pb2.ProblemDetail]
    warning_count: int
    dataset: Dataset
    def __init__(self, examples_added: _Optional[int] = ..., lines: _Optional[int] = ..., bytes: _Optional[int] = ..., format: _Optional[str] = ..., warnings: _Optional[_Iterable[_Union[_common_pb2.ProblemDetail, _Mapping]]] = ..., warning_count: _Optional[int] = ..., dataset: _Optional[_Union[Dataset, _Mapping]] = ...) -> None: ...

class AddExampleRequest(_message.Message):
    __slots__ = ("dataset", "json", "tags")
    DATASET_FIELD_NUMBER: _ClassVar[int]
    JSON_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    dataset: str
    json: str
    tags: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, dataset: _Optional[str] = ..., json: _Optional[str] = ..., tags: _Optional[_Iterable[str]] = ...) -> None: ...

class AddExampleResponse(_message.Message):
    __slots__ = ("example", "warnings")
    EXAMPLE_FIELD_NUMBER: _ClassVar[int]
    WARNINGS_FIELD_NUMBER: _ClassVar[int]
    example: Example
    warnings: _containers.RepeatedCompositeFieldContainer[_common_pb2.ProblemDetail]
    def __init__(self, example: _Optional[_Union[Example, _Mapping]] = ..., warnings: _Optional[_Iterable[_Union[_common_pb2.ProblemDetail, _Mapping]]] = ...) -> None: ...

class GetExampleRequest(_message.Message):
    __slots__ = ("dataset", "example_id")
    DATASET_FIELD_NUMBER: _ClassVar[int]
    EXAMPLE_ID_FIELD_NUMBER: _ClassVar[int]
    dataset: str
    example_id: str
    def __init__(self, dataset: _Optional[str] = ..., example_id: _Optional[str] = ...) -> None: ...

class GetExampleResponse(_message.Message):
    __slots__ = ("example",)
    EXAMPLE_FIELD_NUMBER: _ClassVar[int]
    example: Example
    def __init__(self, example: _Optional[_Union[Example, _Mapping]] = ...) -> None: ...

class ListExamplesRequest(_message.Message):
    __slots__ = ("dataset", "version", "page", "tag", "text")
    DATASET_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    PAGE_FIELD_NUMBER: _ClassVar[int]
    TAG_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    dataset: str
    version: int
    page: _common_pb2.PageRequest
    tag: str
    text: str
    def __init__(self, dataset: _Optional[str] = ..., version: _Optional[int] = ..., page: _Optional[_Union[_common_pb2.PageRequest, _Mapping]] = ..., tag: _Optional[str] = ..., text: _Optional[str] = ...) -> None: ...

class ListExamplesResponse(_message.Message):
    __slots__ = ("examples", "page")
    EXAMPLES_FIELD_NUMBER: _ClassVar[int]
    PAGE_FIELD_NUMBER: _ClassVar[int]
    examples: _containers.RepeatedCompositeFieldContainer[Example]
    page: _common_pb2.PageResponse
    def __init__(self, examples: _Optional[_Iterable[_Union[Example, _Mapping]]] = ..., page: _Optional[_Union[_common_pb2.PageResponse, _Mapping]] = ...) -> None: ...

class UpdateExampleRequest(_message.Message):
    __slots__ = ("dataset", "example_id", "json")
    DATASET_FIELD_NUMBER: _ClassVar[int]
    EXAMPLE_ID_FIELD_NUMBER: _ClassVar[int]
    JSON_FIELD_NUMBER: _ClassVar[int]
    dataset: str
    example_id: str
    json: str
    def __init__(self, dataset: _Optional[str] = ..., example_id: _Optional[str] = ..., json: _Optional[str] = ...) -> None: ...

class UpdateExampleResponse(_message.Message):
    __slots__ = ("example", "warnings")
    EXAMPLE_FIELD_NUMBER: _ClassVar[int]
    WARNINGS_FIELD_NUMBER: _ClassVar[int]
    example: Example
    warnings: _containers.RepeatedCompositeFieldContainer[_common_pb2.ProblemDetail]
    def __init__(self, example: _Optional[_Union[Example, _Mapping]] = ..., warnings: _Optional[_Iterable[_Union[_common_pb2.ProblemDetail, _Mapping]]] = ...) -> None: ...

class DeleteExampleRequest(_message.Message):
    __slots__ = ("dataset", "example_id")
    DATASET_FIELD_NUMBER: _ClassVar[int]
    EXAMPLE_ID_FIELD_NUMBER: _ClassVar[int]
    dataset: str
    example_id: str
    def __init__(self, dataset: _Optional[str] = ..., example_id: _Optional[str] = ...) -> None: ...

class DeleteExampleResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class TagExamplesRequest(_message.Message):
    __slots__ = ("dataset", "example_ids", "add_tags", "remove_tags")
    DATASET_FIELD_NUMBER: _ClassVar[int]
    EXAMPLE_IDS_FIELD_NUMBER: _ClassVar[int]
    ADD_TAGS_FIELD_NUMBER: _ClassVar[int]
    REMOVE_TAGS_FIELD_NUMBER: _ClassVar[int]
    dataset: str
    example_ids: _containers.RepeatedScalarFieldContainer[str]
    add_tags: _containers.RepeatedScalarFieldContainer[str]
    remove_tags: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, dataset: _Optional[str] = ..., example_ids: _Optional[_Iterable[str]] = ..., add_tags: _Optional[_Iterable[str]] = ..., remove_tags: _Optional[_Iterable[str]] = ...) -> None: ...

class TagExamplesResponse(_message.Message):
    __slots__ = ("updated",)
    UPDATED_FIELD_NUMBER: _ClassVar[int]
    updated: int
    def __init__(self, updated: _Optional[int] = ...) -> None: ...

class FreezeVersionRequest(_message.Message):
    __slots__ = ("dataset", "message")
    DATASET_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    dataset: str
    message: str
    def __init__(self, dataset: _Optional[str] = ..., message: _Optional[str] = ...) -> None: ...

class FreezeVersionResponse(_message.Message):
    __slots__ = ("version",)
    VERSION_FIELD_NUMBER: _ClassVar[int]
    version: Version
    def __init__(self, version: _Optional[_Union[Version, _Mapping]] = ...) -> None: ...

class GetVersionRequest(_message.Message):
    __slots__ = ("dataset", "version")
    DATASET_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    dataset: str
    version: int
    def __init__(self, dataset: _Optional[str] = ..., version: _Optional[int] = ...) -> None: ...

class GetVersionResponse(_message.Message):
    __slots__ = ("version",)
    VERSION_FIELD_NUMBER: _ClassVar[int]
    version: Version
    def __init__(self, version: _Optional[_Union[Version, _Mapping]] = ...) -> None: ...

class ListVersionsRequest(_message.Message):
    __slots__ = ("dataset", "page")
    DATASET_FIELD_NUMBER: _ClassVar[int]
    PAGE_FIELD_NUMBER: _ClassVar[int]
    dataset: str
    page: _common_pb2.PageRequest
    def __init__(self, dataset: _Optional[str] = ..., page: _Optional[_Union[_common_pb2.PageRequest, _Mapping]] = ...) -> None: ...

class ListVersionsResponse(_message.Message):
    __slots__ = ("versions", "page")
    VERSIONS_FIELD_NUMBER: _ClassVar[int]
    PAGE_FIELD_NUMBER: _ClassVar[int]
    versions: _containers.RepeatedCompositeFieldContainer[Version]
    page: _common_pb2.PageResponse
    def __init__(self, versions: _Optional[_Iterable[_Union[Version, _Mapping]]] = ..., page: _Optional[_Union[_common_pb2.PageResponse, _Mapping]] = ...) -> None: ...

class DeleteVersionRequest(_message.Message):
    __slots__ = ("dataset", "version")
    DATASET_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    dataset: str
    version: int
    def __init__(self, dataset: _Optional[str] = ..., version: _Optional[int] = ...) -> None: ...

class DeleteVersionResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class SetVersionReferenceRequest(_message.Message):
    __slots__ = ("dataset", "version", "reference", "add")
    DATASET_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    REFERENCE_FIELD_NUMBER: _ClassVar[int]
    ADD_FIELD_NUMBER: _ClassVar[int]
    dataset: str
    version: int
    reference: str
    add: bool
    def __init__(self, dataset: _Optional[str] = ..., version: _Optional[int] = ..., reference: _Optional[str] = ..., add: _Optional[bool] = ...) -> None: ...

class SetVersionReferenceResponse(_message.Message):
    __slots__ = ("version",)
    VERSION_FIELD_NUMBER: _ClassVar[int]
    version: Version
    def __init__(self, version: _Optional[_Union[Version, _Mapping]] = ...) -> None: ...

class SplitVersionRequest(_message.Message):
    __slots__ = ("dataset", "version", "validation_fraction", "seed")
    DATASET_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    VALIDATION_FRACTION_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    dataset: str
    version: int
    validation_fraction: float
    seed: int
    def __init__(self, dataset: _Optional[str] = ..., version: _Optional[int] = ..., validation_fraction: _Optional[float] = ..., seed: _Optional[int] = ...) -> None: ...

class SplitVersionResponse(_message.Message):
    __slots__ = ("train", "validation")
    TRAIN_FIELD_NUMBER: _ClassVar[int]
    VALIDATION_FIELD_NUMBER: _ClassVar[int]
    train: Version
    validation: Version
    def __init__(self, train: _Optional[_Union[Version, _Mapping]] = ..., validation: _Optional[_Union[Version, _Mapping]] = ...) -> None: ...

class DuplicateGroup(_message.Message):
    __slots__ = ("kind", "example_ids", "similarity")
    KIND_FIELD_NUMBER: _ClassVar[int]
    EXAMPLE_IDS_FIELD_NUMBER: _ClassVar[int]
    SIMILARITY_FIELD_NUMBER: _ClassVar[int]
    kind: str
    example_ids: _containers.RepeatedScalarFieldContainer[str]
    similarity: float
    def __init__(self, kind: _Optional[str] = ..., example_ids: _Optional[_Iterable[str]] = ..., similarity: _Optional[float] = ...) -> None: ...

class DeduplicateRequest(_message.Message):
    __slots__ = ("dataset", "near", "threshold", "remove")
    DATASET_FIELD_NUMBER: _ClassVar[int]
    NEAR_FIELD_NUMBER: _ClassVar[int]
    THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    REMOVE_FIELD_NUMBER: _ClassVar[int]
    dataset: str
    near: bool
    threshold: float
    remove: bool
    def __init__(self, dataset: _Optional[str] = ..., near: _Optional[bool] = ..., threshold: _Optional[float] = ..., remove: _Optional[bool] = ...) -> None: ...

class DeduplicateResponse(_message.Message):
    __slots__ = ("groups", "removed", "dataset")
    GROUPS_FIELD_NUMBER: _ClassVar[int]
    REMOVED_FIELD_NUMBER: _ClassVar[int]
    DATASET_FIELD_NUMBER: _ClassVar[int]
    groups: _containers.RepeatedCompositeFieldContainer[DuplicateGroup]
    removed: int
    dataset: Dataset
    def __init__(self, groups: _Optional[_Iterable[_Union[DuplicateGroup, _Mapping]]] = ..., removed: _Optional[int] = ..., dataset: _Optional[_Union[Dataset, _Mapping]] = ...) -> None: ...

class GetStatisticsRequest(_message.Message):
    __slots__ = ("dataset", "version", "base_model", "n_epochs")
    DATASET_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    BASE_MODEL_FIELD_NUMBER: _ClassVar[int]
    N_EPOCHS_FIELD_NUMBER: _ClassVar[int]
    dataset: str
    version: int
    base_model: str
    n_epochs: int
    def __init__(self, dataset: _Optional[str] = ..., version: _Optional[int] = ..., base_model: _Optional[str] = ..., n_epochs: _Optional[int] = ...) -> None: ...

class Statistics(_message.Message):
    __slots__ = ("examples", "total_tokens", "min_tokens", "mean_tokens", "max_tokens", "p50_tokens", "p95_tokens", "trained_tokens", "over_context", "context_length", "n_epochs", "estimated_training_tokens", "base_model")
    EXAMPLES_FIELD_NUMBER: _ClassVar[int]
    TOTAL_TOKENS_FIELD_NUMBER: _ClassVar[int]
    MIN_TOKENS_FIELD_NUMBER: _ClassVar[int]
    MEAN_TOKENS_FIELD_NUMBER: _ClassVar[int]
    MAX_TOKENS_FIELD_NUMBER: _ClassVar[int]
    P50_TOKENS_FIELD_NUMBER: _ClassVar[int]
    P95_TOKENS_FIELD_NUMBER: _ClassVar[int]
    TRAINED_TOKENS_FIELD_NUMBER: _ClassVar[int]
    OVER_CONTEXT_FIELD_NUMBER: _ClassVar[int]
    CONTEXT_LENGTH_FIELD_NUMBER: _ClassVar[int]
    N_EPOCHS_FIELD_NUMBER: _ClassVar[int]
    ESTIMATED_TRAINING_TOKENS_FIELD_NUMBER: _ClassVar[int]
    BASE_MODEL_FIELD_NUMBER: _ClassVar[int]
    examples: int
    total_tokens: int
    min_tokens: int
    mean_tokens: float
    max_tokens: int
    p50_tokens: int
    p95_tokens: int
    trained_tokens: int
    over_context: int
    context_length: int
    n_epochs: int
    estimated_training_tokens: int
    base_model: str
    def __init__(self, examples: _Optional[int] = ..., total_tokens: _Optional[int] = ..., min_tokens: _Optional[int] = ..., mean_tokens: _Optional[float] = ..., max_tokens: _Optional[int] = ..., p50_tokens: _Optional[int] = ..., p95_tokens: _Optional[int] = ..., trained_tokens: _Optional[int] = ..., over_context: _Optional[int] = ..., context_length: _Optional[int] = ..., n_epochs: _Optional[int] = ..., estimated_training_tokens: _Optional[int] = ..., base_model: _Optional[str] = ...) -> None: ...

class GetStatisticsResponse(_message.Message):
    __slots__ = ("statistics",)
    STATISTICS_FIELD_NUMBER: _ClassVar[int]
    statistics: Statistics
    def __init__(self, statistics: _Optional[_Union[Statistics, _Mapping]] = ...) -> None: ...

class ExportVersionRequest(_message.Message):
    __slots__ = ("dataset", "version")
    DATASET_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    dataset: str
    version: int
    def __init__(self, dataset: _Optional[str] = ..., version: _Optional[int] = ...) -> None: ...

class ExportVersionResponse(_message.Message):
    __slots__ = ("chunk",)
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    chunk: bytes
    def __init__(self, chunk: _Optional[bytes] = ...) -> None: ...

class DatasetEvent(_message.Message):
    __slots__ = ("dataset", "version")
    DATASET_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    dataset: Dataset
    version: Version
    def __init__(self, dataset: _Optional[_Union[Dataset, _Mapping]] = ..., version: _Optional[_Union[Version, _Mapping]] = ...) -> None: ...
