"""The evaluator when things go wrong, on the session's evaluation stack (tests/evalstack.py): the gateway going
away and coming back, the evaluator killed mid-run and resuming without recomputing finished examples, cancelling
a running or a waiting evaluation, endpoints that stay away or reject a key. Each test leaves the shared stack as it
found it (gateway serving, evaluator running with the session's settings), whatever order the tests run in."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from evalstack import FAILED, GATEWAY_KEY, SUCCEEDED, chat, error_of
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from tunery.common.v1 import common_pb2
from tunery.evaluator.v1 import evaluator_pb2 as pb
from tunery.runtime.natsd import free_port
from tunery_evaluator.testing import get, results, wait_state, wait_until
from tunery_gateway.testing import ServerThread

if TYPE_CHECKING:
    from evalstack import Evaluation


@pytest.fixture(autouse=True)
def healthy_after(evaluation: Evaluation) -> Iterator[None]:
    """Whatever a test stopped is back before the next test, in this file or another."""
    yield
    evaluation.healthy()


def test_the_run_waits_for_the_gateway_and_finishes_when_it_is_back(evaluation: Evaluation) -> None:
    name = evaluation.version([chat(i) for i in range(2)])
    url = evaluation.gateway_v1
    models = [pb.ModelRef(model=evaluation.base, base_url=url, api_key=GATEWAY_KEY)]
    evaluation.gateway.stop()  # the gateway goes away
    try:
        ev = evaluation.create(evaluation.spec(name, models=models))
        _, waiting, _ = evaluation.events.wait_for("evaluation.waiting", ev.id, timeout=60)
        payload = pb.EvaluationEvent()
        waiting.payload.Unpack(payload)
        assert payload.error.code == "endpoint_unavailable" and str(evaluation.gateway.port) in payload.error.message
        assert get(evaluation.stub, ev.id).state == common_pb2.JOB_STATE_RUNNING
    finally:
        evaluation.start_gateway()  # and comes back on the same port
    done = wait_state(evaluation.stub, ev.id)
    assert done.state == SUCCEEDED and done.errored_examples == 0 and done.finished_examples == 2
    stored = get(evaluation.stub, ev.id).spec.models[0]
    assert stored.api_key_set and not stored.api_key


class Gate:
    """An OpenAI-compatible endpoint in front of the gateway that counts each prompt's requests and, once `allow`
    requests went through, holds the next ones until `release()` (so a test can act while one is in flight)."""

    def __init__(self, upstream: str, allow: int) -> None:
        self.upstream, self.allow = upstream, allow
        self.counts: Counter[str] = Counter()
        self.passed = 0
        self.held = threading.Event()
        self.open = threading.Event()
        app = FastAPI()

        @app.post("/v1/chat/completions")
        async def chat(request: Request) -> Any:
            import asyncio

            body = await request.json()
            self.counts[body["messages"][-1]["content"]] += 1
            if self.passed >= self.allow:
                self.held.set()
                while not self.open.is_set():
                    await asyncio.sleep(0.02)
            self.passed += 1
            async with httpx.AsyncClient(timeout=60) as c:
                r = await c.post(f"{self.upstream}/chat/completions", json=body,
                                 headers={"Authorization": request.headers.get("authorization", "")})
            return JSONResponse(r.json(), r.status_code)

        self.server = ServerThread(app).start()

    def release(self) -> None:
        self.open.set()


def test_a_killed_evaluator_resumes_without_recomputing_finished_examples(evaluation: Evaluation) -> None:
    n = 5
    name = evaluation.version([chat(i) for i in range(n)])
    gate = Gate(evaluation.gateway_v1, allow=2)
    try:
        models = [pb.ModelRef(model=evaluation.base, base_url=f"{gate.server.url}/v1", api_key=GATEWAY_KEY)]
        one_by_one = pb.GenerationConfig(max_tokens=4, concurrency=1)
        ev = evaluation.create(evaluation.spec(name, models=models, generation=one_by_one))
        assert gate.held.wait(60), "the third request never reached the endpoint"
        stored = wait_until("two results stored", lambda: get(evaluation.stub, ev.id).finished_examples == 2 and
                            results(evaluation.stub, ev.id)[0])
        evaluation.evaluator.kill()  # SIGKILL with the third example in flight
        gate.release()
        evaluation.evaluator.start()
        done = wait_state(evaluation.stub, ev.id, timeout=120)
        assert done.state == SUCCEEDED and done.finished_examples == n and done.attempts == 2
        after = results(evaluation.stub, ev.id)[0]
        assert [r.sequence for r in after] == list(range(1, n + 1))
        # The two examples stored before the kill kept their results and were not asked again.
        assert [(r.index, r.finish_time) for r in after[:2]] == [(r.index, r.finish_time) for r in stored]
        prompts = {i: f"What is {i} doubled?" for i in range(n)}
        assert [gate.counts[prompts[i]] for i in range(n)] == [1, 1, 2, 1, 1]  # only the one in flight twice
    finally:
        gate.release()
        gate.server.stop()
        if evaluation.evaluator.proc is None or evaluation.evaluator.proc.poll() is not None:
            evaluation.evaluator.start()


def test_cancelling_a_running_evaluation_keeps_what_it_finished(evaluation: Evaluation) -> None:
    name = evaluation.version([chat(i) for i in range(4)])
    gate = Gate(evaluation.gateway_v1, allow=1)
    try:
        models = [pb.ModelRef(model=evaluation.base, base_url=f"{gate.server.url}/v1", api_key=GATEWAY_KEY)]
        one_by_one = pb.GenerationConfig(max_tokens=4, concurrency=1)
        ev = evaluation.create(evaluation.spec(name, models=models, generation=one_by_one))
        assert gate.held.wait(60), "the second request never reached the endpoint"
        cancelled = evaluation.stub.CancelEvaluation(pb.CancelEvaluationRequest(evaluation_id=ev.id)).evaluation
        assert cancelled.state == common_pb2.JOB_STATE_CANCELLED and cancelled.finished_examples == 1
        assert [g.count for g in cancelled.summary.graders] == [1]
        gate.release()  # the answer in flight comes back after the cancel: it is not stored
        evaluation.events.wait_for("evaluation.cancelled", ev.id)
        wait_until("the run noticed", lambda: f"evaluation {ev.id} ended cancelled" in evaluation.evaluator.log(), 60)
        assert get(evaluation.stub, ev.id).finished_examples == 1 and len(results(evaluation.stub, ev.id)[0]) == 1
        err = error_of(lambda: evaluation.stub.CancelEvaluation(pb.CancelEvaluationRequest(evaluation_id=ev.id)))
        assert err.code == "evaluation_finished"
    finally:
        gate.release()
        gate.server.stop()


def test_cancelling_stops_waiting_for_an_endpoint(evaluation: Evaluation) -> None:
    name = evaluation.version([chat(0)])
    dead = f"http://127.0.0.1:{free_port()}/v1"
    ev = evaluation.create(evaluation.spec(name, models=[pb.ModelRef(model=evaluation.base, base_url=dead)]))
    evaluation.events.wait_for("evaluation.waiting", ev.id, timeout=60)
    evaluation.stub.CancelEvaluation(pb.CancelEvaluationRequest(evaluation_id=ev.id))
    # The run lets go of its worker slot now, not after gateway_wait_seconds (300 s here).
    wait_until("the run ended", lambda: f"evaluation {ev.id} ended cancelled" in evaluation.evaluator.log(), 60)
    assert get(evaluation.stub, ev.id).state == common_pb2.JOB_STATE_CANCELLED


def test_an_endpoint_that_stays_away_or_a_rejected_key_is_named_clearly(evaluation: Evaluation) -> None:
    name = evaluation.version([chat(0)])
    dead = f"http://127.0.0.1:{free_port()}/v1"
    # One restart for both: a short wait for endpoints, and a gateway key the gateway rejects.
    evaluation.evaluator.stop()
    evaluation.evaluator.start(TUNERY_EVALUATOR_GATEWAY_WAIT_SECONDS="1",
                          TUNERY_EVALUATOR_GATEWAY_API_KEY="tny-000000000000-not-a-key-the-gateway-knows")
    try:
        err = error_of(lambda: evaluation.create(evaluation.spec(name)))  # the models are checked with the gateway
        assert (type(err).__name__, err.code, err.field) == ("FailedPrecondition", "gateway_rejected_key",
                                                             "models[0].model")
        assert "TUNERY_EVALUATOR_GATEWAY_API_KEY" in err.message and str(evaluation.gateway.port) in err.message
        # An external endpoint's wrong key: each answer says which endpoint rejected the key of which model.
        wrong = [pb.ModelRef(model=evaluation.base, base_url=evaluation.gateway_v1, api_key="tny-000000000000-wrong")]
        ev = evaluation.create(evaluation.spec(name, models=wrong))
        done = wait_state(evaluation.stub, ev.id, timeout=60)
        assert done.state == SUCCEEDED and done.errored_examples == 1
        (answer,) = results(evaluation.stub, ev.id)[0][0].answers
        assert answer.error == "unauthenticated" and evaluation.gateway_v1 in answer.error_message
        assert evaluation.base in answer.error_message and "invalid API key" in answer.error_message
        ev = evaluation.create(evaluation.spec(name, models=[pb.ModelRef(model=evaluation.base, base_url=dead)]))
        done = wait_state(evaluation.stub, ev.id, timeout=60)
        assert done.state == FAILED and done.error.code == "endpoint_unavailable"
        assert dead.removesuffix("/v1") in done.error.message and "could not be reached" in done.error.message
    finally:
        evaluation.evaluator.stop()
        evaluation.evaluator.start()
