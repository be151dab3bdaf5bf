"""The deterministic built-in graders on hand-checked cases, and their refusals of bad settings."""

from __future__ import annotations

import asyncio
import json
from importlib.metadata import entry_points
from typing import Any

import pytest

from tunery.errors import InvalidArgument
from tunery_evaluator.graders.base import Answer, Grader, GraderContext, GradeResult, Item
from tunery_evaluator.graders.jsongrader import JsonGrader
from tunery_evaluator.graders.similarity import TextSimilarityGrader
from tunery_evaluator.graders.string_check import StringCheckGrader
from tunery_evaluator.graders.usage import LatencyGrader, TokensGrader

CTX = GraderContext()


def item(reference: str = "", **metadata: Any) -> Item:
    return Item(index=3, messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi?"}],
                reference=reference, example_id="ex-3", metadata=metadata)


def grade(grader: Grader, it: Item, content: str, **answer: Any) -> GradeResult:
    return asyncio.run(grader.grade(it, Answer(model="base", content=content, **answer)))


def refused(cls: type[Grader], config: dict[str, Any]) -> InvalidArgument:
    with pytest.raises(InvalidArgument) as err:
        cls(config, CTX)
    return err.value


# --- string_check -------------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("operation", "answer", "reference", "ok"), [
    ("eq", "Paris", "Paris", True),
    ("eq", "Paris ", "Paris", False),
    ("ne", "Lyon", "Paris", True),
    ("ne", "Paris", "Paris", False),
    ("like", "It is Paris.", "Paris", True),
    ("like", "It is paris.", "Paris", False),
    ("ilike", "It is PARIS.", "paris", True),
    ("ilike", "It is Lyon.", "paris", False),
])
def test_string_check_operations(operation: str, answer: str, reference: str, ok: bool) -> None:
    r = grade(StringCheckGrader({"operation": operation}, CTX), item(reference), answer)
    assert (r.score, r.passed, r.error) == (1.0 if ok else 0.0, ok, "")


def test_string_check_templates_read_item_fields_and_metadata() -> None:
    g = StringCheckGrader({"operation": "eq", "input": "{{ sample.output_text }}", "reference": "{{item.answer.city}}"},
                          CTX)
    assert grade(g, item(answer={"city": "Oslo"}), "Oslo").passed is True
    missing = grade(g, item(), "Oslo")
    assert (missing.error, missing.score) == ("missing_field", None) and "item.answer.city" in missing.error_message
    g2 = StringCheckGrader({"operation": "like", "input": "{{item.messages}}", "reference": "user: {{item.input}}"},
                           CTX)
    assert grade(g2, item(), "").passed is True
    g3 = StringCheckGrader({"operation": "eq", "input": "{{item.example_id}}#{{item.index}}", "reference": "ex-3#3"},
                           CTX)
    assert grade(g3, item(), "").passed is True


def test_string_check_without_reference_is_an_error_not_a_score() -> None:
    r = grade(StringCheckGrader({"operation": "eq"}, CTX), item(""), "anything")
    assert (r.error, r.score, r.passed) == ("no_reference", None, None)


@pytest.mark.parametrize(("config", "field", "code"), [
    ({}, "config.operation", "invalid_grader_config"),
    ({"operation": "contains"}, "config.operation", "invalid_grader_config"),
    ({"operation": "eq", "refrence": "x"}, "config.refrence", "invalid_grader_config"),
    ({"operation": "eq", "input": 3}, "config.input", "invalid_grader_config"),
    ({"operation": "eq", "input": "{{answer.text}}"}, "config.input", "invalid_template"),
    ({"operation": "eq", "input": "{{sample.text}}"}, "config.input", "invalid_template"),
    ({"operation": "eq", "reference": "{{item.reference}"}, "config.reference", "invalid_template"),
])
def test_string_check_bad_config_names_the_field(config: dict[str, Any], field: str, code: str) -> None:
    err = refused(StringCheckGrader, config)
    assert (err.field, err.code) == (field, code)
    assert "string_check" in err.message


# --- text_similarity ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("metric", "answer", "reference", "expected"), [
    # rapidfuzz ratio = 1 - indel distance / total length: kitten/sitting share "ittn": 1 - (6 + 7 - 8) / 13.
    ("fuzzy_match", "kitten", "sitting", 8 / 13),
    ("bleu", "the cat sat on the mat", "the cat sat on the mat", 1.0),
    ("bleu", "dogs bark", "the cat sat on the mat", 0.0),
    ("chrf", "the cat sat on the mat", "the cat sat on the mat", 1.0),
    ("chrf_pp", "the cat sat on the mat", "the cat sat on the mat", 1.0),
    # 3 of 3 answer unigrams in a 6-word reference: P 1, R 1/2, F 2/3.
    ("rouge_1", "the cat sat", "the cat sat on the mat", 2 / 3),
    # bigrams "the cat", "cat sat" among the reference's 5: P 1, R 2/5, F 4/7.
    ("rouge_2", "the cat sat", "the cat sat on the mat", 4 / 7),
    ("rouge_3", "the cat sat", "the cat sat on the mat", 2 * (1 * 0.25) / 1.25),
    ("rouge_l", "the cat sat", "the cat sat on the mat", 2 / 3),
    ("rouge_5", "the cat", "the cat sat on the mat", 0.0),
    # GLEU = min(precision, recall) over 1..4-grams: 3 answer n-grams, all in the reference's 6.
    ("gleu", "the cat", "the cat sat", 0.5),
    # METEOR: both words match after Porter stemming (cats/cat, running/run), one chunk:
    # penalty 0.5 * (1/2)^3, F-mean 1.
    ("meteor", "cats running", "cat run", 1 - 0.5 * (1 / 2) ** 3),
])
def test_text_similarity_metrics(metric: str, answer: str, reference: str, expected: float) -> None:
    r = grade(TextSimilarityGrader({"evaluation_metric": metric}, CTX), item(reference), answer)
    assert r.score == pytest.approx(expected, abs=1e-6)
    assert (r.passed, r.label, r.error) == (None, metric, "")


def test_text_similarity_pass_threshold() -> None:
    g = TextSimilarityGrader({"evaluation_metric": "rouge_1", "pass_threshold": 0.6}, CTX)
    assert grade(g, item("the cat sat on the mat"), "the cat sat").passed is True
    assert grade(g, item("the cat sat on the mat"), "the dog").passed is False
    assert grade(g, item(""), "the dog").error == "no_reference"


@pytest.mark.parametrize(("config", "field", "words"), [
    ({}, "config.evaluation_metric", "required"),
    ({"evaluation_metric": "bluer"}, "config.evaluation_metric", "rouge_l"),
    ({"evaluation_metric": "cosine"}, "config.evaluation_metric", "embeddings"),
    ({"evaluation_metric": "bleu", "pass_threshold": "high"}, "config.pass_threshold", "number"),
])
def test_text_similarity_bad_config(config: dict[str, Any], field: str, words: str) -> None:
    err = refused(TextSimilarityGrader, config)
    assert err.field == field and words in err.message


# --- json ---------------------------------------------------------------------------------------------------------

TICKET = {"category": "billing", "priority": "high", "reply": "We are refunding you."}
TICKET_SCHEMA = {"type": "object", "required": ["category", "priority", "reply"],
                 "properties": {"category": {"enum": ["billing", "bug", "account"]},
                                "priority": {"enum": ["low", "high"]}, "reply": {"type": "string"}}}


def ticket(**changes: Any) -> str:
    return json.dumps({**TICKET, **changes})


def test_json_match_fields_scores_the_fraction_of_fields_right() -> None:
    g = JsonGrader({"schema": TICKET_SCHEMA, "match_fields": ["category", "priority"]}, CTX)
    ref = item(json.dumps(TICKET))
    exact = grade(g, ref, ticket(reply="Different words are fine."))
    assert (exact.score, exact.passed, exact.label) == (1.0, True, "match")
    half = grade(g, ref, ticket(priority="low"))
    assert (half.score, half.passed, half.label) == (0.5, False, "mismatch")
    assert half.rationale == 'priority: got "low", expected "high"'
    fenced = grade(g, ref, "```json\n" + ticket(category="bug") + "\n```")
    assert (fenced.score, fenced.label) == (0.5, "mismatch")
    assert grade(g, ref, "```" + ticket() + "```").score == 1.0
    assert grade(g, ref, "Here it is: " + ticket()).label == "invalid_json"  # only a whole-answer fence is removed


def test_json_failures_count_as_zero_with_a_clear_label() -> None:
    g = JsonGrader({"schema": TICKET_SCHEMA, "match_fields": ["category", "priority"]}, CTX)
    ref = item(json.dumps(TICKET))
    prose = grade(g, ref, "Category: billing, priority: high")
    assert (prose.score, prose.passed, prose.label, prose.error) == (0.0, False, "invalid_json", "")
    assert prose.rationale.startswith("not JSON: ")
    off_schema = grade(g, ref, ticket(priority="urgent"))
    assert (off_schema.score, off_schema.label) == (0.0, "schema_violation")
    assert off_schema.rationale.startswith("$.priority: ")
    no_fence = JsonGrader({"strip_fence": False}, CTX)
    assert grade(no_fence, item(), "```json\n{}\n```").label == "invalid_json"
    assert grade(no_fence, item(), " {} ").label == "valid"


def test_json_reference_problems_are_errors_of_the_example() -> None:
    g = JsonGrader({"match_fields": ["category"]}, CTX)
    assert grade(g, item("not json"), ticket()).error == "invalid_reference"
    assert grade(g, item(""), ticket()).error == "no_reference"
    nested = JsonGrader({"match_fields": ["t.p"]}, CTX)
    r = grade(nested, item('{"t": {"p": 1}}'), '{"t": {}}')
    assert (r.score, r.rationale) == (0.0, "t.p: got missing, expected 1")


def test_json_without_schema_or_fields_checks_validity_only() -> None:
    g = JsonGrader({}, CTX)
    assert (grade(g, item(), "[1, 2]").score, grade(g, item(), "[1, 2").score) == (1.0, 0.0)


@pytest.mark.parametrize(("config", "field", "code"), [
    ({"require_schema": True}, "config.schema", "missing_field"),
    ({"schema": {"type": "objekt"}}, "config.schema.type", "invalid_schema"),
    ({"schema": {"properties": {"a": {"minimum": "3"}}}}, "config.schema.properties.a.minimum", "invalid_schema"),
    ({"schema": "an object"}, "config.schema", "invalid_grader_config"),
    ({"match_fields": "category"}, "config.match_fields", "invalid_grader_config"),
    ({"match_fields": ["a", ""]}, "config.match_fields[1]", "invalid_grader_config"),
])
def test_json_bad_config(config: dict[str, Any], field: str, code: str) -> None:
    err = refused(JsonGrader, config)
    assert (err.field, err.code) == (field, code)


# --- usage --------------------------------------------------------------------------------------------------------

def test_latency_and_tokens() -> None:
    lat = LatencyGrader({"max_ms": 25}, CTX)
    results = [grade(lat, item(), "x", latency_ms=ms) for ms in (10, 20, 30, 40)]
    assert [(r.score, r.passed) for r in results] == [(10, True), (20, True), (30, False), (40, False)]
    # numpy's linear interpolation: p95 at rank 0.95 * 3 = 2.85, between 30 and 40.
    assert lat.aggregate_extra([*results, GradeResult(error="x")]) == {"p50": 25.0, "p95": 38.5, "max": 40.0}
    assert LatencyGrader.higher_is_better is False and TokensGrader.higher_is_better is False
    tok = TokensGrader({"max_tokens": 5}, CTX)
    r = grade(tok, item(), "x", completion_tokens=7, finish_reason="length")
    assert (r.score, r.passed, r.label) == (7.0, False, "length")
    assert grade(TokensGrader({}, CTX), item(), "x", completion_tokens=3).passed is None
    assert tok.aggregate_extra([]) == {}
    assert refused(LatencyGrader, {"max_ms": 0}).field == "config.max_ms"
    assert refused(TokensGrader, {"max_tokens": 1.5}).field == "config.max_tokens"


def test_built_ins_are_registered_as_entry_points() -> None:
    eps = {ep.name: ep for ep in entry_points(group="tunery.eval_graders")}
    for name in ("string_check", "text_similarity", "json", "score_model", "label_model", "pairwise_model",
                 "reference_loss", "latency", "tokens"):
        cls = eps[name].load()
        assert cls.name == name and issubclass(cls, Grader)
