"""The graders that call models, through real OpenAI-compatible endpoints: the judges (score_model, label_model,
pairwise_model) and reference_loss (the gateway's POST /v1/score).

Two endpoints, both real HTTP servers reached with the official openai client (OpenAIModelClient):
- a real gateway serving the tiny random Llama: its verdicts are noise, so they must come back as
  ``unparseable_verdict`` with the raw text kept, never as a score or an exception;
- a scripted judge started here, whose answers are known, to check parsing, ranges, labels and the both-order
  pairwise logic. Its models: ``echo`` answers the text being graded (so a test chooses the verdict through the
  answer), ``first`` always prefers the answer shown first (pure position bias), ``longer`` prefers the longer
  answer wherever it is shown, ``broken`` answers HTTP 400.
"""

from __future__ import annotations

import asyncio
import math
import re
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from tunery.errors import FailedPrecondition, InvalidArgument
from tunery_evaluator.client import OpenAIModelClient
from tunery_evaluator.graders.base import Answer, Grader, GraderContext, GradeResult, Item
from tunery_evaluator.graders.judges import LabelModelGrader, PairwiseModelGrader, ScoreModelGrader
from tunery_evaluator.graders.refloss import ReferenceLossGrader
from tunery_gateway.testing import ServerThread

ADMIN_KEY = "tny-000000000000-admin-key-for-the-judge-tests-only"
T = TypeVar("T")


def judge_app() -> FastAPI:
    app = FastAPI()
    app.state.calls = []

    @app.post("/v1/chat/completions")
    async def chat(request: Request) -> Any:
        body = await request.json()
        app.state.calls.append(body)
        prompt = "\n".join(m["content"] for m in body["messages"])
        model = body["model"]
        if model == "broken":
            return JSONResponse({"error": {"message": "judge is broken", "type": "invalid_request_error"}}, 400)
        if model == "echo":
            m = re.search(r"Answer to grade:\n(.*?)(?:\n\n|$)", prompt, re.DOTALL) or re.search(r"GRADE<(.*?)>", prompt,
                                                                                             re.DOTALL)
            text = m.group(1) if m else ""
        elif model == "first":
            text = '{"winner": "A", "rationale": "the first one"}'
        else:  # longer
            a = re.search(r"\[Answer A\]\n(.*?)\n\n\[Answer B\]", prompt, re.DOTALL)
            b = re.search(r"\[Answer B\]\n(.*)$", prompt, re.DOTALL)
            assert a and b
            la, lb = len(a.group(1)), len(b.group(1))
            text = f"[[{'A' if la > lb else 'B' if lb > la else 'C'}]] because length"
        return {"id": "j", "object": "chat.completion", "created": 0, "model": model,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}}

    return app


@dataclass
class Endpoints:
    gateway: str
    tiny: str
    judge: str
    app: FastAPI


@pytest.fixture(scope="module")
def endpoints(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Endpoints]:
    from tunery.testing import build_tiny_llama
    from tunery_gateway.app import create_app
    from tunery_gateway.settings import GatewaySettings

    tmp: Path = tmp_path_factory.mktemp("judges")
    tiny = build_tiny_llama(tmp / "tiny-llama", data_dir=tmp)
    settings = GatewaySettings(data_dir=tmp / "gw", base_models=str(tiny), database_url="", admin_api_key=ADMIN_KEY,
                               listen_job_events=False, torch_threads=1, default_max_tokens=16)
    gateway = ServerThread(create_app(settings)).start()
    app = judge_app()
    judge = ServerThread(app).start()
    try:
        yield Endpoints(f"{gateway.url}/v1", tiny.name, f"{judge.url}/v1", app)
    finally:
        judge.stop()
        gateway.stop()


def run(url: str, make: Callable[[GraderContext], Grader], call: Callable[[Grader], Awaitable[T]]) -> T:
    """Build a grader with a real client for ``url`` and await ``call`` on it (one event loop per call)."""

    async def go() -> T:
        client = OpenAIModelClient(url, ADMIN_KEY, max_retries=0)
        try:
            return await call(make(GraderContext(models=client, scorer=client)))
        finally:
            await client.close()

    return asyncio.run(go())


ITEM = Item(index=0, messages=[{"role": "user", "content": "What is 2 + 2?"}], reference="4")
SHORT = {"max_tokens": 16}


def ans(content: str, model: str = "base") -> Answer:
    return Answer(model=model, content=content)


def scores(ep: Endpoints, config: dict[str, Any], contents: list[str]) -> list[Any]:
    async def call(g: Grader) -> list[Any]:
        return [await g.grade(ITEM, ans(c)) for c in contents]

    return run(ep.judge, lambda ctx: ScoreModelGrader({"model": "echo", **config}, ctx), call)


def test_tiny_model_verdicts_are_counted_as_unparseable(endpoints: Endpoints) -> None:
    base = {"model": endpoints.tiny, "sampling_params": SHORT}

    async def all_three() -> list[Any]:
        client = OpenAIModelClient(endpoints.gateway, ADMIN_KEY, max_retries=0)
        ctx = GraderContext(models=client)
        scorer = ScoreModelGrader({**base, "range": [1, 10]}, ctx)
        try:
            results = await asyncio.gather(
                scorer.grade(ITEM, ans("4")),
                LabelModelGrader({**base, "labels": ["correct", "incorrect"], "passing_labels": ["correct"]},
                                 ctx).grade(ITEM, ans("4")),
                PairwiseModelGrader(base, ctx).grade_pair(ITEM, ans("4", "a"), ans("5", "b")))
            # What the model says to the same judge prompt, asked directly (greedy decoding: the same text).
            direct = await client.chat(endpoints.tiny, scorer.messages(ITEM, {"sample": ans("4")}), max_tokens=16)
            return [*results, direct]
        finally:
            await client.close()

    score, label, pair, direct = asyncio.run(all_three())
    for r in (score, label):
        assert (r.error, r.score, r.passed) == ("unparseable_verdict", None, None)
        assert r.rationale and r.error_message  # the raw answer is kept, and why it was not read
    assert direct.error == "" and score.rationale == direct.content
    assert pair.error == "unparseable_verdict" and pair.winner == ""
    assert "order A-B" in pair.rationale and "order B-A" in pair.rationale


def test_score_model_parses_and_checks_the_range(endpoints: Endpoints) -> None:
    got = scores(endpoints, {"range": [1, 10], "pass_threshold": 7},
                 ['{"score": 8, "rationale": "right"}', "Sure! ```json\n{\"score\": 3.5}\n```", "Score: 7",
                  "9", '{"score": 11}', "I think it is good", '{"score": "high"}'])
    assert [(r.score, r.passed) for r in got[:4]] == [(8.0, True), (3.5, False), (7.0, True), (9.0, True)]
    assert got[0].rationale == "right"
    for r, words in zip(got[4:], ("outside the range", "no score", "not a number"), strict=True):
        assert r.error == "unparseable_verdict" and words in r.error_message and r.score is None
        assert r.rationale  # raw answer
    assert got[5].rationale == "I think it is good"


def test_score_model_prompt_holds_the_reply_format_rubric_and_reference(endpoints: Endpoints) -> None:
    ep = endpoints
    ep.app.state.calls.clear()
    scores(ep, {"rubric": "Exactness for {{item.input}}"}, ['{"score": 1}'])
    custom = {"input": [{"role": "user", "content": "Grade this: GRADE<{{sample.output_text}}> against "
                                                    "{{item.reference}}"}], "sampling_params": {"max_tokens": 7}}
    scores(ep, custom, ['{"score": 0.25}'])
    default, mine = ep.app.state.calls
    system, user = default["messages"]
    assert system["role"] == "system" and "Exactness for What is 2 + 2?" in system["content"]
    assert '"score": <a number from 0 to 1' in system["content"]
    assert "Reference answer:\n4" in user["content"] and "user: What is 2 + 2?" in user["content"]
    assert default["temperature"] == 0 and default["max_tokens"] == 512
    assert [m["role"] for m in mine["messages"]] == ["system", "user"]  # the reply format gets its own message
    assert mine["messages"][1]["content"] == 'Grade this: GRADE<{"score": 0.25}> against 4'
    assert mine["max_tokens"] == 7


def test_label_model(endpoints: Endpoints) -> None:
    config = {"model": "echo", "labels": ["correct", "partly", "wrong"], "passing_labels": ["correct", "partly"]}

    async def call(g: Grader) -> list[Any]:
        return [await g.grade(ITEM, ans(c)) for c in
                ('{"label": "Correct", "rationale": "exact"}', "wrong.", "This one is partly right",
                 "correct or wrong?", '{"label": "maybe"}', "no idea")]

    got = run(endpoints.judge, lambda ctx: LabelModelGrader(config, ctx), call)
    assert [(r.label, r.score, r.passed) for r in got[:3]] == [
        ("correct", 1.0, True), ("wrong", 0.0, False), ("partly", 1.0, True)]
    assert got[0].rationale == "exact"
    assert [r.error for r in got[3:]] == ["unparseable_verdict"] * 3
    assert "several labels" in got[3].error_message and got[4].rationale == '{"label": "maybe"}'


def test_pairwise_cancels_position_bias(endpoints: Endpoints) -> None:
    short, long = ans("4", "base"), ans("The answer is 4.", "tuned")

    def pair(model: str, a: Answer, b: Answer, **config: Any) -> Any:
        return run(endpoints.judge, lambda ctx: PairwiseModelGrader({"model": model, **config}, ctx),
                   lambda g: g.grade_pair(ITEM, a, b))

    # A judge that always picks the first answer shown agrees with neither order: a tie.
    biased = pair("first", short, long)
    assert (biased.winner, biased.error) == ("tie", "")
    assert "order A-B: a: the first one" in biased.rationale and "order B-A: b (as shown: a)" in biased.rationale
    # Asked once, the same judge's bias goes through.
    assert pair("first", short, long, both_orders=False).winner == "a"
    # A consistent judge names the same winner in both orders, whichever side it is on.
    assert pair("longer", short, long).winner == "b"
    assert pair("longer", long, short).winner == "a"
    assert pair("longer", short, ans("5", "x")).winner == "tie"


def test_judge_failures_are_results_not_exceptions(endpoints: Endpoints) -> None:
    r = run(endpoints.judge, lambda ctx: ScoreModelGrader({"model": "broken"}, ctx), lambda g: g.grade(ITEM, ans("4")))
    assert r.error == "judge_failed" and "judge is broken" in r.error_message
    p = run(endpoints.judge, lambda ctx: PairwiseModelGrader({"model": "broken"}, ctx),
            lambda g: g.grade_pair(ITEM, ans("4"), ans("5")))
    assert p.error == "judge_failed" and p.winner == ""
    missing = run(endpoints.judge, lambda ctx: ScoreModelGrader({"model": "echo", "rubric": "{{item.topic}}"}, ctx),
                  lambda g: g.grade(ITEM, ans("4")))
    assert missing.error == "missing_field" and "item.topic" in missing.error_message


@pytest.mark.parametrize(("cls", "config", "field"), [
    (ScoreModelGrader, {}, "config.model"),
    (ScoreModelGrader, {"model": "j", "range": [5, 1]}, "config.range"),
    (ScoreModelGrader, {"model": "j", "range": [0, 1], "pass_threshold": 3}, "config.pass_threshold"),
    (ScoreModelGrader, {"model": "j", "input": [{"role": "user"}]}, "config.input[0].content"),
    (ScoreModelGrader, {"model": "j", "input": [{"role": "user", "content": "{{sample_a.output_text}}"}]},
     "config.input[0].content"),
    (ScoreModelGrader, {"model": "j", "api_key_env": "TUNERY_TEST_NO_SUCH_VARIABLE"}, "config.api_key_env"),
    (LabelModelGrader, {"model": "j", "labels": ["good"], "passing_labels": ["good"]}, "config.labels"),
    (LabelModelGrader, {"model": "j", "labels": ["good", "Good"], "passing_labels": ["good"]}, "config.labels"),
    (LabelModelGrader, {"model": "j", "labels": ["good", "bad"], "passing_labels": ["bad", "fine"]},
     "config.passing_labels[1]"),
    (PairwiseModelGrader, {"model": "j", "input": [{"role": "user", "content": "{{sample.output_text}}"}]},
     "config.input[0].content"),
])
def test_judge_bad_config(cls: type[Grader], config: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidArgument) as err:
        cls(config, GraderContext(models=OpenAIModelClient("http://127.0.0.1:9/v1", "k")))
    assert err.value.field == field and cls.name in err.value.message
    with pytest.raises(FailedPrecondition):
        ScoreModelGrader({"model": "j"}, GraderContext())


def test_reference_loss_through_the_gateway(endpoints: Endpoints) -> None:
    ep = endpoints
    messages = ITEM.messages

    async def call(g: Grader) -> list[Any]:
        client = OpenAIModelClient(ep.gateway, ADMIN_KEY, max_retries=0)
        try:
            direct = await client.score(ep.tiny, messages, "2 + 2 = 4.")
        finally:
            await client.close()
        item = Item(index=1, messages=messages, reference="2 + 2 = 4.")
        return [direct, await g.grade(item, ans("whatever", ep.tiny)),
                # a label that is not the endpoint's name: the model at the endpoint is scored
                await g.grade(item, Answer(model="base", content="x", endpoint_model=ep.tiny)),
                await g.grade(item, ans("x", "no-such-model")),
                await g.grade(Item(index=2, messages=messages, reference=""), ans("x", ep.tiny))]

    direct, r, relabelled, unknown, no_ref = run(
        ep.gateway, lambda ctx: ReferenceLossGrader({"max_loss": 100}, ctx), call)
    assert direct["tokens"] > 0 and direct["perplexity"] == pytest.approx(math.exp(direct["loss"]))
    assert (r.score, r.passed, r.error) == (direct["loss"], True, "")
    assert r.rationale.startswith(f"{int(direct['tokens'])} tokens, perplexity ")
    assert relabelled.score == direct["loss"]
    assert unknown.error == "score_failed" and "404" in unknown.error_message
    assert "no-such-model" in unknown.error_message
    assert no_ref.error == "no_reference"
    assert ReferenceLossGrader.higher_is_better is False and ReferenceLossGrader.needs_reference
    g = ReferenceLossGrader({}, GraderContext(scorer=OpenAIModelClient(ep.gateway, ADMIN_KEY)))
    extra = g.aggregate_extra([GradeResult(score=1.0), GradeResult(score=3.0), GradeResult(error="score_failed")])
    assert extra == {"perplexity": pytest.approx(math.exp(2.0))}
    assert g.aggregate_extra([]) == {}
    with pytest.raises(FailedPrecondition):
        ReferenceLossGrader({}, GraderContext())
    with pytest.raises(InvalidArgument) as err:
        ReferenceLossGrader({"max_loss": -1}, g.context)
    assert err.value.field == "config.max_loss"
