"""Usage graders: how long an answer took and how many tokens it used, as the endpoint reported them.

Both are "lower is better"; an optional ceiling (``max_ms`` / ``max_tokens``) sets ``passed``. Their summaries add
the median and the 95th percentile (numpy's linear interpolation) to the mean.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from tunery_evaluator.graders.base import Answer, Grader, GraderContext, GradeResult, Item
from tunery_evaluator.graders.config import check_config


def percentiles(results: list[GradeResult]) -> dict[str, float]:
    scores = [r.score for r in results if not r.error and r.score is not None]
    if not scores:
        return {}
    p50, p95 = np.percentile(np.asarray(scores, dtype=float), [50, 95])
    return {"p50": float(p50), "p95": float(p95), "max": float(max(scores))}


class LatencyGrader(Grader):
    name: ClassVar[str] = "latency"
    description: ClassVar[str] = ("Wall time of the answer in milliseconds, as the evaluator measured it "
                                  "(lower is better).")
    config_schema: ClassVar[dict[str, Any]] = {
        "type": "object",
        "properties": {"max_ms": {"type": "number", "exclusiveMinimum": 0,
                                  "description": "An answer at or under it passes."}},
        "additionalProperties": False,
    }
    higher_is_better: ClassVar[bool] = False

    def __init__(self, config: dict[str, Any], context: GraderContext) -> None:
        super().__init__(config, context)
        check_config(self.name, self.config_schema, config)
        self.max_ms: float | None = config.get("max_ms")

    async def grade(self, item: Item, answer: Answer) -> GradeResult:
        ms = float(answer.latency_ms)
        return GradeResult(score=ms, passed=None if self.max_ms is None else ms <= self.max_ms)

    def aggregate_extra(self, results: list[GradeResult]) -> dict[str, float]:
        return percentiles(results)


class TokensGrader(Grader):
    name: ClassVar[str] = "tokens"
    description: ClassVar[str] = ("Completion tokens of the answer as the endpoint counted them (lower is better); "
                                  "label: the finish reason.")
    config_schema: ClassVar[dict[str, Any]] = {
        "type": "object",
        "properties": {"max_tokens": {"type": "integer", "minimum": 0,
                                      "description": "An answer with at most this many completion tokens passes."}},
        "additionalProperties": False,
    }
    higher_is_better: ClassVar[bool] = False

    def __init__(self, config: dict[str, Any], context: GraderContext) -> None:
        super().__init__(config, context)
        check_config(self.name, self.config_schema, config)
        self.max_tokens: int | None = config.get("max_tokens")

    async def grade(self, item: Item, answer: Answer) -> GradeResult:
        n = answer.completion_tokens
        return GradeResult(score=float(n), passed=None if self.max_tokens is None else n <= self.max_tokens,
                           label=answer.finish_reason)

    def aggregate_extra(self, results: list[GradeResult]) -> dict[str, float]:
        return percentiles(results)
