import datetime

from google.protobuf import struct_pb2 as _struct_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from tunery.common.v1 import common_pb2 as _common_pb2
from tunery.evaluator.v1 import evaluator_pb2 as _evaluator_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Method(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    METHOD_UNSPECIFIED: _ClassVar[Method]
    METHOD_SFT: _ClassVar[Method]
    METHOD_DPO: _ClassVar[Method]
METHOD_UNSPECIFIED: Method
METHOD_SFT: Method
METHOD_DPO: Method

class DatasetRef(_message.Message):
    __slots__ = ("dataset", "version")
    DATASET_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    dataset: str
    version: int
    def __init__(self, dataset: _Optional[str] = ..., version: _Optional[int] = ...) -> None: ...

class Hyperparameters(_message.Message):
    __slots__ = ("n_epochs", "batch_size", "learning_rate", "learning_rate_multiplier", "gradient_accumulation_steps", "warmup_ratio", "weight_decay")
    N_EPOCHS_FIELD_NUMBER: _ClassVar[int]
    BATCH_SIZE_FIELD_NUMBER: _ClassVar[int]
    LEARNING_RATE_FIELD_NUMBER: _ClassVar[int]
    LEARNING_RATE_MULTIPLIER_FIELD_NUMBER: _ClassVar[int]
    GRADIENT_ACCUMULATION_STEPS_FIELD_NUMBER: _ClassVar[int]
    WARMUP_RATIO_FIELD_NUMBER: _ClassVar[int]
    WEIGHT_DECAY_FIELD_NUMBER: _ClassVar[int]
    n_epochs: int
    batch_size: int
    learning_rate: float
    learning_rate_multiplier: float
    gradient_accumulation_steps: int
    warmup_ratio: float
    weight_decay: float
    def __init__(self, n_epochs: _Optional[int] = ..., batch_size: _Optional[int] = ..., learning_rate: _Optional[float] = ..., learning_rate_multiplier: _Optional[float] = ..., gradient_accumulation_steps: _Optional[int] = ..., warmup_ratio: _Optional[float] = ..., weight_decay: _Optional[float] = ...) -> None: ...

class LoraConfig(_message.Message):
    __slots__ = ("rank", "alpha", "dropout", "target_modules")
    RANK_FIELD_NUMBER: _ClassVar[int]
    ALPHA_FIELD_NUMBER: _ClassVar[int]
    DROPOUT_FIELD_NUMBER: _ClassVar[int]
    TARGET_MODULES_FIELD_NUMBER: _ClassVar[int]
    rank: int
    alpha: int
    dropout: float
    target_modules: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, rank: _Optional[int] = ..., alpha: _Optional[int] = ..., dropout: _Optional[float] = ..., target_modules: _Optional[_Iterable[str]] = ...) -> None: ...

class JobSpec(_message.Message):
    __slots__ = ("base_model", "training_data", "validation_data", "validation_split", "method", "hyperparameters", "lora", "max_seq_length", "seed", "suffix", "backend", "backend_config", "checkpoint_every_steps", "eval_every_steps", "idempotency_key", "evaluation")
    BASE_MODEL_FIELD_NUMBER: _ClassVar[int]
    TRAINING_DATA_FIELD_NUMBER: _ClassVar[int]
    VALIDATION_DATA_FIELD_NUMBER: _ClassVar[int]
    VALIDATION_SPLIT_FIELD_NUMBER: _ClassVar[int]
    METHOD_FIELD_NUMBER: _ClassVar[int]
    HYPERPARAMETERS_FIELD_NUMBER: _ClassVar[int]
    LORA_FIELD_NUMBER: _ClassVar[int]
    MAX_SEQ_LENGTH_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    SUFFIX_FIELD_NUMBER: _ClassVar[int]
    BACKEND_FIELD_NUMBER: _ClassVar[int]
    BACKEND_CONFIG_FIELD_NUMBER: _ClassVar[int]
    CHECKPOINT_EVERY_STEPS_FIELD_NUMBER: _ClassVar[int]
    EVAL_EVERY_STEPS_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    EVALUATION_FIELD_NUMBER: _ClassVar[int]
    base_model: str
    training_data: DatasetRef
    validation_data: DatasetRef
    validation_split: float
    method: Method
    hyperparameters: Hyperparameters
    lora: LoraConfig
    max_seq_length: int
    seed: int
    suffix: str
    backend: str
    backend_config: _struct_pb2.Struct
    checkpoint_every_steps: int
    eval_every_steps: int
    idempotency_key: str
    evaluation: JobEvaluationSpec
    def __init__(self, base_model: _Optional[str] = ..., training_data: _Optional[_Union[DatasetRef, _Mapping]] = ..., validation_data: _Optional[_Union[DatasetRef, _Mapping]] = ..., validation_split: _Optional[float] = ..., method: _Optional[_Union[Method, str]] = ..., hyperparameters: _Optional[_Union[Hyperparameters, _Mapping]] = ..., lora: _Optional[_Union[LoraConfig, _Mapping]] = ..., max_seq_length: _Optional[int] = ..., seed: _Optional[int] = ..., suffix: _Optional[str] = ..., backend: _Optional[str] = ..., backend_config: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., checkpoint_every_steps: _Optional[int] = ..., eval_every_steps: _Optional[int] = ..., idempotency_key: _Optional[str] = ..., evaluation: _Optional[_Union[JobEvaluationSpec, _Mapping]] = ...) -> None: ...

class JobEvaluationSpec(_message.Message):
    __slots__ = ("graders", "generation", "data", "extra_models", "skip_base")
    GRADERS_FIELD_NUMBER: _ClassVar[int]
    GENERATION_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    EXTRA_MODELS_FIELD_NUMBER: _ClassVar[int]
    SKIP_BASE_FIELD_NUMBER: _ClassVar[int]
    graders: _containers.RepeatedCompositeFieldContainer[_evaluator_pb2.GraderSpec]
    generation: _evaluator_pb2.GenerationConfig
    data: _evaluator_pb2.EvaluationData
    extra_models: _containers.RepeatedCompositeFieldContainer[_evaluator_pb2.ModelRef]
    skip_base: bool
    def __init__(self, graders: _Optional[_Iterable[_Union[_evaluator_pb2.GraderSpec, _Mapping]]] = ..., generation: _Optional[_Union[_evaluator_pb2.GenerationConfig, _Mapping]] = ..., data: _Optional[_Union[_evaluator_pb2.EvaluationData, _Mapping]] = ..., extra_models: _Optional[_Iterable[_Union[_evaluator_pb2.ModelRef, _Mapping]]] = ..., skip_base: _Optional[bool] = ...) -> None: ...

class JobEvaluation(_message.Message):
    __slots__ = ("evaluation_id", "state", "summary", "error")
    EVALUATION_ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    SUMMARY_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    evaluation_id: str
    state: _common_pb2.JobState
    summary: _evaluator_pb2.EvaluationSummary
    error: _common_pb2.ErrorDetails
    def __init__(self, evaluation_id: _Optional[str] = ..., state: _Optional[_Union[_common_pb2.JobState, str]] = ..., summary: _Optional[_Union[_evaluator_pb2.EvaluationSummary, _Mapping]] = ..., error: _Optional[_Union[_common_pb2.ErrorDetails, _Mapping]] = ...) -> None: ...

class JobError(_message.Message):
    __slots__ = ("code", "message", "param")
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    PARAM_FIELD_NUMBER: _ClassVar[int]
    code: str
    message: str
    param: str
    def __init__(self, code: _Optional[str] = ..., message: _Optional[str] = ..., param: _Optional[str] = ...) -> None: ...

class Metrics(_message.Message):
    __slots__ = ("train_loss", "valid_loss", "valid_token_accuracy", "tokens_per_second")
    TRAIN_LOSS_FIELD_NUMBER: _ClassVar[int]
    VALID_LOSS_FIELD_NUMBER: _ClassVar[int]
    VALID_TOKEN_ACCURACY_FIELD_NUMBER: _ClassVar[int]
    TOKENS_PER_SECOND_FIELD_NUMBER: _ClassVar[int]
    train_loss: float
    valid_loss: float
    valid_token_accuracy: float
    tokens_per_second: float
    def __init__(self, train_loss: _Optional[float] = ..., valid_loss: _Optional[float] = ..., valid_token_accuracy: _Optional[float] = ..., tokens_per_second: _Optional[float] = ...) -> None: ...

class Job(_message.Message):
    __slots__ = ("id", "spec", "state", "fine_tuned_model", "error", "create_time", "start_time", "end_time", "resolved_hyperparameters", "step", "total_steps", "epoch", "trained_tokens", "metrics", "adapter_path", "attempts", "worker", "eta_seconds", "evaluation")
    ID_FIELD_NUMBER: _ClassVar[int]
    SPEC_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    FINE_TUNED_MODEL_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    RESOLVED_HYPERPARAMETERS_FIELD_NUMBER: _ClassVar[int]
    STEP_FIELD_NUMBER: _ClassVar[int]
    TOTAL_STEPS_FIELD_NUMBER: _ClassVar[int]
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    TRAINED_TOKENS_FIELD_NUMBER: _ClassVar[int]
    METRICS_FIELD_NUMBER: _ClassVar[int]
    ADAPTER_PATH_FIELD_NUMBER: _ClassVar[int]
    ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    WORKER_FIELD_NUMBER: _ClassVar[int]
    ETA_SECONDS_FIELD_NUMBER: _ClassVar[int]
    EVALUATION_FIELD_NUMBER: _ClassVar[int]
    id: str
    spec: JobSpec
    state: _common_pb2.JobState
    fine_tuned_model: str
    error: JobError
    create_time: _timestamp_pb2.Timestamp
    start_time: _timestamp_pb2.Timestamp
    end_time: _timestamp_pb2.Timestamp
    resolved_hyperparameters: Hyperparameters
    step: int
    total_steps: int
    epoch: float
    trained_tokens: int
    metrics: Metrics
    adapter_path: str
    attempts: int
    worker: str
    eta_seconds: float
    evaluation: JobEvaluation
    def __init__(self, id: _Optional[str] = ..., spec: _Optional[_Union[JobSpec, _Mapping]] = ..., state: _Optional[_Union[_common_pb2.JobState, str]] = ..., fine_tuned_model: _Optional[str] = ..., error: _Optional[_Union[JobError, _Mapping]] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., resolved_hyperparameters: _Optional[_Union[Hyperparameters, _Mapping]] = ..., step: _Optional[int] = ..., total_steps: _Optional[int] = ..., epoch: _Optional[float] = ..., trained_tokens: _Optional[int] = ..., metrics: _Optional[_Union[Metrics, _Mapping]] = ..., adapter_path: _Optional[str] = ..., attempts: _Optional[int] = ..., worker: _Optional[str] = ..., eta_seconds: _Optional[float] = ..., evaluation: _Optional[_Union[JobEvaluation, _Mapping]] = ...) -> None: ...

class CreateJobRequest(_message.Message):
    __slots__ = ("spec",)
    SPEC_FIELD_NUMBER: _ClassVar[int]
    spec: JobSpec
    def __init__(self, spec: _Optional[_Union[JobSpec, _Mapping]] = ...) -> None: ...

class CreateJobResponse(_message.Message):
    __slots__ = ("job", "existing")
    JOB_FIELD_NUMBER: _ClassVar[int]
    EXISTING_FIELD_NUMBER: _ClassVar[int]
    job: Job
    existing: bool
    def __init__(self, job: _Optional[_Union[Job, _Mapping]] = ..., existing: _Optional[bool] = ...) -> None: ...

class GetJobRequest(_message.Message):
    __slots__ = ("job_id",)
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    def __init__(self, job_id: _Optional[str] = ...) -> None: ...

class GetJobResponse(_message.Message):
    __slots__ = ("job",)
    JOB_FIELD_NUMBER: _ClassVar[int]
    job: Job
    def __init__(self, job: _Optional[_Union[Job, _Mapping]] = ...) -> None: ...

class ListJobsRequest(_message.Message):
    __slots__ = ("page", "state", "base_model", "dataset")
    PAGE_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    BASE_MODEL_FIELD_NUMBER: _ClassVar[int]
    DATASET_FIELD_NUMBER: _ClassVar[int]
    page: _common_pb2.PageRequest
    state: _common_pb2.JobState
    base_model: str
    dataset: str
    def __init__(self, page: _Optional[_Union[_common_pb2.PageRequest, _Mapping]] = ..., state: _Optional[_Union[_common_pb2.JobState, str]] = ..., base_model: _Optional[str] = ..., dataset: _Optional[str] = ...) -> None: ...

class ListJobsResponse(_message.Message):
    __slots__ = ("jobs", "page")
    JOBS_FIELD_NUMBER: _ClassVar[int]
    PAGE_FIELD_NUMBER: _ClassVar[int]
    jobs: _containers.RepeatedCompositeFieldContainer[Job]
    page: _common_pb2.PageResponse
    def __init__(self, jobs: _Optional[_Iterable[_Union[Job, _Mapping]]] = ..., page: _Optional[_Union[_common_pb2.PageResponse, _Mapping]] = ...) -> None: ...

class CancelJobRequest(_message.Message):
    __slots__ = ("job_id",)
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    def __init__(self, job_id: _Optional[str] = ...) -> None: ...

class CancelJobResponse(_message.Message):
    __slots__ = ("job",)
    JOB_FIELD_NUMBER: _ClassVar[int]
    job: Job
    def __init__(self, job: _Optional[_Union[Job, _Mapping]] = ...) -> None: ...

class PauseJobRequest(_message.Message):
    __slots__ = ("job_id",)
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    def __init__(self, job_id: _Optional[str] = ...) -> None: ...

class PauseJobResponse(_message.Message):
    __slots__ = ("job",)
    JOB_FIELD_NUMBER: _ClassVar[int]
    job: Job
    def __init__(self, job: _Optional[_Union[Job, _Mapping]] = ...) -> None: ...

class ResumeJobRequest(_message.Message):
    __slots__ = ("job_id",)
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    def __init__(self, job_id: _Optional[str] = ...) -> None: ...

class ResumeJobResponse(_message.Message):
    __slots__ = ("job",)
    JOB_FIELD_NUMBER: _ClassVar[int]
    job: Job
    def __init__(self, job: _Optional[_Union[Job, _Mapping]] = ...) -> None: ...

class StateChange(_message.Message):
    __slots__ = ("from_state", "to_state", "reason", "error", "adapter_path", "metrics", "trained_tokens", "worker", "fine_tuned_model", "base_model")
    FROM_STATE_FIELD_NUMBER: _ClassVar[int]
    TO_STATE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    ADAPTER_PATH_FIELD_NUMBER: _ClassVar[int]
    METRICS_FIELD_NUMBER: _ClassVar[int]
    TRAINED_TOKENS_FIELD_NUMBER: _ClassVar[int]
    WORKER_FIELD_NUMBER: _ClassVar[int]
    FINE_TUNED_MODEL_FIELD_NUMBER: _ClassVar[int]
    BASE_MODEL_FIELD_NUMBER: _ClassVar[int]
    from_state: _common_pb2.JobState
    to_state: _common_pb2.JobState
    reason: str
    error: JobError
    adapter_path: str
    metrics: Metrics
    trained_tokens: int
    worker: str
    fine_tuned_model: str
    base_model: str
    def __init__(self, from_state: _Optional[_Union[_common_pb2.JobState, str]] = ..., to_state: _Optional[_Union[_common_pb2.JobState, str]] = ..., reason: _Optional[str] = ..., error: _Optional[_Union[JobError, _Mapping]] = ..., adapter_path: _Optional[str] = ..., metrics: _Optional[_Union[Metrics, _Mapping]] = ..., trained_tokens: _Optional[int] = ..., worker: _Optional[str] = ..., fine_tuned_model: _Optional[str] = ..., base_model: _Optional[str] = ...) -> None: ...

class StepLog(_message.Message):
    __slots__ = ("step", "total_steps", "epoch", "train_loss", "learning_rate", "tokens_per_second", "eta_seconds", "tokens")
    STEP_FIELD_NUMBER: _ClassVar[int]
    TOTAL_STEPS_FIELD_NUMBER: _ClassVar[int]
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    TRAIN_LOSS_FIELD_NUMBER: _ClassVar[int]
    LEARNING_RATE_FIELD_NUMBER: _ClassVar[int]
    TOKENS_PER_SECOND_FIELD_NUMBER: _ClassVar[int]
    ETA_SECONDS_FIELD_NUMBER: _ClassVar[int]
    TOKENS_FIELD_NUMBER: _ClassVar[int]
    step: int
    total_steps: int
    epoch: float
    train_loss: float
    learning_rate: float
    tokens_per_second: float
    eta_seconds: float
    tokens: int
    def __init__(self, step: _Optional[int] = ..., total_steps: _Optional[int] = ..., epoch: _Optional[float] = ..., train_loss: _Optional[float] = ..., learning_rate: _Optional[float] = ..., tokens_per_second: _Optional[float] = ..., eta_seconds: _Optional[float] = ..., tokens: _Optional[int] = ...) -> None: ...

class Checkpoint(_message.Message):
    __slots__ = ("step", "epoch", "path", "create_time")
    STEP_FIELD_NUMBER: _ClassVar[int]
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    step: int
    epoch: float
    path: str
    create_time: _timestamp_pb2.Timestamp
    def __init__(self, step: _Optional[int] = ..., epoch: _Optional[float] = ..., path: _Optional[str] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class Validation(_message.Message):
    __slots__ = ("step", "valid_loss", "valid_token_accuracy")
    STEP_FIELD_NUMBER: _ClassVar[int]
    VALID_LOSS_FIELD_NUMBER: _ClassVar[int]
    VALID_TOKEN_ACCURACY_FIELD_NUMBER: _ClassVar[int]
    step: int
    valid_loss: float
    valid_token_accuracy: float
    def __init__(self, step: _Optional[int] = ..., valid_loss: _Optional[float] = ..., valid_token_accuracy: _Optional[float] = ...) -> None: ...

class JobEvent(_message.Message):
    __slots__ = ("job_id", "sequence", "time", "level", "message", "state_change", "step", "checkpoint", "validation", "evaluation")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    LEVEL_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    STATE_CHANGE_FIELD_NUMBER: _ClassVar[int]
    STEP_FIELD_NUMBER: _ClassVar[int]
    CHECKPOINT_FIELD_NUMBER: _ClassVar[int]
    VALIDATION_FIELD_NUMBER: _ClassVar[int]
    EVALUATION_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    sequence: int
    time: _timestamp_pb2.Timestamp
    level: str
    message: str
    state_change: StateChange
    step: StepLog
    checkpoint: Checkpoint
    validation: Validation
    evaluation: JobEvaluation
    def __init__(self, job_id: _Optional[str] = ..., sequence: _Optional[int] = ..., time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., level: _Optional[str] = ..., message: _Optional[str] = ..., state_change: _Optional[_Union[StateChange, _Mapping]] = ..., step: _Optional[_Union[StepLog, _Mapping]] = ..., checkpoint: _Optional[_Union[Checkpoint, _Mapping]] = ..., validation: _Optional[_Union[Validation, _Mapping]] = ..., evaluation: _Optional[_Union[JobEvaluation, _Mapping]] = ...) -> None: ...

class StreamJobEventsRequest(_message.Message):
    __slots__ = ("job_id", "after_sequence", "no_follow")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    AFTER_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    NO_FOLLOW_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    after_sequence: int
    no_follow: bool
    def __init__(self, job_id: _Optional[str] = ..., after_sequence: _Optional[int] = ..., no_follow: _Optional[bool] = ...) -> None: ...

class StreamJobEventsResponse(_message.Message):
    __slots__ = ("event",)
    EVENT_FIELD_NUMBER: _ClassVar[int]
    event: JobEvent
    def __init__(self, event: _Optional[_Union[JobEvent, _Mapping]] = ...) -> None: ...

class ListCheckpointsRequest(_message.Message):
    __slots__ = ("job_id",)
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    def __init__(self, job_id: _Optional[str] = ...) -> None: ...

class ListCheckpointsResponse(_message.Message):
    __slots__ = ("checkpoints",)
    CHECKPOINTS_FIELD_NUMBER: _ClassVar[int]
    checkpoints: _containers.RepeatedCompositeFieldContainer[Checkpoint]
    def __init__(self, checkpoints: _Optional[_Iterable[_Union[Checkpoint, _Mapping]]] = ...) -> None: ...

class ConfigField(_message.Message):
    __slots__ = ("name", "type", "default_json", "help")
    NAME_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_JSON_FIELD_NUMBER: _ClassVar[int]
    HELP_FIELD_NUMBER: _ClassVar[int]
    name: str
    type: str
    default_json: str
    help: str
    def __init__(self, name: _Optional[str] = ..., type: _Optional[str] = ..., default_json: _Optional[str] = ..., help: _Optional[str] = ...) -> None: ...

class Backend(_message.Message):
    __slots__ = ("name", "description", "methods", "config", "provided_by")
    NAME_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    METHODS_FIELD_NUMBER: _ClassVar[int]
    CONFIG_FIELD_NUMBER: _ClassVar[int]
    PROVIDED_BY_FIELD_NUMBER: _ClassVar[int]
    name: str
    description: str
    methods: _containers.RepeatedScalarFieldContainer[Method]
    config: _containers.RepeatedCompositeFieldContainer[ConfigField]
    provided_by: str
    def __init__(self, name: _Optional[str] = ..., description: _Optional[str] = ..., methods: _Optional[_Iterable[_Union[Method, str]]] = ..., config: _Optional[_Iterable[_Union[ConfigField, _Mapping]]] = ..., provided_by: _Optional[str] = ...) -> None: ...

class ListBackendsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListBackendsResponse(_message.Message):
    __slots__ = ("backends",)
    BACKENDS_FIELD_NUMBER: _ClassVar[int]
    backends: _containers.RepeatedCompositeFieldContainer[Backend]
    def __init__(self, backends: _Optional[_Iterable[_Union[Backend, _Mapping]]] = ...) -> None: ...

class BaseModel(_message.Message):
    __slots__ = ("name", "description", "context_length", "source", "default")
    NAME_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    CONTEXT_LENGTH_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_FIELD_NUMBER: _ClassVar[int]
    name: str
    description: str
    context_length: int
    source: str
    default: bool
    def __init__(self, name: _Optional[str] = ..., description: _Optional[str] = ..., context_length: _Optional[int] = ..., source: _Optional[str] = ..., default: _Optional[bool] = ...) -> None: ...

class ListBaseModelsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListBaseModelsResponse(_message.Message):
    __slots__ = ("models",)
    MODELS_FIELD_NUMBER: _ClassVar[int]
    models: _containers.RepeatedCompositeFieldContainer[BaseModel]
    def __init__(self, models: _Optional[_Iterable[_Union[BaseModel, _Mapping]]] = ...) -> None: ...

class TrainTask(_message.Message):
    __slots__ = ("job", "generation", "base_model", "train_file", "validation_file", "train_examples", "validation_examples", "max_seq_length")
    JOB_FIELD_NUMBER: _ClassVar[int]
    GENERATION_FIELD_NUMBER: _ClassVar[int]
    BASE_MODEL_FIELD_NUMBER: _ClassVar[int]
    TRAIN_FILE_FIELD_NUMBER: _ClassVar[int]
    VALIDATION_FILE_FIELD_NUMBER: _ClassVar[int]
    TRAIN_EXAMPLES_FIELD_NUMBER: _ClassVar[int]
    VALIDATION_EXAMPLES_FIELD_NUMBER: _ClassVar[int]
    MAX_SEQ_LENGTH_FIELD_NUMBER: _ClassVar[int]
    job: Job
    generation: int
    base_model: str
    train_file: str
    validation_file: str
    train_examples: int
    validation_examples: int
    max_seq_length: int
    def __init__(self, job: _Optional[_Union[Job, _Mapping]] = ..., generation: _Optional[int] = ..., base_model: _Optional[str] = ..., train_file: _Optional[str] = ..., validation_file: _Optional[str] = ..., train_examples: _Optional[int] = ..., validation_examples: _Optional[int] = ..., max_seq_length: _Optional[int] = ...) -> None: ...
