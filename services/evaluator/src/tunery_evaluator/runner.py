"""Runs one evaluation: every unfinished example through every model, then every grader; each result is stored as
it finishes, so a restarted run picks up where the last one stopped and never recomputes a stored example.

Models are called through the OpenAI-compatible client (the gateway unless a model names its own endpoint) with
``concurrency`` examples in flight, so at most that many requests per model. A model that fails on an example makes
that answer errored (its graders record "model_error") and the run goes on; an endpoint that cannot be reached at
all is waited for, with backoff, up to ``gateway_wait_seconds``, then the evaluation fails saying so.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from itertools import combinations
from typing import Any, Protocol, TypeVar

from tunery.errors import TuneryError
from tunery_evaluator import stats
from tunery_evaluator.client import EndpointDown, OpenAIModelClient
from tunery_evaluator.domain import (
    TERMINAL,
    ErrorInfo,
    Evaluation,
    ExampleResult,
    GenerationConfig,
    Grade,
    GraderSpec,
    ModelRef,
)
from tunery_evaluator.graders import registry
from tunery_evaluator.graders.base import Answer, Grader, GraderContext, GradeResult, Item
from tunery_evaluator.settings import EvaluatorSettings
from tunery_evaluator.store import EvaluationStore

log = logging.getLogger("tunery.evaluator")
T = TypeVar("T")


class EvaluationEvents(Protocol):
    """Where the runner and the service announce what happens (NATS in publish.py)."""

    async def publish(self, event_type: str, ev: Evaluation) -> None: ...


class EndpointGone(Exception):
    def __init__(self, down: EndpointDown, waited: float) -> None:
        super().__init__(f"{down.base_url} could not be reached for {waited:.0f} s ({down.reason})")
        self.down = down


class RunStopped(Exception):
    """The evaluation ended (cancelled) while a call waited for its endpoint."""


class Waiter:
    """Calls that wait out an unreachable endpoint; one outage is announced once (``on_down``); ``stopped`` is asked
    before each retry, so a cancelled evaluation stops waiting."""

    def __init__(self, limit: float, on_down: Callable[[EndpointDown], Awaitable[None]] | None = None,
                 stopped: Callable[[], Awaitable[bool]] | None = None) -> None:
        self.limit = limit
        self.on_down = on_down
        self.stopped = stopped
        self._announced = False

    async def call(self, fn: Callable[[], Awaitable[T]]) -> T:
        started: float | None = None
        delay = 0.25
        while True:
            try:
                out = await fn()
                self._announced = False
                return out
            except EndpointDown as err:
                now = time.monotonic()
                started = started or now
                if now - started >= self.limit:
                    raise EndpointGone(err, now - started) from err
                if self.stopped is not None and await self.stopped():
                    raise RunStopped from err
                if not self._announced:
                    self._announced = True
                    log.warning("%s; waiting up to %.0f s for it", err, self.limit)
                    if self.on_down is not None:
                        await self.on_down(err)
                await asyncio.sleep(min(delay, max(0.0, self.limit - (now - started))))
                delay = min(delay * 2, 5.0)


class ModelAccess:
    """What judges get as ``GraderContext.models`` / ``.scorer``: the runner's client behind its Waiter."""

    def __init__(self, client: OpenAIModelClient, waiter: Waiter) -> None:
        self.client = client
        self.waiter = waiter

    async def chat(self, model: str, messages: list[dict[str, Any]], *, temperature: float = 0.0,
                   max_tokens: int = 256, base_url: str = "", api_key: str = "") -> Answer:
        return await self.waiter.call(lambda: self.client.chat(
            model, messages, temperature=temperature, max_tokens=max_tokens, base_url=base_url, api_key=api_key))

    async def score(self, model: str, messages: list[dict[str, Any]], reference: str) -> dict[str, float]:
        return await self.waiter.call(lambda: self.client.score(model, messages, reference))


async def answer(client: OpenAIModelClient, waiter: Waiter, model: ModelRef, item: Item,
                 gen: GenerationConfig) -> Answer:
    try:
        return await waiter.call(lambda: client.chat(
            model.model, item.messages, temperature=gen.resolved_temperature(), max_tokens=gen.resolved_max_tokens(),
            base_url=model.base_url, api_key=model.api_key, seed=gen.seed, stop=list(gen.stop) or None,
            top_p=gen.top_p, label=model.name))
    except (EndpointGone, RunStopped):
        raise
    except Exception as err:  # anything the client did not foresee is this answer's failure, not the run's
        return Answer(model=model.name, content="", error="endpoint_error",
                      error_message=f"{type(err).__name__}: {err}")


def _threshold(spec: GraderSpec, grader: Grader) -> float | None:
    value = spec.config.get("pass_threshold", grader.pass_threshold)
    return float(value) if isinstance(value, (int, float)) else None


def _grade(spec: GraderSpec, grader: Grader, model: str, r: GradeResult, against: str = "") -> Grade:
    passed = r.passed
    if passed is None and r.score is not None and not r.error and (t := _threshold(spec, grader)) is not None:
        passed = r.score >= t
    return Grade(grader=spec.name, model=model, score=r.score, passed=passed, label=r.label, rationale=r.rationale,
                 error=r.error, error_message=r.error_message, against=against)


async def grade_all(item: Item, answers: list[Answer], graders: list[tuple[GraderSpec, Grader]]) -> list[Grade]:
    """Every grader on every answer (pairwise graders on every pair); a grader's failure is that grade's error."""
    out: list[Grade] = []
    for spec, grader in graders:
        if grader.pairwise:
            for a, b in combinations(answers, 2):
                if a.error or b.error:
                    bad = a if a.error else b
                    out.append(Grade(spec.name, a.model, error="model_error", against=b.model,
                                     error_message=f"{bad.model}: {bad.error_message or bad.error}"))
                    continue
                try:
                    pr = await grader.grade_pair(item, a, b)
                except (EndpointGone, RunStopped):
                    raise
                except Exception as err:
                    out.append(Grade(spec.name, a.model, error="grader_error", against=b.model,
                                     error_message=f"{type(err).__name__}: {err}"))
                    continue
                score = {"a": 1.0, "b": 0.0, "tie": 0.5}.get(pr.winner) if not pr.error else None
                out.append(Grade(spec.name, a.model, score=score, label=pr.winner, rationale=pr.rationale,
                                 error=pr.error, error_message=pr.error_message, against=b.model))
            continue
        for ans in answers:
            if ans.error:
                out.append(Grade(spec.name, ans.model, error="model_error",
                                 error_message=ans.error_message or ans.error))
            elif grader.needs_reference and not item.reference:
                out.append(Grade(spec.name, ans.model, error="no_reference",
                                 error_message="the example has no reference answer (no last assistant turn)"))
            else:
                try:
                    out.append(_grade(spec, grader, ans.model, await grader.grade(item, ans)))
                except (EndpointGone, RunStopped):
                    raise
                except Exception as err:
                    out.append(Grade(spec.name, ans.model, error="grader_error",
                                     error_message=f"{type(err).__name__}: {err}"))
    return out


def grader_meta(graders: list[tuple[GraderSpec, Grader]]) -> list[stats.GraderMeta]:
    return [stats.GraderMeta(s.name, g.higher_is_better, g.pairwise, g.aggregate_extra) for s, g in graders]


class Runner:
    def __init__(self, settings: EvaluatorSettings, store: EvaluationStore, client: OpenAIModelClient,
                 events: EvaluationEvents, notify: Callable[[str], None] | None = None) -> None:
        self.settings = settings
        self.store = store
        self.client = client
        self.events = events
        self.notify = notify or (lambda _id: None)

    async def _db(self, fn: Callable[..., T], *args: Any, **kw: Any) -> T:
        return await asyncio.to_thread(fn, *args, **kw)

    async def publish(self, event_type: str, ev: Evaluation) -> None:
        try:
            await self.events.publish(event_type, ev)
        except Exception as err:  # an event lost to a NATS outage must not lose the run
            log.warning("could not publish %s for %s: %s", event_type, ev.id, err)
        self.notify(ev.id)

    async def run(self, evaluation_id: str) -> Evaluation:
        """Run (or resume) the evaluation to its end; returns it as stored at the end."""
        ev = await self._db(self.store.start_attempt, evaluation_id)
        if ev.state in TERMINAL:
            return ev
        if ev.attempts > self.settings.max_deliver:
            return await self._end(ev, "failed", ErrorInfo(
                "too_many_attempts", f"the evaluation was started {ev.attempts - 1} times without finishing"))
        await self.publish("evaluation.state_changed", ev)
        async def ended() -> bool:
            return await self._db(self.store.state, evaluation_id) in TERMINAL

        waiter = Waiter(self.settings.gateway_wait_seconds, lambda down: self._endpoint_down(ev, down), ended)
        access = ModelAccess(self.client, waiter)
        try:
            graders = registry.build_all(list(ev.spec.graders), GraderContext(access, access, ev.spec.seed))
        except TuneryError as err:  # a grader this process does not have (or no longer accepts this config)
            return await self._end(ev, "failed", ErrorInfo(err.code, f"this evaluator cannot run the evaluation's "
                                                           f"graders: {err.message}", err.field))
        items = await self._db(self.store.items, evaluation_id)
        done = await self._db(self.store.finished_indices, evaluation_id)
        todo: asyncio.Queue[Item] = asyncio.Queue()
        for it in items:
            if it.index not in done:
                todo.put_nowait(it)
        stop = asyncio.Event()

        async def work() -> None:
            while not stop.is_set() and not todo.empty():
                item = todo.get_nowait()
                if await self._db(self.store.state, evaluation_id) in TERMINAL:  # cancelled, maybe elsewhere
                    stop.set()
                    return
                answers = list(await asyncio.gather(
                    *(answer(self.client, waiter, m, item, ev.spec.generation) for m in ev.spec.models)))
                grades = await grade_all(item, answers, graders)
                result = ExampleResult(evaluation_id, item.index, item.example_id, item.messages, item.reference,
                                       answers, grades)
                if await self._db(self.store.add_result, result) is not None:
                    await self.publish("evaluation.progress", await self._db(self.store.get, evaluation_id))

        workers = ev.spec.generation.resolved_concurrency(self.settings.default_concurrency)
        gone: list[EndpointGone] = []
        try:
            async with asyncio.TaskGroup() as tg:
                for _ in range(min(workers, max(1, todo.qsize()))):
                    tg.create_task(work())
        except* EndpointGone as group:
            gone.extend(e for e in group.exceptions if isinstance(e, EndpointGone))
        except* RunStopped:
            pass  # cancelled while waiting: the end below finds it ended
        if gone:
            return await self._end(ev, "failed", ErrorInfo(
                "endpoint_unavailable", f"the evaluation failed: {gone[0]}", "models"), graders)
        current = await self._db(self.store.get, evaluation_id)
        if current.state in TERMINAL:
            return current
        return await self._end(current, "succeeded", None, graders)

    async def _endpoint_down(self, ev: Evaluation, down: EndpointDown) -> None:
        waiting = await self._db(self.store.get, ev.id)
        waiting.error = ErrorInfo("endpoint_unavailable",
                                  f"{down.base_url} cannot be reached ({down.reason}); waiting up to "
                                  f"{self.settings.gateway_wait_seconds:.0f} s")
        await self.publish("evaluation.waiting", waiting)

    async def _end(self, ev: Evaluation, state: str, error: ErrorInfo | None,
                   graders: list[tuple[GraderSpec, Grader]] | None = None) -> Evaluation:
        summary = await self.summarize(ev, graders) if graders is not None else None
        ended, changed = await self._db(self.store.finish, ev.id, state, summary=summary, error=error)
        if changed:
            await self.publish(f"evaluation.{state}", ended)
        return ended

    async def summarize(self, ev: Evaluation, graders: list[tuple[GraderSpec, Grader]] | None = None):  # type: ignore[no-untyped-def]
        if graders is None:  # only their metadata and aggregates are used: no call is made through this access
            access = ModelAccess(self.client, Waiter(0.0))
            graders = registry.build_all(list(ev.spec.graders), GraderContext(access, access, ev.spec.seed))
        results = await self._db(self.store.all_results, ev.id)
        models = [m.name for m in ev.spec.models]
        return await asyncio.to_thread(stats.summarize, results, grader_meta(graders), models, ev.spec.seed)
