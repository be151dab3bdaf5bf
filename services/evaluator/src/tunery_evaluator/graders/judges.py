"""Model-graded graders (LLM as a judge), shaped like OpenAI's ``score_model`` and ``label_model``, plus a pairwise one.

The judge is any model the evaluator can reach: a name the gateway serves, or an external OpenAI-compatible
endpoint (``base_url``, with its key read from the evaluator's environment through ``api_key_env`` so that no secret
is stored in the evaluation's settings). ``input`` is OpenAI's list of ``{role, content}`` messages whose content
may use placeholders (``{{item.messages}}``, ``{{item.reference}}``, ``{{sample.output_text}}``; pairwise:
``{{sample_a.output_text}}`` and ``{{sample_b.output_text}}``); without it a default prompt shows the conversation,
the reference when the example has one, and the answer(s). The reply format the grader reads (one JSON object) is
appended to the first system message, or sent as a system message of its own when ``input`` has none.

A verdict that cannot be read is ``error="unparseable_verdict"`` with the judge's raw answer as the rationale; a
judge call that fails is ``error="judge_failed"``. Neither is an exception, so the run goes on; only an unreachable
endpoint (``EndpointDown``) propagates, for the runner to wait and resume.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any, ClassVar

from tunery.errors import FailedPrecondition, InvalidArgument
from tunery_evaluator.graders.base import Answer, Grader, GraderContext, GradeResult, Item, PairResult
from tunery_evaluator.graders.config import THRESHOLD, check_config, pass_threshold
from tunery_evaluator.graders.templates import PAIR_NAMESPACES, SAMPLE_NAMESPACES, MissingField, Template
from tunery_evaluator.graders.verdicts import Unparseable, parse_label, parse_score, parse_winner

_MESSAGE = {
    "type": "object",
    "properties": {"role": {"enum": ["system", "developer", "user", "assistant"]}, "content": {"type": "string"}},
    "required": ["role", "content"],
    "additionalProperties": False,
}
_COMMON: dict[str, Any] = {
    "model": {"type": "string", "minLength": 1, "description": "The judge: a model name the endpoint serves."},
    "base_url": {"type": "string", "description": "An external OpenAI-compatible endpoint; empty: the gateway."},
    "api_key_env": {"type": "string", "minLength": 1,
                    "description": "Environment variable of the evaluator holding base_url's API key."},
    "input": {"type": "array", "items": _MESSAGE, "minItems": 1,
              "description": "Judge prompt (OpenAI message list with {{item.*}} / {{sample.*}} placeholders)."},
    "rubric": {"type": "string", "description": "Criteria added to the judge's instructions (placeholders allowed)."},
    "sampling_params": {
        "type": "object",
        "properties": {"temperature": {"type": "number", "minimum": 0, "maximum": 2},
                       "max_tokens": {"type": "integer", "minimum": 1}},
        "additionalProperties": False,
    },
}

_ONE_ANSWER_SYSTEM = "You are an impartial, strict grader of an AI assistant's answers."
_ONE_ANSWER_USER = "Conversation:\n{{item.messages}}\n\nAnswer to grade:\n{{sample.output_text}}"
_ONE_ANSWER_USER_REF = ("Conversation:\n{{item.messages}}\n\nReference answer:\n{{item.reference}}\n\n"
                        "Answer to grade:\n{{sample.output_text}}")
_PAIR_SYSTEM = ("You are an impartial judge comparing two AI assistants' answers to the same conversation. "
                "Do not let the order of the answers, their length or the assistants' names sway you.")
_PAIR_USER = ("Conversation:\n{{item.messages}}\n\n[Answer A]\n{{sample_a.output_text}}\n\n"
              "[Answer B]\n{{sample_b.output_text}}")
_PAIR_USER_REF = ("Conversation:\n{{item.messages}}\n\nReference answer:\n{{item.reference}}\n\n"
                  "[Answer A]\n{{sample_a.output_text}}\n\n[Answer B]\n{{sample_b.output_text}}")

Prompt = list[tuple[str, Template]]


class _Judge(Grader):
    """What the three judges share: settings, the prompt, the call."""

    samples: ClassVar[frozenset[str]] = SAMPLE_NAMESPACES
    defaults: ClassVar[tuple[str, str, str]] = (_ONE_ANSWER_SYSTEM, _ONE_ANSWER_USER, _ONE_ANSWER_USER_REF)

    def __init__(self, config: dict[str, Any], context: GraderContext) -> None:
        super().__init__(config, context)
        check_config(self.name, self.config_schema, config)
        if context.models is None:
            raise FailedPrecondition(f"{self.name}: this evaluator lends graders no model access",
                                     code="no_model_access")
        self.models = context.models
        self.model: str = config["model"]
        self.base_url: str = config.get("base_url", "")
        self.api_key = ""
        if "api_key_env" in config:
            env = config["api_key_env"]
            if not os.environ.get(env):
                raise InvalidArgument(f"{self.name}: the evaluator's environment has no variable {env!r} (its API "
                                      "key for base_url)", code="invalid_grader_config", field="config.api_key_env")
            self.api_key = os.environ[env]
        sampling = config.get("sampling_params", {})
        self.temperature = float(sampling.get("temperature", 0.0))
        self.max_tokens = int(sampling.get("max_tokens", 512))
        self.rubric = (Template.parse(config["rubric"], "config.rubric", self.name, self.samples)
                       if "rubric" in config else None)
        self.prompt: Prompt | None = None
        if "input" in config:
            self.prompt = [(m["role"], Template.parse(m["content"], f"config.input[{i}].content", self.name,
                                                      self.samples)) for i, m in enumerate(config["input"])]
        system, user, user_ref = self.defaults
        self.default_prompt: Prompt = [("system", Template(system)), ("user", Template(user))]
        self.default_prompt_ref: Prompt = [("system", Template(system)), ("user", Template(user_ref))]

    def reply_format(self) -> str:
        raise NotImplementedError

    def messages(self, item: Item, samples: dict[str, Answer]) -> list[dict[str, Any]]:
        """The judge's conversation; raises MissingField for a metadata placeholder the example lacks."""
        prompt = self.prompt or (self.default_prompt_ref if item.reference else self.default_prompt)
        out = [{"role": role, "content": t.render(item, samples)} for role, t in prompt]
        instructions = self.reply_format()
        if self.rubric is not None:
            instructions = f"Grading criteria:\n{self.rubric.render(item, samples)}\n\n{instructions}"
        if out[0]["role"] in ("system", "developer"):
            out[0]["content"] = f"{out[0]['content']}\n\n{instructions}"
        else:
            out.insert(0, {"role": "system", "content": instructions})
        return out

    async def ask(self, messages: list[dict[str, Any]]) -> Answer:
        return await self.models.chat(self.model, messages, temperature=self.temperature, max_tokens=self.max_tokens,
                                      base_url=self.base_url, api_key=self.api_key)

    async def verdict(self, item: Item, answer: Answer) -> tuple[Answer | None, GradeResult | None]:
        """The judge's answer to one sample, or the GradeResult of why there is none."""
        try:
            messages = self.messages(item, {"sample": answer})
        except MissingField as err:
            return None, GradeResult(error="missing_field", error_message=str(err))
        reply = await self.ask(messages)
        if reply.error:
            return None, GradeResult(error="judge_failed",
                                     error_message=f"judge {self.model}: {reply.error}: {reply.error_message}")
        return reply, None


def _check_threshold(grader: str, threshold: float | None, low: float, high: float) -> None:
    if threshold is not None and not low <= threshold <= high:
        raise InvalidArgument(f"{grader}: pass_threshold {threshold:g} is outside range [{low:g}, {high:g}]",
                              code="invalid_grader_config", field="config.pass_threshold")


class ScoreModelGrader(_Judge):
    name: ClassVar[str] = "score_model"
    description: ClassVar[str] = ("A judge model scores each answer with a number in range (default [0, 1]) "
                                  "following the rubric; pass_threshold sets passed.")
    config_schema: ClassVar[dict[str, Any]] = {
        "type": "object",
        "properties": {**_COMMON,
                       "range": {"type": "array", "items": {"type": "number"}, "minItems": 2, "maxItems": 2},
                       "pass_threshold": THRESHOLD},
        "required": ["model"],
        "additionalProperties": False,
    }

    def __init__(self, config: dict[str, Any], context: GraderContext) -> None:
        super().__init__(config, context)
        low, high = (float(v) for v in config.get("range", [0, 1]))
        if not low < high:
            raise InvalidArgument(f"score_model: range [{low:g}, {high:g}] must have its low end below its high end",
                                  code="invalid_grader_config", field="config.range")
        self.low, self.high = low, high
        self.threshold = pass_threshold(config, None)
        _check_threshold(self.name, self.threshold, low, high)

    def reply_format(self) -> str:
        return (f'Reply with one JSON object and nothing else: {{"score": <a number from {self.low:g} to '
                f'{self.high:g}, higher is better>, "rationale": "<one or two sentences>"}}')

    async def grade(self, item: Item, answer: Answer) -> GradeResult:
        reply, failed = await self.verdict(item, answer)
        if reply is None:
            return failed or GradeResult(error="judge_failed")
        try:
            score, rationale = parse_score(reply.content, self.low, self.high)
        except Unparseable as err:
            return GradeResult(error="unparseable_verdict", error_message=str(err), rationale=reply.content)
        passed = None if self.threshold is None else score >= self.threshold
        return GradeResult(score=score, passed=passed, rationale=rationale)


class LabelModelGrader(_Judge):
    name: ClassVar[str] = "label_model"
    description: ClassVar[str] = ("A judge model picks one of labels for each answer; score 1 and passed when it is "
                                  "one of passing_labels.")
    config_schema: ClassVar[dict[str, Any]] = {
        "type": "object",
        "properties": {**_COMMON,
                       "labels": {"type": "array", "items": {"type": "string", "minLength": 1}, "minItems": 2,
                                  "uniqueItems": True},
                       "passing_labels": {"type": "array", "items": {"type": "string"}, "minItems": 1,
                                          "uniqueItems": True}},
        "required": ["model", "labels", "passing_labels"],
        "additionalProperties": False,
    }
    pass_threshold: ClassVar[float | None] = 1.0

    def __init__(self, config: dict[str, Any], context: GraderContext) -> None:
        super().__init__(config, context)
        self.labels: list[str] = list(config["labels"])
        folded = [label.casefold() for label in self.labels]
        if len(set(folded)) != len(folded):
            raise InvalidArgument("label_model: labels must differ when case is ignored", code="invalid_grader_config",
                                  field="config.labels")
        for i, label in enumerate(config["passing_labels"]):
            if label not in self.labels:
                raise InvalidArgument(f"label_model: passing label {label!r} is not one of labels {self.labels}",
                                      code="invalid_grader_config", field=f"config.passing_labels[{i}]")
        self.passing = set(config["passing_labels"])

    def reply_format(self) -> str:
        choices = ", ".join(f'"{label}"' for label in self.labels)
        return (f'Reply with one JSON object and nothing else: {{"label": <one of {choices}>, '
                f'"rationale": "<one or two sentences>"}}')

    async def grade(self, item: Item, answer: Answer) -> GradeResult:
        reply, failed = await self.verdict(item, answer)
        if reply is None:
            return failed or GradeResult(error="judge_failed")
        try:
            label, rationale = parse_label(reply.content, self.labels)
        except Unparseable as err:
            return GradeResult(error="unparseable_verdict", error_message=str(err), rationale=reply.content)
        ok = label in self.passing
        return GradeResult(score=1.0 if ok else 0.0, passed=ok, label=label, rationale=rationale)


class PairwiseModelGrader(_Judge):
    """Asks in both orders (A then B, B then A) to cancel the judge's position bias: the verdicts agree → that
    winner; they disagree → a tie. Both rationales are kept."""

    name: ClassVar[str] = "pairwise_model"
    description: ClassVar[str] = ("A judge model compares two models' answers, asked in both orders to cancel "
                                  "position bias: agreeing verdicts name the winner, disagreeing ones a tie.")
    config_schema: ClassVar[dict[str, Any]] = {
        "type": "object",
        "properties": {**_COMMON, "both_orders": {"type": "boolean", "default": True}},
        "required": ["model"],
        "additionalProperties": False,
    }
    pairwise: ClassVar[bool] = True
    samples: ClassVar[frozenset[str]] = PAIR_NAMESPACES
    defaults: ClassVar[tuple[str, str, str]] = (_PAIR_SYSTEM, _PAIR_USER, _PAIR_USER_REF)

    def __init__(self, config: dict[str, Any], context: GraderContext) -> None:
        super().__init__(config, context)
        self.both_orders = bool(config.get("both_orders", True))

    def reply_format(self) -> str:
        return ('Reply with one JSON object and nothing else: {"winner": "A", "B" or "tie", '
                '"rationale": "<one or two sentences>"}')

    async def _one(self, item: Item, first: Answer, second: Answer) -> tuple[str, str, str, str]:
        """(winner as shown to the judge: "a" | "b" | "tie", rationale or raw answer, error, error message)."""
        reply = await self.ask(self.messages(item, {"sample_a": first, "sample_b": second}))
        if reply.error:
            return "", "", "judge_failed", f"judge {self.model}: {reply.error}: {reply.error_message}"
        try:
            winner, rationale = parse_winner(reply.content)
        except Unparseable as err:
            return "", reply.content, "unparseable_verdict", str(err)
        return winner, rationale, "", ""

    async def grade_pair(self, item: Item, a: Answer, b: Answer) -> PairResult:
        try:
            self.messages(item, {"sample_a": a, "sample_b": b})
        except MissingField as err:
            return PairResult(error="missing_field", error_message=str(err))
        if not self.both_orders:
            winner, text, error, message = await self._one(item, a, b)
            return PairResult(winner=winner, rationale=text, error=error, error_message=message)
        (w1, t1, e1, m1), (w2, t2, e2, m2) = await asyncio.gather(self._one(item, a, b), self._one(item, b, a))
        back = {"a": "b", "b": "a", "tie": "tie"}.get(w2, "")
        rationale = f"order A-B: {w1 or e1}: {t1}\norder B-A: {back or e2} (as shown: {w2 or e2}): {t2}"
        if e1 or e2:
            return PairResult(error=e1 or e2, error_message="; ".join(m for m in (m1, m2) if m), rationale=rationale)
        return PairResult(winner=w1 if w1 == back else "tie", rationale=rationale)
