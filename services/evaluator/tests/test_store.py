"""The evaluator's store on its own, against SQLite and (when TUNERY_TEST_DATABASE_URL is set) a fresh PostgreSQL
database: evaluations with idempotency keys, per-example results stored once with gap-free sequences (also when many
finish at once), a result refused once the evaluation ended, the spec's JSON round trip, lists with filters."""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

import tunery_evaluator.models  # noqa: F401 - registers the tables
from tunery.errors import FailedPrecondition, NotFound
from tunery.runtime.store import init_schema, make_engine
from tunery.testing import fresh_postgres_database, postgres_admin_url
from tunery_evaluator.domain import (
    DatasetVersionRef,
    ErrorInfo,
    Evaluation,
    EvaluationData,
    EvaluationSpec,
    ExampleResult,
    GenerationConfig,
    Grade,
    GraderSpec,
    ModelRef,
    Summary,
    now,
)
from tunery_evaluator.graders.base import Answer, Item
from tunery_evaluator.store import EvaluationStore, new_evaluation_id


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[EvaluationStore]:
    with contextlib.ExitStack() as cleanup:
        if request.param == "postgres":
            admin = postgres_admin_url()
            if not admin:
                pytest.skip("TUNERY_TEST_DATABASE_URL not set")
            url = cleanup.enter_context(fresh_postgres_database(admin))
        else:
            url = f"sqlite:///{tmp_path_factory.mktemp('evaluator-store') / 'evaluator.db'}"
        engine = make_engine(url)
        cleanup.callback(engine.dispose)
        init_schema(engine)
        yield EvaluationStore(engine)


SPEC = EvaluationSpec(
    models=(ModelRef("base"), ModelRef("ft:base:x:job-1", label="tuned"),
            ModelRef("gpt-x", base_url="https://api.example.com/v1", api_key="sk-secret")),
    data=EvaluationData(DatasetVersionRef("ds_1", 2), limit=10),
    graders=(GraderSpec("word_overlap", "word_overlap", {"pass_threshold": 0.25}),),
    generation=GenerationConfig(temperature=None, max_tokens=8, seed=3, stop=("\n",), concurrency=2, top_p=0.9),
    display_name="demo", metadata={"team": "a"}, seed=11,
)


def make(store: EvaluationStore, n: int = 3, *, key: str = "", job_id: str = "", dataset: str = "ds_1",
         models: tuple[ModelRef, ...] = SPEC.models) -> Evaluation:
    spec = EvaluationSpec(models, SPEC.data, SPEC.graders, SPEC.generation, SPEC.display_name, SPEC.metadata,
                          SPEC.seed, key)
    ev = Evaluation(new_evaluation_id(), spec, "queued", now(), resolved_data=DatasetVersionRef(dataset, 2),
                    job_id=job_id)
    items = [Item(i, [{"role": "user", "content": f"q{i}"}], f"a{i}", f"{dataset}:2:{i}") for i in range(n)]
    stored, existing = store.create(ev, items, dataset_name=f"name-{dataset}")
    assert not existing
    return stored


def result(ev: Evaluation, index: int, *, error: str = "") -> ExampleResult:
    answers = [Answer("base", f"answer {index}", "stop", 3, 2, 1.5, error=error, error_message=error and "boom")]
    grades = [Grade("word_overlap", "base", score=0.5, passed=True)] if not error else \
        [Grade("word_overlap", "base", error="model_error", error_message="boom")]
    return ExampleResult(ev.id, index, "", [], "", answers, grades)


def test_spec_round_trips_and_idempotency_keys_return_the_first(store: EvaluationStore) -> None:
    ev = make(store, key="key-1")
    got = store.get(ev.id)
    assert got.spec == dataclasses.replace(SPEC, idempotency_key="key-1")  # api keys included: kept here only
    assert got.state == "queued" and got.total_examples == 3 and got.resolved_data == DatasetVersionRef("ds_1", 2)
    again = Evaluation(new_evaluation_id(), got.spec, "queued", now())
    earlier, existing = store.create(again, [], "x")
    assert existing and earlier.id == ev.id
    assert [(i.index, i.reference, i.example_id) for i in store.items(ev.id)] == [
        (0, "a0", "ds_1:2:0"), (1, "a1", "ds_1:2:1"), (2, "a2", "ds_1:2:2")]
    with pytest.raises(NotFound) as info:
        store.get("eval-none")
    assert info.value.code == "evaluation_not_found"


def test_results_are_stored_once_with_gap_free_sequences(store: EvaluationStore) -> None:
    ev = make(store, n=40)
    store.start_attempt(ev.id)
    with ThreadPoolExecutor(8) as pool:  # many examples finish at once, some of them twice (a redelivery)
        stored = list(pool.map(lambda i: store.add_result(result(ev, i % 40, error="x" if i % 7 == 0 else "")),
                               range(60)))
    kept = [r for r in stored if r is not None]
    assert sorted(r.sequence for r in kept) == list(range(1, 41))
    assert sorted(r.index for r in kept) == list(range(40))
    got = store.get(ev.id)
    errored = {i % 40 for i in range(60) if i % 7 == 0}
    assert got.finished_examples == 40 and got.state == "running" and got.attempts == 1
    assert got.errored_examples == len({r.index for r in kept if r.errored})
    assert len(errored) >= got.errored_examples > 0
    assert store.finished_indices(ev.id) == set(range(40))
    page = store.results(ev.id, after_sequence=35)
    assert [r.sequence for r in page] == [36, 37, 38, 39, 40]
    r = page[0]
    assert r.messages == [{"role": "user", "content": f"q{r.index}"}] and r.reference == f"a{r.index}"
    assert r.answers[0].model == "base" and r.grades[0].grader == "word_overlap" and r.finish_time is not None
    assert len(store.all_results(ev.id)) == 40


def test_an_ended_evaluation_takes_no_more_results_and_ends_once(store: EvaluationStore) -> None:
    ev = make(store)
    store.start_attempt(ev.id)
    assert store.add_result(result(ev, 0)) is not None
    ended, changed = store.finish(ev.id, "cancelled", summary=Summary(model_errors={"base": 1}))
    assert changed and ended.state == "cancelled" and ended.summary == Summary(model_errors={"base": 1})
    assert store.add_result(result(ev, 1)) is None and store.get(ev.id).finished_examples == 1
    again, changed = store.finish(ev.id, "failed", error=ErrorInfo("x", "y"))
    assert not changed and again.state == "cancelled" and again.error is None
    assert store.start_attempt(ev.id).attempts == 1  # a late delivery does not restart it
    store.delete(ev.id)
    with pytest.raises(NotFound):
        store.get(ev.id)


def test_active_evaluations_cannot_be_deleted(store: EvaluationStore) -> None:
    ev = make(store)
    with pytest.raises(FailedPrecondition) as info:
        store.delete(ev.id)
    assert info.value.code == "evaluation_active"


def test_list_filters_and_pages(store: EvaluationStore) -> None:
    a = make(store, job_id="ftjob-a", dataset="ds_list")
    b = make(store, dataset="ds_list", models=(ModelRef("other_model"),))
    store.finish(b.id, "succeeded")
    evs, _, total = store.list_evaluations(10, "", dataset="ds_list")
    assert total == 2 and {e.id for e in evs} == {a.id, b.id}
    assert [e.id for e in store.list_evaluations(10, "", dataset="name-ds_list", states=["succeeded"])[0]] == [b.id]
    assert [e.id for e in store.list_evaluations(10, "", job_id="ftjob-a")[0]] == [a.id]
    assert [e.id for e in store.list_evaluations(10, "", model="other_model")[0]] == [b.id]
    assert not store.list_evaluations(10, "", model="other")[0]  # whole names only
    first, token, _ = store.list_evaluations(1, "", dataset="ds_list")
    second, last, _ = store.list_evaluations(1, token, dataset="ds_list")
    assert len(first) == len(second) == 1 and first[0].id != second[0].id and last == ""
