"""The trainer's domain objects: plain typed dataclasses, no protobuf (convert.py and wire.py translate at the edge).

Field names are those of the proto messages (tunery.trainer.v1), so their JSON in the store reads like the proto's
JSON. "Unset" (proto3 `optional`) is `None`; "auto" hyperparameters are resolved into `ResolvedHyperparameters`
when a job is created.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, Protocol

from tunery_trainer.states import State

Method = Literal["sft", "dpo"]
Level = Literal["info", "warning", "error"]


def now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class DatasetRef:
    dataset: str = ""
    version: int = 0


@dataclass(frozen=True, slots=True)
class Hyperparameters:
    """As asked for; None means "auto" (chosen from the dataset size when the job is created)."""

    n_epochs: int | None = None
    batch_size: int | None = None
    learning_rate: float | None = None
    learning_rate_multiplier: float | None = None
    gradient_accumulation_steps: int | None = None
    warmup_ratio: float | None = None
    weight_decay: float | None = None


@dataclass(frozen=True, slots=True)
class ResolvedHyperparameters:
    """What a job trains with: every "auto" replaced by a number."""

    n_epochs: int = 0
    batch_size: int = 0
    learning_rate: float = 0.0
    gradient_accumulation_steps: int = 1
    warmup_ratio: float = 0.0
    weight_decay: float = 0.0
    # Only when the caller gave one (it scaled the automatic learning rate).
    learning_rate_multiplier: float | None = None


@dataclass(frozen=True, slots=True)
class LoraSettings:
    """As asked for; None means the default (rank 16, alpha 2 * rank, dropout 0.05, every projection)."""

    rank: int | None = None
    alpha: int | None = None
    dropout: float | None = None
    target_modules: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class JobSpec:
    training_data: DatasetRef = field(default_factory=DatasetRef)
    # Catalog name, local folder or hub id; empty means the default model.
    base_model: str = ""
    validation_data: DatasetRef | None = None
    validation_split: float = 0.0
    method: Method = "sft"
    hyperparameters: Hyperparameters = field(default_factory=Hyperparameters)
    lora: LoraSettings = field(default_factory=LoraSettings)
    # 0 means min(2048, the model's context).
    max_seq_length: int = 0
    seed: int = 0
    suffix: str = ""
    # Empty means the default backend.
    backend: str = ""
    backend_config: dict[str, Any] = field(default_factory=dict)
    checkpoint_every_steps: int = 0
    eval_every_steps: int = 0
    idempotency_key: str = ""
    # Evaluate the fine-tuned model (against its base) once the job succeeds; None: no evaluation.
    evaluation: JobEvaluationSpec | None = None


# ---- the evaluation after a job (the evaluator's messages, as far as the trainer passes them on) ------------------
@dataclass(frozen=True, slots=True)
class GraderSpec:
    type: str
    name: str = ""
    config: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class GenerationConfig:
    """None / 0 mean the evaluator's defaults (greedy, 256 tokens, 4 in flight)."""

    temperature: float | None = None
    max_tokens: int = 0
    seed: int | None = None
    stop: tuple[str, ...] = ()
    concurrency: int = 0
    top_p: float | None = None


@dataclass(frozen=True, slots=True)
class EvaluationData:
    """A frozen dataset version, or a job's validation part (job_id); limit 0 means every example."""

    dataset: str = ""
    version: int = 0
    job_id: str = ""
    limit: int = 0


@dataclass(frozen=True, slots=True)
class ModelRef:
    model: str
    base_url: str = ""
    # Kept with the job so the evaluation can reach the endpoint; never returned (convert.py sends api_key_set).
    api_key: str = ""
    label: str = ""


@dataclass(frozen=True, slots=True)
class JobEvaluationSpec:
    graders: tuple[GraderSpec, ...] = ()
    generation: GenerationConfig = field(default_factory=GenerationConfig)
    # None: the job's validation version or split.
    data: EvaluationData | None = None
    extra_models: tuple[ModelRef, ...] = ()
    skip_base: bool = False


EvaluationState = Literal["", "queued", "running", "succeeded", "failed", "cancelled"]


@dataclass(frozen=True, slots=True)
class JobEvaluation:
    """The evaluation a succeeded job asked for, as far as it has got. state "" with no id: not created yet.
    `summary` is the evaluator's EvaluationSummary as JSON (proto field names): the trainer only passes it on."""

    evaluation_id: str = ""
    state: EvaluationState = ""
    summary: dict[str, Any] | None = None
    error: JobError | None = None


@dataclass(frozen=True, slots=True)
class EvaluationRequest:
    """What the trainer asks the evaluator for when a job has succeeded."""

    job_id: str
    models: tuple[ModelRef, ...]
    data: EvaluationData
    graders: tuple[GraderSpec, ...]
    generation: GenerationConfig
    display_name: str
    idempotency_key: str
    metadata: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class GraderInfo:
    type: str
    config_schema: dict[str, Any] = field(default_factory=dict)
    needs_reference: bool = False


@dataclass(frozen=True, slots=True)
class JobError:
    code: str
    message: str
    # The spec field at fault, when there is one.
    param: str = ""


@dataclass(frozen=True, slots=True)
class Metrics:
    train_loss: float = 0.0
    valid_loss: float = 0.0
    valid_token_accuracy: float = 0.0
    tokens_per_second: float = 0.0


@dataclass(frozen=True, slots=True)
class Job:
    """A job as stored: its (resolved) spec, where it is, and what it has produced so far."""

    id: str
    state: State
    spec: JobSpec
    hyperparameters: ResolvedHyperparameters
    base_model: str
    dataset_id: str
    dataset_version: int
    fine_tuned_model: str
    created_at: datetime
    idempotency_key: str | None = None
    error: JobError | None = None
    started_at: datetime | None = None
    ended_at: datetime | None = None
    step: int = 0
    total_steps: int = 0
    epoch: float = 0.0
    trained_tokens: int = 0
    metrics: Metrics = field(default_factory=Metrics)
    eta_seconds: float = 0.0
    adapter_path: str = ""
    attempts: int = 0
    worker: str = ""
    # Incremented by every (re)queue; a worker drops deliveries of older generations.
    generation: int = 0
    train_file: str = ""
    validation_file: str = ""
    train_examples: int = 0
    validation_examples: int = 0
    # Set once a succeeded job's evaluation was asked for (spec.evaluation).
    evaluation: JobEvaluation | None = None


# ---- events ----------------------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class StateChange:
    from_state: State | Literal[""]
    to_state: State
    reason: str = ""
    error: JobError | None = None
    # When a job succeeds: where the adapter is (artifact path), what it is called, what it was trained on.
    adapter_path: str = ""
    metrics: Metrics | None = None
    trained_tokens: int = 0
    fine_tuned_model: str = ""
    base_model: str = ""
    # When a worker starts (or resumes) the job.
    worker: str = ""


@dataclass(frozen=True, slots=True)
class StepLog:
    step: int
    total_steps: int
    epoch: float
    train_loss: float
    learning_rate: float
    tokens_per_second: float
    eta_seconds: float
    tokens: int


@dataclass(frozen=True, slots=True)
class Checkpoint:
    step: int
    epoch: float
    # Artifact path of the checkpoint folder.
    path: str
    create_time: datetime = field(default_factory=now)


@dataclass(frozen=True, slots=True)
class Validation:
    step: int
    valid_loss: float
    valid_token_accuracy: float


EventData = StateChange | StepLog | Checkpoint | Validation | JobEvaluation


@dataclass(frozen=True, slots=True)
class JobEvent:
    job_id: str
    message: str
    level: Level = "info"
    time: datetime = field(default_factory=now)
    # 1-based and gap-free per job; 0 until the store gives it one.
    sequence: int = 0
    data: EventData | None = None


def job_event(job_id: str, message: str, level: Level = "info", data: EventData | None = None) -> JobEvent:
    return JobEvent(job_id=job_id, message=message, level=level, data=data)


def state_event(job_id: str, old: State | Literal[""], new: State, reason: str, **change: Any) -> JobEvent:
    """The event of a state change; `change` fills the other StateChange fields (error, adapter_path, ...)."""
    level: Level = "error" if new == "failed" else "info"
    data = StateChange(from_state=old, to_state=new, reason=reason, **change)
    return job_event(job_id, f"{old or 'new'} -> {new}: {reason}", level, data)


# ---- the work queue --------------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class TrainTask:
    """One job for a worker; self-contained, so a worker needs only NATS and the shared artifact storage."""

    job_id: str
    spec: JobSpec
    hyperparameters: ResolvedHyperparameters
    generation: int = 0
    fine_tuned_model: str = ""
    # The catalog name or path; the plain-folder location is the worker's business.
    base_model: str = ""
    # Artifact paths of the JSONL snapshots the service exported.
    train_file: str = ""
    validation_file: str = ""
    train_examples: int = 0
    validation_examples: int = 0
    max_seq_length: int = 0


@dataclass(frozen=True, slots=True)
class ControlFlag:
    """What the workers should do with a job (a key-value entry per job, read between steps)."""

    action: Literal["run", "cancel", "pause"] = "run"
    generation: int = 0


# ---- catalog ---------------------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class ConfigField:
    name: str
    type: str
    default_json: str
    help: str


@dataclass(frozen=True, slots=True)
class BackendInfo:
    name: str
    description: str
    methods: tuple[str, ...]
    config: tuple[ConfigField, ...]
    provided_by: str


@dataclass(frozen=True, slots=True)
class BaseModelInfo:
    name: str
    description: str
    context_length: int
    source: Literal["gguf", "folder", "hub"]
    default: bool


# ---- what the domain needs from the outside ------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class DatasetInfo:
    id: str
    name: str


@dataclass(frozen=True, slots=True)
class DatasetVersion:
    dataset_id: str
    number: int
    example_count: int
    # "chat", "completion" or "preference".
    format: str


class DatasetClient(Protocol):
    """The dataset service as the trainer uses it. Errors are tunery.errors: NotFound, InvalidArgument and
    FailedPrecondition for what the caller asked, Unavailable when the service does not answer."""

    async def get_version(self, dataset: str, version: int) -> DatasetVersion: ...

    async def get_dataset(self, dataset: str) -> DatasetInfo: ...

    async def set_reference(self, dataset: str, version: int, reference: str, add: bool = True) -> None: ...

    def export(self, dataset: str, version: int) -> AsyncIterator[bytes]:
        """The version's examples as JSONL, in chunks."""
        ...


class WorkQueue(Protocol):
    """Where queued jobs wait for a worker, and the per-job control flags workers follow (NATS: queue.py)."""

    async def enqueue(self, task: TrainTask) -> None: ...

    async def set_control(self, job_id: str, flag: ControlFlag) -> None: ...


class EvaluatorClient(Protocol):
    """The evaluator service as the trainer uses it. Errors are tunery.errors: InvalidArgument / NotFound /
    FailedPrecondition for what was asked (a model the gateway does not serve yet: code "unknown_model"),
    Unavailable when the service does not answer."""

    async def list_graders(self) -> list[GraderInfo]: ...

    async def create(self, request: EvaluationRequest) -> JobEvaluation: ...

    async def get(self, evaluation_id: str) -> JobEvaluation: ...

    async def changed(self, evaluation_id: str, timeout: float) -> None:
        """Return when the evaluator announces news of the evaluation, or after `timeout` seconds."""
        ...

    def forget(self, evaluation_id: str) -> None:
        """The evaluation has ended: no more news needed."""
        ...


class EventSink(Protocol):
    """Where job events go (NATS); `source` tells the service's own events from the workers'."""

    source: str

    async def publish(self, event: JobEvent, event_id: str, *, attempts: int = 5) -> None: ...
