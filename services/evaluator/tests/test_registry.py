"""The grader registry over the entry-point group, with the separately installed third-party grader word_overlap:
it loads like any built-in, builds, grades, and bad specs are named errors."""

from __future__ import annotations

import asyncio

import pytest

from tunery.errors import InvalidArgument
from tunery_evaluator.domain import GraderSpec
from tunery_evaluator.graders import registry
from tunery_evaluator.graders.base import Answer, GraderContext, Item


def test_third_party_grader_is_listed_and_grades() -> None:
    info = {g.type: g for g in registry.info()}
    assert info["word_overlap"].package == "tunery-test-grader" and info["word_overlap"].needs_reference
    grader = registry.build(GraderSpec("word_overlap", "wo", {"pass_threshold": 0.5}), GraderContext())
    item = Item(0, [{"role": "user", "content": "q"}], "two plus two is four")
    got = asyncio.run(grader.grade(item, Answer("m", "Two plus two is five")))
    assert got.score == pytest.approx(0.75) and got.passed


@pytest.mark.parametrize(("spec", "code", "field"), [
    (GraderSpec("no_such"), "unknown_grader", "graders[2].type"),
    (GraderSpec(""), "missing_field", "graders[2].type"),
    (GraderSpec("word_overlap", config={"pass_threshold": 3}), "invalid_grader_config",
     "graders[2].config.pass_threshold"),
    (GraderSpec("word_overlap", config={"pass_threshold": "high"}), "invalid_grader_config",
     "graders[2].config.pass_threshold"),
    (GraderSpec("word_overlap", config={"colour": 1}), "invalid_grader_config", "graders[2].config"),
])
def test_bad_specs_name_the_field(spec: GraderSpec, code: str, field: str) -> None:
    with pytest.raises(InvalidArgument) as info:
        registry.build(spec, GraderContext(), field="graders[2]")
    assert (info.value.code, info.value.field) == (code, field)
    if code == "unknown_grader":
        assert "word_overlap" in info.value.message


def test_names_default_to_the_type_and_must_be_unique() -> None:
    named = registry.named([GraderSpec("word_overlap"), GraderSpec("word_overlap"), GraderSpec("x", "mine")])
    assert [s.name for s in named] == ["word_overlap", "word_overlap-2", "mine"]
    with pytest.raises(InvalidArgument) as info:
        registry.named([GraderSpec("a", "same"), GraderSpec("b", "same")])
    assert (info.value.code, info.value.field) == ("duplicate_grader", "graders[1].name")
