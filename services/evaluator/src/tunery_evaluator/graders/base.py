"""The grader protocol: what a grader plugin implements and what the runner gives it.

A grader is a class registered under the entry-point group ``tunery.eval_graders``. The runner builds one instance
per GraderSpec (``cls(config, context)``; the constructor checks the config and raises ``InvalidArgument`` naming
the field), then calls ``grade`` once per (example, model answer), or ``grade_pair`` once per (example, pair of
models) when ``pairwise`` is true. A grader never raises for a bad answer: it returns a ``GradeResult`` with
``error`` set ("unparseable_verdict", "invalid_json", …) and the run goes on. Plain Python only: no protobuf here.
"""

from __future__ import annotations

from abc import ABC
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol


@dataclass(frozen=True, slots=True)
class Item:
    """One example being evaluated."""

    index: int
    """0-based position in the evaluated data."""
    messages: list[dict[str, Any]]
    """The conversation the models are given (OpenAI chat shape), without the reference turn."""
    reference: str
    """The example's last assistant turn; empty when there is none (Compare without references)."""
    example_id: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Answer:
    """One model's answer to an item."""

    model: str
    """The model's label in this evaluation (ModelRef.label, defaulting to its name)."""
    content: str
    finish_reason: str = ""
    prompt_tokens: int = 0
    completion_tokens: int = 0
    latency_ms: float = 0.0
    error: str = ""
    """Empty when answered; a grader is not called for an answer with an error."""
    error_message: str = ""
    endpoint_model: str = ""
    """The model's name at its endpoint (ModelRef.model); empty when it is the label. What reference_loss scores."""


@dataclass(frozen=True, slots=True)
class GradeResult:
    score: float | None = None
    passed: bool | None = None
    label: str = ""
    rationale: str = ""
    error: str = ""
    """Empty when graded; otherwise a stable code such as "unparseable_verdict"."""
    error_message: str = ""


@dataclass(frozen=True, slots=True)
class PairResult:
    """A pairwise verdict: winner is "a", "b" or "tie" (empty with error set)."""

    winner: str = ""
    rationale: str = ""
    error: str = ""
    error_message: str = ""


class ChatModels(Protocol):
    """What a judge uses to call a model by name (a model the gateway serves, or an external one)."""

    async def chat(
        self, model: str, messages: list[dict[str, Any]], *, temperature: float = 0.0, max_tokens: int = 256,
        base_url: str = "", api_key: str = "",
    ) -> Answer: ...


class Scorer(Protocol):
    """Loss of a reference answer under a model (the gateway's ``POST /v1/score``)."""

    async def score(self, model: str, messages: list[dict[str, Any]], reference: str) -> dict[str, float]:
        """Returns at least {"loss": mean token loss, "tokens": number of scored tokens}."""
        ...


@dataclass(slots=True)
class GraderContext:
    """What the runner lends a grader: model access for judges and loss scoring, and the evaluation's seed."""

    models: ChatModels | None = None
    scorer: Scorer | None = None
    seed: int = 0


class Grader(ABC):
    """Base class of every grader. Subclasses set the class variables and implement grade (or grade_pair)."""

    name: ClassVar[str]
    description: ClassVar[str] = ""
    config_schema: ClassVar[dict[str, Any]] = {"type": "object"}
    """JSON Schema of the config (shown by ListGraders; the constructor checks it)."""
    higher_is_better: ClassVar[bool] = True
    pairwise: ClassVar[bool] = False
    needs_reference: ClassVar[bool] = False
    pass_threshold: ClassVar[float | None] = None
    """When set (or given as config "pass_threshold"), a score at or above it passes."""

    def __init__(self, config: dict[str, Any], context: GraderContext) -> None:
        self.config = config
        self.context = context

    async def grade(self, item: Item, answer: Answer) -> GradeResult:
        raise NotImplementedError(f"grader {self.name} is pairwise; use grade_pair")

    async def grade_pair(self, item: Item, a: Answer, b: Answer) -> PairResult:
        raise NotImplementedError(f"grader {self.name} is not pairwise")

    def aggregate_extra(self, results: list[GradeResult]) -> dict[str, float]:
        """Grader-specific aggregates for the summary (e.g. perplexity); empty by default."""
        return {}


def is_grader(obj: object) -> bool:
    return isinstance(obj, type) and issubclass(obj, Grader) and hasattr(obj, "name")


__all__ = [
    "Answer",
    "ChatModels",
    "GradeResult",
    "Grader",
    "GraderContext",
    "Item",
    "PairResult",
    "Scorer",
    "is_grader",
]

