import datetime

from google.protobuf import struct_pb2 as _struct_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from tunery.common.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ModelRef(_message.Message):
    __slots__ = ("model", "base_url", "api_key", "label", "api_key_set")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    BASE_URL_FIELD_NUMBER: _ClassVar[int]
    API_KEY_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    API_KEY_SET_FIELD_NUMBER: _ClassVar[int]
    model: str
    base_url: str
    api_key: str
    label: str
    api_key_set: bool
    def __init__(self, model: _Optional[str] = ..., base_url: _Optional[str] = ..., api_key: _Optional[str] = ..., label: _Optional[str] = ..., api_key_set: _Optional[bool] = ...) -> None: ...

class GenerationConfig(_message.Message):
    __slots__ = ("temperature", "max_tokens", "seed", "stop", "concurrency", "top_p")
    TEMPERATURE_FIELD_NUMBER: _ClassVar[int]
    MAX_TOKENS_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    STOP_FIELD_NUMBER: _ClassVar[int]
    CONCURRENCY_FIELD_NUMBER: _ClassVar[int]
    TOP_P_FIELD_NUMBER: _ClassVar[int]
    temperature: float
    max_tokens: int
    seed: int
    stop: _containers.RepeatedScalarFieldContainer[str]
    concurrency: int
    top_p: float
    def __init__(self, temperature: _Optional[float] = ..., max_tokens: _Optional[int] = ..., seed: _Optional[int] = ..., stop: _Optional[_Iterable[str]] = ..., concurrency: _Optional[int] = ..., top_p: _Optional[float] = ...) -> None: ...

class EvaluationData(_message.Message):
    __slots__ = ("dataset_version", "job_id", "limit")
    DATASET_VERSION_FIELD_NUMBER: _ClassVar[int]
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    dataset_version: DatasetVersionRef
    job_id: str
    limit: int
    def __init__(self, dataset_version: _Optional[_Union[DatasetVersionRef, _Mapping]] = ..., job_id: _Optional[str] = ..., limit: _Optional[int] = ...) -> None: ...

class DatasetVersionRef(_message.Message):
    __slots__ = ("dataset", "version")
    DATASET_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    dataset: str
    version: int
    def __init__(self, dataset: _Optional[str] = ..., version: _Optional[int] = ...) -> None: ...

class GraderSpec(_message.Message):
    __slots__ = ("type", "name", "config")
    TYPE_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    CONFIG_FIELD_NUMBER: _ClassVar[int]
    type: str
    name: str
    config: _struct_pb2.Struct
    def __init__(self, type: _Optional[str] = ..., name: _Optional[str] = ..., config: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ...) -> None: ...

class EvaluationSpec(_message.Message):
    __slots__ = ("models", "data", "graders", "generation", "display_name", "metadata", "seed", "idempotency_key")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    MODELS_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    GRADERS_FIELD_NUMBER: _ClassVar[int]
    GENERATION_FIELD_NUMBER: _ClassVar[int]
    DISPLAY_NAME_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    models: _containers.RepeatedCompositeFieldContainer[ModelRef]
    data: EvaluationData
    graders: _containers.RepeatedCompositeFieldContainer[GraderSpec]
    generation: GenerationConfig
    display_name: str
    metadata: _containers.ScalarMap[str, str]
    seed: int
    idempotency_key: str
    def __init__(self, models: _Optional[_Iterable[_Union[ModelRef, _Mapping]]] = ..., data: _Optional[_Union[EvaluationData, _Mapping]] = ..., graders: _Optional[_Iterable[_Union[GraderSpec, _Mapping]]] = ..., generation: _Optional[_Union[GenerationConfig, _Mapping]] = ..., display_name: _Optional[str] = ..., metadata: _Optional[_Mapping[str, str]] = ..., seed: _Optional[int] = ..., idempotency_key: _Optional[str] = ...) -> None: ...

class GraderSummary(_message.Message):
    __slots__ = ("grader", "model", "mean", "ci_low", "ci_high", "pass_rate", "count", "errored", "higher_is_better", "extra")
    class ExtraEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    GRADER_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    MEAN_FIELD_NUMBER: _ClassVar[int]
    CI_LOW_FIELD_NUMBER: _ClassVar[int]
    CI_HIGH_FIELD_NUMBER: _ClassVar[int]
    PASS_RATE_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    ERRORED_FIELD_NUMBER: _ClassVar[int]
    HIGHER_IS_BETTER_FIELD_NUMBER: _ClassVar[int]
    EXTRA_FIELD_NUMBER: _ClassVar[int]
    grader: str
    model: str
    mean: float
    ci_low: float
    ci_high: float
    pass_rate: float
    count: int
    errored: int
    higher_is_better: bool
    extra: _containers.ScalarMap[str, float]
    def __init__(self, grader: _Optional[str] = ..., model: _Optional[str] = ..., mean: _Optional[float] = ..., ci_low: _Optional[float] = ..., ci_high: _Optional[float] = ..., pass_rate: _Optional[float] = ..., count: _Optional[int] = ..., errored: _Optional[int] = ..., higher_is_better: _Optional[bool] = ..., extra: _Optional[_Mapping[str, float]] = ...) -> None: ...

class PairwiseSummary(_message.Message):
    __slots__ = ("grader", "model_a", "model_b", "wins", "losses", "ties", "mean_difference", "ci_low", "ci_high", "p_value", "test", "count")
    GRADER_FIELD_NUMBER: _ClassVar[int]
    MODEL_A_FIELD_NUMBER: _ClassVar[int]
    MODEL_B_FIELD_NUMBER: _ClassVar[int]
    WINS_FIELD_NUMBER: _ClassVar[int]
    LOSSES_FIELD_NUMBER: _ClassVar[int]
    TIES_FIELD_NUMBER: _ClassVar[int]
    MEAN_DIFFERENCE_FIELD_NUMBER: _ClassVar[int]
    CI_LOW_FIELD_NUMBER: _ClassVar[int]
    CI_HIGH_FIELD_NUMBER: _ClassVar[int]
    P_VALUE_FIELD_NUMBER: _ClassVar[int]
    TEST_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    grader: str
    model_a: str
    model_b: str
    wins: int
    losses: int
    ties: int
    mean_difference: float
    ci_low: float
    ci_high: float
    p_value: float
    test: str
    count: int
    def __init__(self, grader: _Optional[str] = ..., model_a: _Optional[str] = ..., model_b: _Optional[str] = ..., wins: _Optional[int] = ..., losses: _Optional[int] = ..., ties: _Optional[int] = ..., mean_difference: _Optional[float] = ..., ci_low: _Optional[float] = ..., ci_high: _Optional[float] = ..., p_value: _Optional[float] = ..., test: _Optional[str] = ..., count: _Optional[int] = ...) -> None: ...

class EvaluationSummary(_message.Message):
    __slots__ = ("graders", "pairs", "model_errors")
    class ModelErrorsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    GRADERS_FIELD_NUMBER: _ClassVar[int]
    PAIRS_FIELD_NUMBER: _ClassVar[int]
    MODEL_ERRORS_FIELD_NUMBER: _ClassVar[int]
    graders: _containers.RepeatedCompositeFieldContainer[GraderSummary]
    pairs: _containers.RepeatedCompositeFieldContainer[PairwiseSummary]
    model_errors: _containers.ScalarMap[str, int]
    def __init__(self, graders: _Optional[_Iterable[_Union[GraderSummary, _Mapping]]] = ..., pairs: _Optional[_Iterable[_Union[PairwiseSummary, _Mapping]]] = ..., model_errors: _Optional[_Mapping[str, int]] = ...) -> None: ...

class Evaluation(_message.Message):
    __slots__ = ("id", "spec", "state", "error", "create_time", "start_time", "end_time", "total_examples", "finished_examples", "errored_examples", "summary", "resolved_data", "attempts", "job_id")
    ID_FIELD_NUMBER: _ClassVar[int]
    SPEC_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    TOTAL_EXAMPLES_FIELD_NUMBER: _ClassVar[int]
    FINISHED_EXAMPLES_FIELD_NUMBER: _ClassVar[int]
    ERRORED_EXAMPLES_FIELD_NUMBER: _ClassVar[int]
    SUMMARY_FIELD_NUMBER: _ClassVar[int]
    RESOLVED_DATA_FIELD_NUMBER: _ClassVar[int]
    ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    spec: EvaluationSpec
    state: _common_pb2.JobState
    error: _common_pb2.ErrorDetails
    create_time: _timestamp_pb2.Timestamp
    start_time: _timestamp_pb2.Timestamp
    end_time: _timestamp_pb2.Timestamp
    total_examples: int
    finished_examples: int
    errored_examples: int
    summary: EvaluationSummary
    resolved_data: DatasetVersionRef
    attempts: int
    job_id: str
    def __init__(self, id: _Optional[str] = ..., spec: _Optional[_Union[EvaluationSpec, _Mapping]] = ..., state: _Optional[_Union[_common_pb2.JobState, str]] = ..., error: _Optional[_Union[_common_pb2.ErrorDetails, _Mapping]] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., total_examples: _Optional[int] = ..., finished_examples: _Optional[int] = ..., errored_examples: _Optional[int] = ..., summary: _Optional[_Union[EvaluationSummary, _Mapping]] = ..., resolved_data: _Optional[_Union[DatasetVersionRef, _Mapping]] = ..., attempts: _Optional[int] = ..., job_id: _Optional[str] = ...) -> None: ...

class Grade(_message.Message):
    __slots__ = ("grader", "model", "score", "passed", "label", "rationale", "error", "error_message", "against")
    GRADER_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    PASSED_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    RATIONALE_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    ERROR_MESSAGE_FIELD_NUMBER: _ClassVar[int]
    AGAINST_FIELD_NUMBER: _ClassVar[int]
    grader: str
    model: str
    score: float
    passed: bool
    label: str
    rationale: str
    error: str
    error_message: str
    against: str
    def __init__(self, grader: _Optional[str] = ..., model: _Optional[str] = ..., score: _Optional[float] = ..., passed: _Optional[bool] = ..., label: _Optional[str] = ..., rationale: _Optional[str] = ..., error: _Optional[str] = ..., error_message: _Optional[str] = ..., against: _Optional[str] = ...) -> None: ...

class ModelAnswer(_message.Message):
    __slots__ = ("model", "content", "finish_reason", "prompt_tokens", "completion_tokens", "latency_ms", "error", "error_message")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    CONTENT_FIELD_NUMBER: _ClassVar[int]
    FINISH_REASON_FIELD_NUMBER: _ClassVar[int]
    PROMPT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    COMPLETION_TOKENS_FIELD_NUMBER: _ClassVar[int]
    LATENCY_MS_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    ERROR_MESSAGE_FIELD_NUMBER: _ClassVar[int]
    model: str
    content: str
    finish_reason: str
    prompt_tokens: int
    completion_tokens: int
    latency_ms: float
    error: str
    error_message: str
    def __init__(self, model: _Optional[str] = ..., content: _Optional[str] = ..., finish_reason: _Optional[str] = ..., prompt_tokens: _Optional[int] = ..., completion_tokens: _Optional[int] = ..., latency_ms: _Optional[float] = ..., error: _Optional[str] = ..., error_message: _Optional[str] = ...) -> None: ...

class ExampleResult(_message.Message):
    __slots__ = ("evaluation_id", "index", "example_id", "input_json", "reference", "answers", "grades", "sequence", "finish_time")
    EVALUATION_ID_FIELD_NUMBER: _ClassVar[int]
    INDEX_FIELD_NUMBER: _ClassVar[int]
    EXAMPLE_ID_FIELD_NUMBER: _ClassVar[int]
    INPUT_JSON_FIELD_NUMBER: _ClassVar[int]
    REFERENCE_FIELD_NUMBER: _ClassVar[int]
    ANSWERS_FIELD_NUMBER: _ClassVar[int]
    GRADES_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    FINISH_TIME_FIELD_NUMBER: _ClassVar[int]
    evaluation_id: str
    index: int
    example_id: str
    input_json: str
    reference: str
    answers: _containers.RepeatedCompositeFieldContainer[ModelAnswer]
    grades: _containers.RepeatedCompositeFieldContainer[Grade]
    sequence: int
    finish_time: _timestamp_pb2.Timestamp
    def __init__(self, evaluation_id: _Optional[str] = ..., index: _Optional[int] = ..., example_id: _Optional[str] = ..., input_json: _Optional[str] = ..., reference: _Optional[str] = ..., answers: _Optional[_Iterable[_Union[ModelAnswer, _Mapping]]] = ..., grades: _Optional[_Iterable[_Union[Grade, _Mapping]]] = ..., sequence: _Optional[int] = ..., finish_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class CreateEvaluationRequest(_message.Message):
    __slots__ = ("spec",)
    SPEC_FIELD_NUMBER: _ClassVar[int]
    spec: EvaluationSpec
    def __init__(self, spec: _Optional[_Union[EvaluationSpec, _Mapping]] = ...) -> None: ...

class CreateEvaluationResponse(_message.Message):
    __slots__ = ("evaluation", "existing")
    EVALUATION_FIELD_NUMBER: _ClassVar[int]
    EXISTING_FIELD_NUMBER: _ClassVar[int]
    evaluation: Evaluation
    existing: bool
    def __init__(self, evaluation: _Optional[_Union[Evaluation, _Mapping]] = ..., existing: _Optional[bool] = ...) -> None: ...

class GetEvaluationRequest(_message.Message):
    __slots__ = ("evaluation_id",)
    EVALUATION_ID_FIELD_NUMBER: _ClassVar[int]
    evaluation_id: str
    def __init__(self, evaluation_id: _Optional[str] = ...) -> None: ...

class GetEvaluationResponse(_message.Message):
    __slots__ = ("evaluation",)
    EVALUATION_FIELD_NUMBER: _ClassVar[int]
    evaluation: Evaluation
    def __init__(self, evaluation: _Optional[_Union[Evaluation, _Mapping]] = ...) -> None: ...

class ListEvaluationsRequest(_message.Message):
    __slots__ = ("page", "states", "model", "dataset", "job_id")
    PAGE_FIELD_NUMBER: _ClassVar[int]
    STATES_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    DATASET_FIELD_NUMBER: _ClassVar[int]
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    page: _common_pb2.PageRequest
    states: _containers.RepeatedScalarFieldContainer[_common_pb2.JobState]
    model: str
    dataset: str
    job_id: str
    def __init__(self, page: _Optional[_Union[_common_pb2.PageRequest, _Mapping]] = ..., states: _Optional[_Iterable[_Union[_common_pb2.JobState, str]]] = ..., model: _Optional[str] = ..., dataset: _Optional[str] = ..., job_id: _Optional[str] = ...) -> None: ...

class ListEvaluationsResponse(_message.Message):
    __slots__ = ("evaluations", "page")
    EVALUATIONS_FIELD_NUMBER: _ClassVar[int]
    PAGE_FIELD_NUMBER: _ClassVar[int]
    evaluations: _containers.RepeatedCompositeFieldContainer[Evaluation]
    page: _common_pb2.PageResponse
    def __init__(self, evaluations: _Optional[_Iterable[_Union[Evaluation, _Mapping]]] = ..., page: _Optional[_Union[_common_pb2.PageResponse, _Mapping]] = ...) -> None: ...

class CancelEvaluationRequest(_message.Message):
    __slots__ = ("evaluation_id",)
    EVALUATION_ID_FIELD_NUMBER: _ClassVar[int]
    evaluation_id: str
    def __init__(self, evaluation_id: _Optional[str] = ...) -> None: ...

class CancelEvaluationResponse(_message.Message):
    __slots__ = ("evaluation",)
    EVALUATION_FIELD_NUMBER: _ClassVar[int]
    evaluation: Evaluation
    def __init__(self, evaluation: _Optional[_Union[Evaluation, _Mapping]] = ...) -> None: ...

class DeleteEvaluationRequest(_message.Message):
    __slots__ = ("evaluation_id",)
    EVALUATION_ID_FIELD_NUMBER: _ClassVar[int]
    evaluation_id: str
    def __init__(self, evaluation_id: _Optional[str] = ...) -> None: ...

class DeleteEvaluationResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class StreamEvaluationResultsRequest(_message.Message):
    __slots__ = ("evaluation_id", "after_sequence", "no_follow")
    EVALUATION_ID_FIELD_NUMBER: _ClassVar[int]
    AFTER_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    NO_FOLLOW_FIELD_NUMBER: _ClassVar[int]
    evaluation_id: str
    after_sequence: int
    no_follow: bool
    def __init__(self, evaluation_id: _Optional[str] = ..., after_sequence: _Optional[int] = ..., no_follow: _Optional[bool] = ...) -> None: ...

class StreamEvaluationResultsResponse(_message.Message):
    __slots__ = ("result", "evaluation")
    RESULT_FIELD_NUMBER: _ClassVar[int]
    EVALUATION_FIELD_NUMBER: _ClassVar[int]
    result: ExampleResult
    evaluation: Evaluation
    def __init__(self, result: _Optional[_Union[ExampleResult, _Mapping]] = ..., evaluation: _Optional[_Union[Evaluation, _Mapping]] = ...) -> None: ...

class ChatMessage(_message.Message):
    __slots__ = ("role", "content")
    ROLE_FIELD_NUMBER: _ClassVar[int]
    CONTENT_FIELD_NUMBER: _ClassVar[int]
    role: str
    content: str
    def __init__(self, role: _Optional[str] = ..., content: _Optional[str] = ...) -> None: ...

class Conversation(_message.Message):
    __slots__ = ("messages",)
    MESSAGES_FIELD_NUMBER: _ClassVar[int]
    messages: _containers.RepeatedCompositeFieldContainer[ChatMessage]
    def __init__(self, messages: _Optional[_Iterable[_Union[ChatMessage, _Mapping]]] = ...) -> None: ...

class CompareRequest(_message.Message):
    __slots__ = ("conversations", "models", "generation", "graders", "references")
    CONVERSATIONS_FIELD_NUMBER: _ClassVar[int]
    MODELS_FIELD_NUMBER: _ClassVar[int]
    GENERATION_FIELD_NUMBER: _ClassVar[int]
    GRADERS_FIELD_NUMBER: _ClassVar[int]
    REFERENCES_FIELD_NUMBER: _ClassVar[int]
    conversations: _containers.RepeatedCompositeFieldContainer[Conversation]
    models: _containers.RepeatedCompositeFieldContainer[ModelRef]
    generation: GenerationConfig
    graders: _containers.RepeatedCompositeFieldContainer[GraderSpec]
    references: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, conversations: _Optional[_Iterable[_Union[Conversation, _Mapping]]] = ..., models: _Optional[_Iterable[_Union[ModelRef, _Mapping]]] = ..., generation: _Optional[_Union[GenerationConfig, _Mapping]] = ..., graders: _Optional[_Iterable[_Union[GraderSpec, _Mapping]]] = ..., references: _Optional[_Iterable[str]] = ...) -> None: ...

class CompareResponse(_message.Message):
    __slots__ = ("results",)
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[ExampleResult]
    def __init__(self, results: _Optional[_Iterable[_Union[ExampleResult, _Mapping]]] = ...) -> None: ...

class ListGradersRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GraderInfo(_message.Message):
    __slots__ = ("type", "description", "config_schema", "higher_is_better", "pairwise", "package", "needs_reference")
    TYPE_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    CONFIG_SCHEMA_FIELD_NUMBER: _ClassVar[int]
    HIGHER_IS_BETTER_FIELD_NUMBER: _ClassVar[int]
    PAIRWISE_FIELD_NUMBER: _ClassVar[int]
    PACKAGE_FIELD_NUMBER: _ClassVar[int]
    NEEDS_REFERENCE_FIELD_NUMBER: _ClassVar[int]
    type: str
    description: str
    config_schema: _struct_pb2.Struct
    higher_is_better: bool
    pairwise: bool
    package: str
    needs_reference: bool
    def __init__(self, type: _Optional[str] = ..., description: _Optional[str] = ..., config_schema: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., higher_is_better: _Optional[bool] = ..., pairwise: _Optional[bool] = ..., package: _Optional[str] = ..., needs_reference: _Optional[bool] = ...) -> None: ...

class ListGradersResponse(_message.Message):
    __slots__ = ("graders",)
    GRADERS_FIELD_NUMBER: _ClassVar[int]
    graders: _containers.RepeatedCompositeFieldContainer[GraderInfo]
    def __init__(self, graders: _Optional[_Iterable[_Union[GraderInfo, _Mapping]]] = ...) -> None: ...

class EvaluationEvent(_message.Message):
    __slots__ = ("evaluation_id", "state", "finished_examples", "total_examples", "summary", "error", "job_id")
    EVALUATION_ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    FINISHED_EXAMPLES_FIELD_NUMBER: _ClassVar[int]
    TOTAL_EXAMPLES_FIELD_NUMBER: _ClassVar[int]
    SUMMARY_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    evaluation_id: str
    state: _common_pb2.JobState
    finished_examples: int
    total_examples: int
    summary: EvaluationSummary
    error: _common_pb2.ErrorDetails
    job_id: str
    def __init__(self, evaluation_id: _Optional[str] = ..., state: _Optional[_Union[_common_pb2.JobState, str]] = ..., finished_examples: _Optional[int] = ..., total_examples: _Optional[int] = ..., summary: _Optional[_Union[EvaluationSummary, _Mapping]] = ..., error: _Optional[_Union[_common_pb2.ErrorDetails, _Mapping]] = ..., job_id: _Optional[str] = ...) -> None: ...

class EvaluationTask(_message.Message):
    __slots__ = ("evaluation_id",)
    EVALUATION_ID_FIELD_NUMBER: _ClassVar[int]
    evaluation_id: str
    def __init__(self, evaluation_id: _Optional[str] = ...) -> None: ...
