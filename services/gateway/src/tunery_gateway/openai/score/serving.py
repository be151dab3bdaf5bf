"""Scoring a reference: resolve the model as chat does (unknown → 404), then ask the engine, if it can score."""

from __future__ import annotations

import uuid
from typing import Any

from tunery.errors import FailedPrecondition
from tunery_gateway.engines.base import ScoreRequest as EngineScoreRequest
from tunery_gateway.engines.base import ScoringEngine
from tunery_gateway.openai.score.protocol import ScoreRequest, score_body
from tunery_gateway.runtime import Gateway


class OpenAIServingScore:
    def __init__(self, gw: Gateway) -> None:
        self.gw = gw

    async def create(self, body: ScoreRequest) -> dict[str, Any]:
        base, adapter = await self.gw.registry.resolve(body.model)
        engine = self.gw.engine
        if not isinstance(engine, ScoringEngine):
            raise FailedPrecondition(f"the {self.gw.settings.engine} engine cannot score references; POST /v1/score "
                                     "needs an engine that computes token losses (transformers)",
                                     code="scoring_unsupported", field="model")
        messages = body.template_messages()
        result = await engine.score(EngineScoreRequest(f"score-{uuid.uuid4().hex}", base.id, messages,
                                                       body.reference, adapter))
        return score_body(body.model, result)
