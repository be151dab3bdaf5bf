"""OpenAI's ``string_check`` grader: compare two rendered templates with eq, ne, like or ilike.

``like`` is "contains" (the reference occurs in the input), ``ilike`` the same ignoring case; neither reads SQL
wildcards. Score 1.0 and passed when the check holds, else 0.0.
"""

from __future__ import annotations

from typing import Any, ClassVar

from tunery_evaluator.graders.base import Answer, Grader, GraderContext, GradeResult, Item
from tunery_evaluator.graders.config import check_config
from tunery_evaluator.graders.templates import MissingField, Template

OPERATIONS = ("eq", "ne", "like", "ilike")


class StringCheckGrader(Grader):
    name: ClassVar[str] = "string_check"
    description: ClassVar[str] = ("Compares input with reference: eq (equal), ne (not equal), like (input contains "
                                  "reference), ilike (contains, ignoring case). Score 1 or 0.")
    config_schema: ClassVar[dict[str, Any]] = {
        "type": "object",
        "properties": {
            "operation": {"enum": list(OPERATIONS)},
            "input": {"type": "string", "default": "{{sample.output_text}}"},
            "reference": {"type": "string", "default": "{{item.reference}}"},
        },
        "required": ["operation"],
        "additionalProperties": False,
    }
    needs_reference: ClassVar[bool] = True
    pass_threshold: ClassVar[float | None] = 1.0

    def __init__(self, config: dict[str, Any], context: GraderContext) -> None:
        super().__init__(config, context)
        check_config(self.name, self.config_schema, config)
        self.operation: str = config["operation"]
        self.input = Template.parse(config.get("input", "{{sample.output_text}}"), "config.input", self.name)
        self.reference = Template.parse(config.get("reference", "{{item.reference}}"), "config.reference",
                                        self.name)

    async def grade(self, item: Item, answer: Answer) -> GradeResult:
        if self.reference.uses_reference and not item.reference:
            return GradeResult(error="no_reference", error_message="the example has no reference answer")
        try:
            got = self.input.render(item, {"sample": answer})
            want = self.reference.render(item, {"sample": answer})
        except MissingField as err:
            return GradeResult(error="missing_field", error_message=str(err))
        if self.operation == "eq":
            ok = got == want
        elif self.operation == "ne":
            ok = got != want
        elif self.operation == "like":
            ok = want in got
        else:
            ok = want.casefold() in got.casefold()
        return GradeResult(score=1.0 if ok else 0.0, passed=ok, label="pass" if ok else "fail")
