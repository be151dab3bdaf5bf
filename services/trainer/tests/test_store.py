"""The trainer's store on its own, against SQLite and (when TUNERY_TEST_DATABASE_URL is set) a fresh PostgreSQL
database: jobs with idempotency keys, state transitions, gap-free event sequences de-duplicated by event id,
checkpoints, and listing with filters and pages."""

from __future__ import annotations

import contextlib
import dataclasses
import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import insert
from sqlmodel import SQLModel

from tunery.errors import FailedPrecondition, InvalidArgument, NotFound
from tunery.runtime.store import init_schema, make_engine
from tunery.testing import fresh_postgres_database, postgres_admin_url
from tunery.trainer.v1 import trainer_pb2 as pb
from tunery_trainer import convert, records, wire
from tunery_trainer.domain import (
    Checkpoint,
    DatasetRef,
    GenerationConfig,
    GraderSpec,
    Hyperparameters,
    Job,
    JobError,
    JobEvaluation,
    JobEvaluationSpec,
    JobSpec,
    LoraSettings,
    Metrics,
    ModelRef,
    ResolvedHyperparameters,
    StepLog,
    job_event,
    state_event,
)
from tunery_trainer.models import JobEventRow, JobRow
from tunery_trainer.store import JobStore, new_job_id

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[JobStore]:
    """A SQLite file, or a fresh PostgreSQL database (dropped afterwards) as the dataset service's tests make."""
    with contextlib.ExitStack() as cleanup:
        if request.param == "postgres":
            admin = postgres_admin_url()
            if not admin:
                pytest.skip("TUNERY_TEST_DATABASE_URL not set")
            url = cleanup.enter_context(fresh_postgres_database(admin))
        else:
            url = f"sqlite:///{tmp_path_factory.mktemp('trainer-store') / 'trainer.db'}"
        engine = make_engine(url)
        cleanup.callback(engine.dispose)
        init_schema(engine)
        yield JobStore(engine, legacy_event=wire.decode_stored_event)


SPEC = JobSpec(
    training_data=DatasetRef("ds_1", 2),
    base_model="tiny",
    validation_split=0.25,
    hyperparameters=Hyperparameters(n_epochs=2, learning_rate_multiplier=0.5),
    lora=LoraSettings(rank=8, target_modules=("q_proj", "v_proj")),
    seed=7,
    suffix="doubler",
    backend="echo",
    backend_config={"step_seconds": 0.1, "nested": {"a": [1, 2]}},
)


def make_job(key: str | None = None, *, state: str = "validating_files", created: datetime = T0, **kw: object) -> Job:
    job_id = new_job_id()
    values: dict[str, object] = dict(
        id=job_id,
        state=state,
        spec=SPEC,
        hyperparameters=ResolvedHyperparameters(2, 4, 1e-4, 1, 0.0, 0.0, 0.5),
        base_model="tiny",
        dataset_id="ds_1",
        dataset_version=2,
        fine_tuned_model=f"ft:tiny:doubler:{job_id}",
        idempotency_key=key,
        created_at=created,
    )
    values.update(kw)
    return Job(**values)  # type: ignore[arg-type]


def test_a_job_comes_back_as_it_went_in(store: JobStore) -> None:
    job, existing = store.create(make_job())
    assert not existing
    got = store.get(job.id)
    assert got == job
    assert got.spec == SPEC and got.hyperparameters.learning_rate_multiplier == 0.5
    assert got.created_at == T0 and got.created_at.tzinfo is not None
    assert got.error is None and got.metrics == Metrics()
    with pytest.raises(NotFound):
        store.get("ftjob-missing")
    with pytest.raises(InvalidArgument):
        store.get("")


def test_the_same_idempotency_key_gives_one_job(store: JobStore) -> None:
    key = f"key-{new_job_id()}"
    first, existing = store.create(make_job(key))
    assert not existing
    again, existing = store.create(make_job(key))
    assert existing and again.id == first.id
    assert store.find_by_key(key) == first
    assert store.find_by_key("no-such-key") is None
    # Racing creations with one key (retried requests on several replicas): one job, the others get it back.
    race = f"race-{new_job_id()}"
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda _: store.create(make_job(race)), range(4)))
    assert len({job.id for job, _ in results}) == 1
    assert sorted(existing for _, existing in results) == [False, True, True, True]


def test_transitions_follow_the_state_machine(store: JobStore) -> None:
    job, _ = store.create(make_job())
    old, queued = store.transition(job.id, "queued", generation=1)
    assert (old, queued.state, queued.generation) == ("validating_files", "queued", 1)
    with pytest.raises(FailedPrecondition) as illegal:
        store.transition(job.id, "succeeded")  # queued -> succeeded skips running
    assert illegal.value.code == "invalid_state" and "it is queued" in illegal.value.message
    with pytest.raises(FailedPrecondition) as not_allowed:
        store.transition(job.id, "queued", allowed_from=["paused"], action="resume")
    assert "cannot resume job" in not_allowed.value.message
    store.transition(job.id, "running", worker="w1", attempts=1)
    old, failed = store.transition(
        job.id, "failed", error_code="training_error", error_message="boom", error_param="lora.rank"
    )
    assert old == "running"
    assert failed.error == JobError("training_error", "boom", "lora.rank")
    assert failed.ended_at is not None and failed.worker == "w1"
    with pytest.raises(FailedPrecondition) as ended:
        store.transition(job.id, "cancelled", action="cancel")
    assert "already ended (failed)" in ended.value.message
    with pytest.raises(NotFound):
        store.transition("ftjob-missing", "queued")


def test_updates_and_unfinished(store: JobStore) -> None:
    job, _ = store.create(make_job())
    store.update(job.id, step=3, total_steps=10, train_loss=1.5, valid_token_accuracy=0.25, train_file="a.jsonl")
    got = store.get(job.id)
    assert (got.step, got.total_steps, got.train_file) == (3, 10, "a.jsonl")
    assert got.metrics == Metrics(train_loss=1.5, valid_token_accuracy=0.25)
    assert job.id in {j.id for j in store.unfinished("validating_files")}
    store.transition(job.id, "cancelled")
    assert job.id not in {j.id for j in store.unfinished("validating_files")}


def test_events_get_gap_free_sequences_and_duplicates_are_dropped(store: JobStore) -> None:
    a, _ = store.create(make_job())
    b, _ = store.create(make_job())
    created = store.append_event(f"job.{a.id}.created", state_event(a.id, "", "validating_files", "job created"))
    assert created is not None and created.sequence == 1
    assert store.append_event(f"job.{a.id}.created", state_event(a.id, "", "validating_files", "again")) is None
    assert store.append_event(f"job.{b.id}.created", job_event(b.id, "other job")).sequence == 1  # type: ignore[union-attr]
    for step in range(1, 6):
        log = StepLog(step, 5, step / 5, 2.0 / step, 1e-4, 100.0, 0.0, 64)
        stored = store.append_event(f"job.{a.id}.step.{step}", job_event(a.id, f"step {step}", data=log))
        assert stored is not None and stored.sequence == step + 1
        assert store.append_event(f"job.{a.id}.step.{step}", job_event(a.id, "redelivered", data=log)) is None
    events = store.events_after(a.id, 0)
    assert [e.sequence for e in events] == list(range(1, 7))
    assert events[0].data == created.data and events[0].time == created.time
    assert [e.data.step for e in events[1:]] == [1, 2, 3, 4, 5]  # type: ignore[union-attr]
    assert [e.sequence for e in store.events_after(a.id, 4)] == [5, 6]
    assert [e.sequence for e in store.events_after(a.id, 0, limit=2)] == [1, 2]
    assert [e.sequence for e in store.events_after(b.id, 0)] == [1]


def test_events_stored_as_protobuf_stay_readable(store: JobStore) -> None:
    """Rows from before events were stored as JSON hold a serialized trainer.v1.JobEvent."""
    job, _ = store.create(make_job())
    old = state_event(job.id, "running", "succeeded", "trained 10 steps", adapter_path=f"jobs/{job.id}/adapter")
    old = dataclasses.replace(old, sequence=1)
    with store.engine.begin() as conn:
        conn.execute(
            insert(JobEventRow.__table__).values(  # type: ignore[attr-defined]
                job_id=job.id, sequence=1, event_id="legacy", data=convert.event_to_pb(old).SerializeToString()
            )
        )
    assert store.events_after(job.id, 0) == [old]
    assert store.append_event("after-legacy", job_event(job.id, "next")).sequence == 2  # type: ignore[union-attr]


def test_a_spec_stored_as_proto_json_stays_readable(store: JobStore) -> None:
    """Rows from before the store kept plain records: proto JSON (enum names, int64 as strings, camelCase)."""
    from google.protobuf import json_format

    job = make_job()
    spec = convert.spec_to_pb(dataclasses.replace(SPEC, method="dpo"))
    with store.engine.begin() as conn:
        conn.execute(
            insert(JobRow.__table__).values(  # type: ignore[attr-defined]
                id=job.id,
                state="queued",
                spec_json=json_format.MessageToJson(spec, indent=None, preserving_proto_field_name=True),
                resolved_json=json_format.MessageToJson(pb.Hyperparameters(n_epochs=3, batch_size=2), indent=None),
                base_model="tiny",
                dataset_id="ds_1",
                fine_tuned_model="ft:tiny::x",
                created_at=T0,
            )
        )
    got = store.get(job.id)
    assert got.spec == dataclasses.replace(SPEC, method="dpo")
    assert (got.hyperparameters.n_epochs, got.hyperparameters.batch_size) == (3, 2)


def test_checkpoints_one_per_step(store: JobStore) -> None:
    job, _ = store.create(make_job())
    store.add_checkpoint(job.id, Checkpoint(4, 1.0, f"jobs/{job.id}/checkpoints/step-000004", T0))
    store.add_checkpoint(job.id, Checkpoint(2, 0.5, f"jobs/{job.id}/checkpoints/step-000002", T0))
    store.add_checkpoint(job.id, Checkpoint(2, 0.5, "rewritten", T0 + timedelta(seconds=1)))  # a resumed attempt
    assert [(c.step, c.path) for c in store.checkpoints(job.id)] == [
        (2, "rewritten"),
        (4, f"jobs/{job.id}/checkpoints/step-000004"),
    ]
    assert store.checkpoints(job.id)[0].create_time == T0
    with pytest.raises(NotFound):
        store.checkpoints("ftjob-missing")


def test_list_filters_and_pages(store: JobStore) -> None:
    base = f"base-{new_job_id()}"  # this test's jobs only
    made = [
        store.create(make_job(base_model=base, created=T0 + timedelta(minutes=i), dataset_id=f"ds_{i % 2}"))[0]
        for i in range(5)
    ]
    store.transition(made[1].id, "cancelled")
    newest_first = [j.id for j in reversed(made)]
    jobs, token, total = store.list_jobs(2, "", base_model=base)
    assert ([j.id for j in jobs], total) == (newest_first[:2], 5) and token
    jobs, token, _ = store.list_jobs(2, token, base_model=base)
    assert [j.id for j in jobs] == newest_first[2:4] and token
    jobs, token, _ = store.list_jobs(2, token, base_model=base)
    assert [j.id for j in jobs] == newest_first[4:] and token == ""
    jobs, _, total = store.list_jobs(10, "", state="cancelled", base_model=base)
    assert [j.id for j in jobs] == [made[1].id] and total == 1
    jobs, _, total = store.list_jobs(10, "", base_model=base, dataset_ids=["ds_0"])
    assert {j.id for j in jobs} == {made[0].id, made[2].id, made[4].id} and total == 3
    assert store.list_jobs(10, "", base_model=base, dataset_ids=[])[2] == 0
    with pytest.raises(InvalidArgument):
        store.list_jobs(2, "not-a-token")


EVAL_SPEC = dataclasses.replace(
    SPEC,
    evaluation=JobEvaluationSpec(
        graders=(GraderSpec("string_check", "exact", {"operation": "eq"}),),
        generation=GenerationConfig(max_tokens=8, seed=1, stop=("\n",)),
        extra_models=(ModelRef("gpt", base_url="http://127.0.0.1:1/v1", api_key="sk-test", label="ext"),),
    ),
)


def test_the_evaluation_a_job_asked_for_is_kept_with_it(store: JobStore) -> None:
    job, _ = store.create(make_job(spec=EVAL_SPEC))
    got = store.get(job.id)
    assert got.spec == EVAL_SPEC and got.evaluation is None
    assert store.ask_evaluation(job.id) is True
    assert store.ask_evaluation(job.id) is False, "asked once, however often the succeeded event comes"
    assert store.get(job.id).evaluation == JobEvaluation()
    assert job.id in store.unfinished_evaluations()
    store.set_evaluation(job.id, JobEvaluation("eval-1", "running"))
    assert store.get(job.id).evaluation == JobEvaluation("eval-1", "running")
    summary = {"graders": [{"grader": "exact", "model": "base", "mean": 0.5, "count": 4}], "model_errors": {}}
    store.set_evaluation(job.id, JobEvaluation("eval-1", "succeeded", summary))
    done = store.get(job.id).evaluation
    assert done == JobEvaluation("eval-1", "succeeded", summary)
    assert job.id not in store.unfinished_evaluations()
    listed = {j.id: j for j in store.list_jobs(1000, "")[0]}
    assert listed[job.id].evaluation == done and listed[job.id].spec.evaluation == EVAL_SPEC.evaluation
    failed, _ = store.create(make_job(spec=EVAL_SPEC))
    down = JobEvaluation("", "failed", None, JobError("evaluator_unavailable", "down"))
    store.set_evaluation(failed.id, down)
    assert store.get(failed.id).evaluation == down
    assert store.get_evaluation(failed.id) == store.get(failed.id).evaluation
    assert store.get_evaluation(make_job().id) is None


def test_a_database_from_before_evaluations_gains_their_table(tmp_path: Path) -> None:
    """A trainer database without the job_evaluations table (and specs without "evaluation"): create_all adds the
    table at start, and the old job reads as a job that asked for no evaluation."""
    engine = make_engine(f"sqlite:///{tmp_path / 'old.db'}")
    old_tables = [JobRow.__table__, JobEventRow.__table__]  # type: ignore[attr-defined]
    SQLModel.metadata.create_all(engine, tables=old_tables)
    job = make_job()
    spec = json.loads(records.spec_to_json(SPEC))
    del spec["evaluation"]
    with engine.begin() as conn:
        conn.execute(insert(JobRow.__table__).values(  # type: ignore[attr-defined]
            id=job.id, state="succeeded", spec_json=json.dumps(spec), base_model="tiny", dataset_id="ds_1",
            fine_tuned_model=job.fine_tuned_model, created_at=T0))
    init_schema(engine)
    store = JobStore(engine)
    got = store.get(job.id)
    assert got.spec == SPEC and got.spec.evaluation is None and got.evaluation is None
    assert store.unfinished_evaluations() == []
    engine.dispose()
