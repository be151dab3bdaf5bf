"""All database I/O of the trainer service (synchronous; run in worker threads), on domain objects.

Rows are plain records: the spec and resolved hyperparameters as JSON of the domain dataclasses, events as JSON of
the domain event (records.py); everything else a column per field.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any, cast

import orjson
from sqlalchemy import func, insert, select, update
from sqlalchemy.engine import Engine, Row
from sqlalchemy.exc import IntegrityError

from tunery.errors import FailedPrecondition, InvalidArgument, NotFound
from tunery.pagination import next_token, page_bounds
from tunery_trainer import records, states
from tunery_trainer.domain import Checkpoint, Job, JobError, JobEvaluation, JobEvent, Metrics, now
from tunery_trainer.models import CheckpointRow, JobEvaluationRow, JobEventRow, JobRow
from tunery_trainer.states import State

J = JobRow.__table__
EV = JobEventRow.__table__
CK = CheckpointRow.__table__
E = JobEvaluationRow.__table__
_EVAL_COLS = (E.c.evaluation_id.label("ev_id"), E.c.state.label("ev_state"), E.c.summary_json.label("ev_summary"),
              E.c.error_code.label("ev_code"), E.c.error_message.label("ev_message"),
              E.c.error_param.label("ev_param"), E.c.job_id.label("ev_job"))
# A job with the evaluation it asked for, when there is one (outer join: most jobs have none).
_JOBS = select(J, *_EVAL_COLS).select_from(J.outerjoin(E, E.c.job_id == J.c.id))
_METRICS = ("train_loss", "valid_loss", "valid_token_accuracy", "tokens_per_second")
# Columns that are neither JSON nor folded into nested objects: the same name on Job and on the row.
_PLAIN = (
    "id", "state", "base_model", "dataset_id", "dataset_version", "fine_tuned_model", "idempotency_key", "step",
    "total_steps", "epoch", "trained_tokens", "eta_seconds", "adapter_path", "attempts", "worker", "generation",
    "train_file", "validation_file", "train_examples", "validation_examples",
)  # fmt: skip


def new_job_id() -> str:
    return f"ftjob-{uuid.uuid4().hex[:20]}"


def _utc(dt: datetime) -> datetime:
    """SQLite gives naive datetimes back; they were written in UTC."""
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt


def _opt_utc(dt: datetime | None) -> datetime | None:
    return None if dt is None else _utc(dt)


def _evaluation(evaluation_id: str, state: Any, summary: str, code: str, message: str, param: str) -> JobEvaluation:
    return JobEvaluation(
        evaluation_id=evaluation_id,
        state=state,
        summary=orjson.loads(summary) if summary else None,
        error=JobError(code, message, param) if code else None,
    )


def _job(row: Row[Any]) -> Job:
    r = row._mapping
    return Job(
        evaluation=(
            _evaluation(r["ev_id"], r["ev_state"], r["ev_summary"], r["ev_code"], r["ev_message"], r["ev_param"])
            if r["ev_job"]
            else None
        ),
        **{name: r[name] for name in _PLAIN},
        spec=records.spec_from_json(r["spec_json"]),
        hyperparameters=records.resolved_from_json(r["resolved_json"]),
        created_at=_utc(r["created_at"]),
        started_at=_opt_utc(r["started_at"]),
        ended_at=_opt_utc(r["ended_at"]),
        error=JobError(r["error_code"], r["error_message"], r["error_param"]) if r["error_code"] else None,
        metrics=Metrics(**{name: r[name] for name in _METRICS}),
    )


def _row(job: Job) -> dict[str, Any]:
    err = job.error
    return {
        **{name: getattr(job, name) for name in _PLAIN},
        **{name: getattr(job.metrics, name) for name in _METRICS},
        "spec_json": records.spec_to_json(job.spec),
        "resolved_json": records.resolved_to_json(job.hyperparameters),
        "created_at": job.created_at,
        "started_at": job.started_at,
        "ended_at": job.ended_at,
        "error_code": err.code if err else "",
        "error_message": err.message if err else "",
        "error_param": err.param if err else "",
    }


class JobStore:
    """`legacy_event` decodes event rows stored before events were JSON (serialized protobuf); see app.py."""

    def __init__(self, engine: Engine, legacy_event: Callable[[bytes], JobEvent] | None = None) -> None:
        self.engine = engine
        self.legacy_event = legacy_event

    def create(self, job: Job) -> tuple[Job, bool]:
        """Insert a job; with an idempotency key already used, return that job instead (existing=True)."""
        key = job.idempotency_key
        if key:
            found = self.find_by_key(key)
            if found is not None:
                return found, True
        try:
            with self.engine.begin() as conn:
                conn.execute(insert(J).values(**_row(job)))
        except IntegrityError:
            if key:
                found = self.find_by_key(key)
                if found is not None:
                    return found, True
            raise
        return self.get(job.id), False

    def find_by_key(self, key: str) -> Job | None:
        with self.engine.connect() as conn:
            row = conn.execute(_JOBS.where(J.c.idempotency_key == key)).first()
        return _job(row) if row else None

    def get(self, job_id: str) -> Job:
        if not job_id:
            raise InvalidArgument("field 'job_id' is required", code="missing_field", field="job_id")
        with self.engine.connect() as conn:
            row = conn.execute(_JOBS.where(J.c.id == job_id)).first()
        if row is None:
            raise NotFound(f"job {job_id!r} not found", code="job_not_found", field="job_id")
        return _job(row)

    def list_jobs(
        self,
        page_size: int,
        page_token: str,
        state: str = "",
        base_model: str = "",
        dataset_ids: Sequence[str] | None = None,
    ) -> tuple[list[Job], str, int]:
        """Newest first; empty filters match everything; (jobs, next page token, total)."""
        offset, size = page_bounds(page_size, page_token)
        cond = []
        if state:
            cond.append(J.c.state == state)
        if base_model:
            cond.append(J.c.base_model == base_model)
        if dataset_ids is not None:
            cond.append(J.c.dataset_id.in_(list(dataset_ids)))
        with self.engine.connect() as conn:
            total = conn.execute(select(func.count()).select_from(J).where(*cond)).scalar_one()
            rows = conn.execute(
                _JOBS.where(*cond).order_by(J.c.created_at.desc(), J.c.id).offset(offset).limit(size)
            ).all()
        return [_job(r) for r in rows], next_token(offset, size, total), total

    def update(self, job_id: str, **columns: Any) -> None:
        """Set columns of the job row (names as in models.JobRow; metrics are flat columns there)."""
        with self.engine.begin() as conn:
            conn.execute(update(J).where(J.c.id == job_id).values(**columns))

    def transition(
        self, job_id: str, new: State, *, allowed_from: Sequence[str] | None = None, action: str = "", **columns: Any
    ) -> tuple[State, Job]:
        """Move a job to `new` if that is legal from its current state; returns (previous state, job)."""
        with self.engine.begin() as conn:
            row = conn.execute(select(J.c.state).where(J.c.id == job_id)).first()
            if row is None:
                raise NotFound(f"job {job_id!r} not found", code="job_not_found", field="job_id")
            current = cast(State, row.state)
            ok = current in allowed_from if allowed_from is not None else states.legal(current, new)
            if not ok:
                verb = action or f"move to {new}"
                now_is = f"it has already ended ({current})" if current in states.TERMINAL else f"it is {current}"
                raise FailedPrecondition(f"cannot {verb} job {job_id}: {now_is}", code="invalid_state", field="job_id")
            if new in states.TERMINAL:
                columns.setdefault("ended_at", now())
            res = conn.execute(update(J).where(J.c.id == job_id, J.c.state == current).values(state=new, **columns))
            if res.rowcount != 1:
                raise FailedPrecondition(
                    f"job {job_id} changed state concurrently; try again", code="concurrent_change", field="job_id"
                )
        return current, self.get(job_id)

    def unfinished(self, state: str) -> list[Job]:
        with self.engine.connect() as conn:
            rows = conn.execute(_JOBS.where(J.c.state == state)).all()
        return [_job(r) for r in rows]

    # ---- the evaluation a succeeded job asked for -------------------------------------------------------------
    def ask_evaluation(self, job_id: str) -> bool:
        """Record that the job's evaluation is due (state ""), unless it is recorded already; True when it was new."""
        with self.engine.begin() as conn:
            if conn.execute(select(E.c.job_id).where(E.c.job_id == job_id)).first():
                return False
            try:
                conn.execute(insert(E).values(job_id=job_id, updated_at=now()))
            except IntegrityError:
                return False
        return True

    def set_evaluation(self, job_id: str, ev: JobEvaluation) -> None:
        err = ev.error
        values = {
            "evaluation_id": ev.evaluation_id,
            "state": ev.state,
            "summary_json": orjson.dumps(ev.summary).decode() if ev.summary is not None else "",
            "error_code": err.code if err else "",
            "error_message": err.message if err else "",
            "error_param": err.param if err else "",
            "updated_at": now(),
        }
        with self.engine.begin() as conn:
            if conn.execute(update(E).where(E.c.job_id == job_id).values(**values)).rowcount != 1:
                conn.execute(insert(E).values(job_id=job_id, **values))

    def get_evaluation(self, job_id: str) -> JobEvaluation | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(E).where(E.c.job_id == job_id)).first()
        if row is None:
            return None
        return _evaluation(
            row.evaluation_id, row.state, row.summary_json, row.error_code, row.error_message, row.error_param
        )

    def unfinished_evaluations(self) -> list[str]:
        """Jobs whose evaluation has not ended (not created yet, queued or running): to follow after a restart."""
        with self.engine.connect() as conn:
            rows = conn.execute(select(E.c.job_id).where(E.c.state.in_(["", "queued", "running"]))).all()
        return [r.job_id for r in rows]

    # ---- events -----------------------------------------------------------------------------------------------
    def append_event(self, event_id: str, event: JobEvent) -> JobEvent | None:
        """Store an event with the next per-job sequence; None when this event id was stored before."""
        with self.engine.begin() as conn:
            if conn.execute(select(EV.c.id).where(EV.c.event_id == event_id)).first():
                return None
            seq = (conn.execute(select(func.max(EV.c.sequence)).where(EV.c.job_id == event.job_id)).scalar() or 0) + 1
            stored = dataclasses.replace(event, sequence=seq)
            conn.execute(
                insert(EV).values(
                    job_id=event.job_id, sequence=seq, event_id=event_id, data=records.event_to_json(stored)
                )
            )
        return stored

    def _event(self, data: bytes) -> JobEvent:
        if data[:1] == b"{" or self.legacy_event is None:
            return records.event_from_json(data)
        return self.legacy_event(data)

    def events_after(self, job_id: str, after: int, limit: int = 500) -> list[JobEvent]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(EV.c.data)
                .where(EV.c.job_id == job_id, EV.c.sequence > after)
                .order_by(EV.c.sequence)
                .limit(limit)
            ).all()
        return [self._event(r.data) for r in rows]

    # ---- checkpoints ------------------------------------------------------------------------------------------
    def add_checkpoint(self, job_id: str, c: Checkpoint) -> None:
        """One row per step: a checkpoint written again (a resumed attempt) replaces the earlier one's path."""
        with self.engine.begin() as conn:
            if conn.execute(select(CK.c.step).where(CK.c.job_id == job_id, CK.c.step == c.step)).first():
                conn.execute(
                    update(CK).where(CK.c.job_id == job_id, CK.c.step == c.step).values(path=c.path, epoch=c.epoch)
                )
            else:
                conn.execute(
                    insert(CK).values(job_id=job_id, step=c.step, epoch=c.epoch, path=c.path, created_at=c.create_time)
                )

    def checkpoints(self, job_id: str) -> list[Checkpoint]:
        self.get(job_id)
        with self.engine.connect() as conn:
            rows = conn.execute(select(CK).where(CK.c.job_id == job_id).order_by(CK.c.step)).all()
        return [Checkpoint(r.step, r.epoch, r.path, _utc(r.created_at)) for r in rows]
