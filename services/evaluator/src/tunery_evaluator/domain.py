"""The evaluator's domain objects: plain typed dataclasses, no protobuf (convert.py translates at the edge).

Field names follow the proto messages (tunery.evaluator.v1), so the JSON kept in the store reads like the proto's
JSON. Proto3 ``optional`` fields that are unset are ``None``. Answers and grader verdicts reuse the grader protocol's
dataclasses (graders/base.py) so a grader sees exactly what is stored.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, Protocol

from tunery_evaluator.graders.base import Answer, Item

State = Literal["queued", "running", "succeeded", "failed", "cancelled"]
TERMINAL: frozenset[str] = frozenset({"succeeded", "failed", "cancelled"})
DEFAULT_MAX_TOKENS = 256
DEFAULT_CONCURRENCY = 4


def now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class ModelRef:
    model: str
    base_url: str = ""
    api_key: str = ""
    label: str = ""

    @property
    def name(self) -> str:
        """How results, summaries and graders name this model."""
        return self.label or self.model


@dataclass(frozen=True, slots=True)
class GenerationConfig:
    temperature: float | None = None
    max_tokens: int = 0
    seed: int | None = None
    stop: tuple[str, ...] = ()
    concurrency: int = 0
    top_p: float | None = None

    def resolved_temperature(self) -> float:
        return 0.0 if self.temperature is None else self.temperature

    def resolved_max_tokens(self) -> int:
        return self.max_tokens or DEFAULT_MAX_TOKENS

    def resolved_concurrency(self, default: int = DEFAULT_CONCURRENCY) -> int:
        return self.concurrency or default


@dataclass(frozen=True, slots=True)
class DatasetVersionRef:
    dataset: str = ""
    version: int = 0


@dataclass(frozen=True, slots=True)
class EvaluationData:
    dataset_version: DatasetVersionRef | None = None
    job_id: str = ""
    limit: int = 0


@dataclass(frozen=True, slots=True)
class GraderSpec:
    type: str
    name: str = ""
    config: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class EvaluationSpec:
    models: tuple[ModelRef, ...]
    data: EvaluationData
    graders: tuple[GraderSpec, ...] = ()
    generation: GenerationConfig = GenerationConfig()
    display_name: str = ""
    metadata: dict[str, str] = field(default_factory=dict)
    seed: int = 0
    idempotency_key: str = ""


@dataclass(frozen=True, slots=True)
class ErrorInfo:
    code: str
    message: str
    field: str = ""


@dataclass(slots=True)
class GraderSummary:
    grader: str
    model: str
    mean: float
    ci_low: float
    ci_high: float
    pass_rate: float | None
    count: int
    errored: int
    higher_is_better: bool
    extra: dict[str, float] = field(default_factory=dict)


@dataclass(slots=True)
class PairwiseSummary:
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


@dataclass(slots=True)
class Summary:
    graders: list[GraderSummary] = field(default_factory=list)
    pairs: list[PairwiseSummary] = field(default_factory=list)
    model_errors: dict[str, int] = field(default_factory=dict)


@dataclass(slots=True)
class Evaluation:
    id: str
    spec: EvaluationSpec
    state: State
    create_time: datetime
    start_time: datetime | None = None
    end_time: datetime | None = None
    error: ErrorInfo | None = None
    total_examples: int = 0
    finished_examples: int = 0
    errored_examples: int = 0
    summary: Summary | None = None
    resolved_data: DatasetVersionRef | None = None
    attempts: int = 0
    job_id: str = ""


@dataclass(frozen=True, slots=True)
class Grade:
    grader: str
    model: str
    score: float | None = None
    passed: bool | None = None
    label: str = ""
    rationale: str = ""
    error: str = ""
    error_message: str = ""
    against: str = ""


@dataclass(slots=True)
class ExampleResult:
    evaluation_id: str
    index: int
    example_id: str
    messages: list[dict[str, Any]]
    reference: str
    answers: list[Answer] = field(default_factory=list)
    grades: list[Grade] = field(default_factory=list)
    sequence: int = 0
    finish_time: datetime | None = None

    @property
    def errored(self) -> bool:
        return any(a.error for a in self.answers) or any(g.error for g in self.grades)


@dataclass(slots=True)
class GraderInfo:
    type: str
    description: str
    config_schema: dict[str, Any]
    higher_is_better: bool
    pairwise: bool
    package: str
    needs_reference: bool


# ---- what the service needs from other services (upstream.py implements them over gRPC) ------------------------
@dataclass(frozen=True, slots=True)
class VersionInfo:
    dataset_id: str
    dataset_name: str
    number: int
    example_count: int


@dataclass(frozen=True, slots=True)
class JobData:
    """Where a training job's held-out examples are: a validation version, or a split of its training version."""

    job_id: str
    training: DatasetVersionRef
    validation: DatasetVersionRef | None
    validation_split: float
    seed: int


class DatasetClient(Protocol):
    async def get_version(self, dataset: str, version: int) -> VersionInfo: ...

    async def export(self, dataset: str, version: int) -> list[dict[str, Any]]: ...

    async def set_reference(self, dataset: str, version: int, reference: str, add: bool = True) -> None: ...


class TrainerClient(Protocol):
    async def job_data(self, job_id: str) -> JobData: ...


# ---- JSON of the store -------------------------------------------------------------------------------------------
def to_json(obj: Any) -> Any:
    """A dataclass tree as JSON-ready values (tuples become lists)."""
    return dataclasses.asdict(obj)


def spec_from_json(d: dict[str, Any]) -> EvaluationSpec:
    data = d["data"]
    ver = data.get("dataset_version")
    gen = d.get("generation") or {}
    return EvaluationSpec(
        models=tuple(ModelRef(**m) for m in d["models"]),
        data=EvaluationData(DatasetVersionRef(**ver) if ver else None, data.get("job_id", ""), data.get("limit", 0)),
        graders=tuple(GraderSpec(g["type"], g.get("name", ""), dict(g.get("config") or {})) for g in d["graders"]),
        generation=GenerationConfig(**{**gen, "stop": tuple(gen.get("stop") or ())}),
        display_name=d.get("display_name", ""),
        metadata=dict(d.get("metadata") or {}),
        seed=int(d.get("seed", 0)),
        idempotency_key=d.get("idempotency_key", ""),
    )


def summary_from_json(d: dict[str, Any]) -> Summary:
    return Summary(
        graders=[GraderSummary(**g) for g in d.get("graders", [])],
        pairs=[PairwiseSummary(**p) for p in d.get("pairs", [])],
        model_errors={k: int(v) for k, v in (d.get("model_errors") or {}).items()},
    )


def result_payload(r: ExampleResult) -> dict[str, Any]:
    return {"answers": [dataclasses.asdict(a) for a in r.answers], "grades": [dataclasses.asdict(g) for g in r.grades]}


def answers_grades_from_json(d: dict[str, Any]) -> tuple[list[Answer], list[Grade]]:
    return [Answer(**a) for a in d.get("answers", [])], [Grade(**g) for g in d.get("grades", [])]


def item_of(index: int, example: dict[str, Any], example_id: str = "") -> Item:
    """An example as the models see it: its messages without the last assistant turn, which is the reference.

    Prompt/completion examples become one user message (the completion is the reference); preference examples give
    their input messages and the preferred answer."""
    if "input" in example and "preferred_output" in example:
        preferred = list(example.get("preferred_output") or [])
        ref = str(preferred[-1].get("content") or "") if preferred else ""
        return Item(index, list(example["input"].get("messages") or []), ref, example_id)
    if "prompt" in example and "messages" not in example:
        prompt = [{"role": "user", "content": str(example.get("prompt") or "")}]
        return Item(index, prompt, str(example.get("completion") or ""), example_id)
    messages = list(example.get("messages") or [])
    reference = ""
    if messages and messages[-1].get("role") == "assistant":
        reference = str(messages[-1].get("content") or "")
        messages = messages[:-1]
    return Item(index=index, messages=messages, reference=reference, example_id=example_id)
