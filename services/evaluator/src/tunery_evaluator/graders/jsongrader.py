"""The ``json`` grader: is the answer valid JSON, does it follow a JSON Schema, do chosen fields match the reference?

Scoring, per answer:

- not JSON → score 0, passed false, label ``invalid_json`` (rationale: the parser's message);
- JSON that breaks ``schema`` → score 0, passed false, label ``schema_violation`` (rationale: where and why);
- otherwise, without ``match_fields`` → score 1, label ``valid``; with them → the fraction of those fields (dotted
  paths such as ``ticket.priority``) equal to the reference JSON's, label ``match`` or ``mismatch`` (rationale: each
  field that differs, with both values).

A malformed answer is the model's failure, so it is scored 0 and counts in the mean; it is not an ``error`` (errors
are left out of the mean). A reference that is not JSON is the data's fault: that example gets
``error="invalid_reference"``. ``passed`` is ``score >= pass_threshold`` (default 1.0: every field right).
"""

from __future__ import annotations

import json
import re
from typing import Any, ClassVar

import jsonschema
from jsonschema.exceptions import SchemaError, best_match

from tunery.errors import InvalidArgument
from tunery_evaluator.graders.base import Answer, Grader, GraderContext, GradeResult, Item
from tunery_evaluator.graders.config import THRESHOLD, check_config, dotted, pass_threshold
from tunery_evaluator.graders.templates import MissingField, Template

_FENCE = re.compile(r"\A\s*```[A-Za-z0-9_+-]*[ \t]*\n?(.*?)\n?[ \t]*```\s*\Z", re.DOTALL)
_MISSING = object()


def strip_fence(text: str) -> str:
    """The body of a Markdown code fence (```json … ```) when the whole text is one; else the text."""
    m = _FENCE.match(text)
    return m.group(1) if m else text


def field_value(doc: Any, path: str) -> Any:
    """The value at dotted ``path`` in ``doc``; ``_MISSING`` when absent."""
    value = doc
    for key in path.split("."):
        if not isinstance(value, dict) or key not in value:
            return _MISSING
        value = value[key]
    return value


class JsonGrader(Grader):
    name: ClassVar[str] = "json"
    description: ClassVar[str] = ("Valid JSON (a ``` fence is stripped), optionally against a JSON Schema; with "
                                  "match_fields, the fraction of those fields equal to the reference's.")
    config_schema: ClassVar[dict[str, Any]] = {
        "type": "object",
        "properties": {
            "input": {"type": "string", "default": "{{sample.output_text}}"},
            "reference": {"type": "string", "default": "{{item.reference}}"},
            "strip_fence": {"type": "boolean", "default": True},
            "schema": {"type": "object", "description": "JSON Schema the answer must follow."},
            "require_schema": {"type": "boolean", "default": False,
                               "description": "Refuse a config without a schema."},
            "match_fields": {"type": "array", "items": {"type": "string", "minLength": 1}, "uniqueItems": True},
            "pass_threshold": THRESHOLD,
        },
        "additionalProperties": False,
    }
    needs_reference: ClassVar[bool] = False
    pass_threshold: ClassVar[float | None] = 1.0

    def __init__(self, config: dict[str, Any], context: GraderContext) -> None:
        super().__init__(config, context)
        check_config(self.name, self.config_schema, config)
        self.strip = bool(config.get("strip_fence", True))
        self.schema: dict[str, Any] | None = config.get("schema")
        if config.get("require_schema") and self.schema is None:
            raise InvalidArgument("json: require_schema is true but no schema is given", code="missing_field",
                                  field="config.schema")
        self.validator: jsonschema.protocols.Validator | None = None
        if self.schema is not None:
            cls = jsonschema.validators.validator_for(self.schema)
            try:
                cls.check_schema(self.schema)
            except SchemaError as err:
                field = dotted(["config", "schema", *err.absolute_path])
                raise InvalidArgument(f"json: schema is not a valid JSON Schema at {field}: {err.message}",
                                      code="invalid_schema", field=field) from err
            self.validator = cls(self.schema)
        self.fields: list[str] = list(config.get("match_fields", []))
        self.threshold = pass_threshold(config, self.pass_threshold)
        self.input = Template.parse(config.get("input", "{{sample.output_text}}"), "config.input", self.name)
        self.reference = Template.parse(config.get("reference", "{{item.reference}}"), "config.reference",
                                        self.name)

    def _load(self, text: str) -> Any:
        return json.loads(strip_fence(text) if self.strip else text)

    async def grade(self, item: Item, answer: Answer) -> GradeResult:
        try:
            text = self.input.render(item, {"sample": answer})
            ref_text = self.reference.render(item, {"sample": answer}) if self.fields else ""
        except MissingField as err:
            return GradeResult(error="missing_field", error_message=str(err))
        try:
            doc = self._load(text)
        except json.JSONDecodeError as err:
            return GradeResult(score=0.0, passed=False, label="invalid_json", rationale=f"not JSON: {err}")
        if self.validator is not None:
            problem = best_match(self.validator.iter_errors(doc))
            if problem is not None:
                where = problem.json_path
                return GradeResult(score=0.0, passed=False, label="schema_violation",
                                   rationale=f"{where}: {problem.message}")
        if not self.fields:
            return GradeResult(score=1.0, passed=self.threshold is None or 1.0 >= self.threshold, label="valid")
        if not ref_text:
            return GradeResult(error="no_reference", error_message="the example has no reference answer")
        try:
            ref = self._load(ref_text)
        except json.JSONDecodeError as err:
            return GradeResult(error="invalid_reference", error_message=f"the reference is not JSON: {err}")
        wrong = []
        for path in self.fields:
            got, want = field_value(doc, path), field_value(ref, path)
            if got is _MISSING or got != want:
                shown = "missing" if got is _MISSING else json.dumps(got, ensure_ascii=False)
                wrong.append(f"{path}: got {shown}, expected "
                             f"{'missing' if want is _MISSING else json.dumps(want, ensure_ascii=False)}")
        score = 1 - len(wrong) / len(self.fields)
        passed = self.threshold is None or score >= self.threshold
        return GradeResult(score=score, passed=passed, label="mismatch" if wrong else "match",
                           rationale="; ".join(wrong))
