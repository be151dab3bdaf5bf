"""A grader shipped by a third party: the share of the reference's words that the answer contains."""

from __future__ import annotations

from typing import Any, ClassVar

from tunery.errors import InvalidArgument
from tunery_evaluator.graders.base import Answer, Grader, GraderContext, GradeResult, Item


class WordOverlapGrader(Grader):
    name: ClassVar[str] = "word_overlap"
    description: ClassVar[str] = "Share of the reference's distinct words found in the answer (case-insensitive)."
    config_schema: ClassVar[dict[str, Any]] = {
        "type": "object",
        "properties": {"pass_threshold": {"type": "number", "minimum": 0, "maximum": 1}},
        "additionalProperties": False,
    }
    needs_reference: ClassVar[bool] = True

    def __init__(self, config: dict[str, Any], context: GraderContext) -> None:
        super().__init__(config, context)
        unknown = sorted(set(config) - {"pass_threshold"})
        if unknown:
            raise InvalidArgument(f"word_overlap: unknown setting {unknown[0]!r}", code="invalid_grader_config",
                                  field=f"config.{unknown[0]}")
        self.threshold = float(config.get("pass_threshold", 0.5))

    async def grade(self, item: Item, answer: Answer) -> GradeResult:
        ref = set(item.reference.lower().split())
        if not ref:
            return GradeResult(error="no_reference", error_message="the example has no reference answer")
        got = set(answer.content.lower().split())
        score = len(ref & got) / len(ref)
        return GradeResult(score=score, passed=score >= self.threshold)
