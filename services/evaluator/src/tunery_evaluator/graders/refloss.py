"""The ``reference_loss`` grader: how well each model predicts the example's reference answer, without generating.

Asks ``GraderContext.scorer`` (the gateway's ``POST /v1/score``) for the mean cross-entropy, in nats, of the
reference's tokens as the assistant's turn after the example's messages: the same tokens and the same loss the
trainer computes on validation data, so a fine-tune's gain shows even when greedy answers look alike. The score is
that loss (lower is better); the rationale gives the token count and the example's perplexity; the summary adds
``perplexity``, exp of the mean loss. The model scored is the answer's model at its endpoint
(``Answer.endpoint_model``, else its label); only a gateway can score (its transformers engine): any other answer,
or a model it does not serve, is that example's ``score_failed``.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

from tunery.errors import FailedPrecondition
from tunery_evaluator.graders.base import Answer, Grader, GraderContext, GradeResult, Item
from tunery_evaluator.graders.config import check_config


class ReferenceLossGrader(Grader):
    name: ClassVar[str] = "reference_loss"
    description: ClassVar[str] = ("Mean token loss (nats) of the reference answer under each model, computed by the "
                                  "gateway (POST /v1/score) as the trainer does; lower is better. Summary: perplexity.")
    config_schema: ClassVar[dict[str, Any]] = {
        "type": "object",
        "properties": {"max_loss": {"type": "number", "exclusiveMinimum": 0,
                                    "description": "An example whose loss is at or under it passes."}},
        "additionalProperties": False,
    }
    higher_is_better: ClassVar[bool] = False
    needs_reference: ClassVar[bool] = True

    def __init__(self, config: dict[str, Any], context: GraderContext) -> None:
        super().__init__(config, context)
        check_config(self.name, self.config_schema, config)
        if context.scorer is None:
            raise FailedPrecondition("reference_loss: this evaluator lends graders no scorer", code="no_scorer")
        self.scorer = context.scorer
        self.max_loss: float | None = config.get("max_loss")

    async def grade(self, item: Item, answer: Answer) -> GradeResult:
        if not item.reference:
            return GradeResult(error="no_reference", error_message="the example has no reference answer")
        model = answer.endpoint_model or answer.model
        try:
            out = await self.scorer.score(model, item.messages, item.reference)
        except ValueError as err:  # the endpoint answered with an error (unknown model, an engine that cannot score)
            return GradeResult(error="score_failed", error_message=f"{model}: {err}")
        loss, tokens = out.get("loss"), out.get("tokens")
        if loss is None or not math.isfinite(loss) or not tokens:
            return GradeResult(error="score_failed", error_message=f"{model}: the endpoint answered {out}")
        passed = None if self.max_loss is None else loss <= self.max_loss
        return GradeResult(score=float(loss), passed=passed,
                           rationale=f"{int(tokens)} tokens, perplexity {math.exp(min(loss, 700.0)):.6g}")

    def aggregate_extra(self, results: list[GradeResult]) -> dict[str, float]:
        losses = [r.score for r in results if not r.error and r.score is not None]
        if not losses:
            return {}
        return {"perplexity": math.exp(min(sum(losses) / len(losses), 700.0))}
