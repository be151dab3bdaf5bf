"""All database I/O of the evaluator (synchronous; the service runs it in worker threads), SQLite or PostgreSQL.

One transaction per call. A result is stored once per (evaluation, example): storing it again is a no-op, so a
redelivered run cannot count an example twice, and its sequence is the evaluation's finished count plus one, taken
under a lock of the evaluation's row, so sequences are gap-free however many examples finish at once.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

import orjson
from sqlalchemy import delete, func, insert, or_, select, update
from sqlalchemy.engine import Connection, Engine, Row
from sqlalchemy.exc import IntegrityError

from tunery.errors import FailedPrecondition, InvalidArgument, NotFound
from tunery.pagination import next_token, page_bounds
from tunery_evaluator.domain import (
    TERMINAL,
    DatasetVersionRef,
    ErrorInfo,
    Evaluation,
    ExampleResult,
    State,
    Summary,
    answers_grades_from_json,
    now,
    result_payload,
    spec_from_json,
    summary_from_json,
    to_json,
)
from tunery_evaluator.graders.base import Item
from tunery_evaluator.models import EV, IT, RS

BATCH = 1000


class _Skip(Exception):
    """Roll the transaction back: nothing to store."""


def new_evaluation_id() -> str:
    return f"eval-{uuid.uuid4().hex[:20]}"


def _utc(dt: datetime | None) -> datetime | None:
    return dt.replace(tzinfo=UTC) if dt is not None and dt.tzinfo is None else dt


def _evaluation(row: Row[Any]) -> Evaluation:
    m = row._mapping
    error = ErrorInfo(m["error_code"], m["error_message"], m["error_field"]) if m["error_code"] else None
    resolved = DatasetVersionRef(m["dataset_id"], m["dataset_version"]) if m["dataset_id"] else None
    return Evaluation(
        id=m["id"],
        spec=spec_from_json(orjson.loads(m["spec_json"])),
        state=m["state"],
        create_time=_utc(m["created_at"]),  # type: ignore[arg-type]
        start_time=_utc(m["started_at"]),
        end_time=_utc(m["ended_at"]),
        error=error,
        total_examples=m["total_examples"],
        finished_examples=m["finished_examples"],
        errored_examples=m["errored_examples"],
        summary=summary_from_json(orjson.loads(m["summary_json"])) if m["summary_json"] else None,
        resolved_data=resolved,
        attempts=m["attempts"],
        job_id=m["job_id"],
    )


def _result(row: Row[Any], item: Row[Any]) -> ExampleResult:
    answers, grades = answers_grades_from_json(orjson.loads(row._mapping["payload_json"]))
    return ExampleResult(
        evaluation_id=row._mapping["evaluation_id"],
        index=row._mapping["index"],
        example_id=item._mapping["example_id"],
        messages=orjson.loads(item._mapping["messages_json"]),
        reference=item._mapping["reference"],
        answers=answers,
        grades=grades,
        sequence=row._mapping["sequence"],
        finish_time=_utc(row._mapping["finished_at"]),
    )


class EvaluationStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    # ---- evaluations ----------------------------------------------------------------------------------------
    def _find(self, conn: Connection, evaluation_id: str, *, lock: bool = False) -> Row[Any]:
        if not evaluation_id:
            raise InvalidArgument("field 'evaluation_id' is required", code="missing_field", field="evaluation_id")
        q = select(EV).where(EV.c.id == evaluation_id)
        row = conn.execute(q.with_for_update() if lock else q).first()
        if row is None:
            raise NotFound(f"evaluation {evaluation_id!r} not found", code="evaluation_not_found",
                           field="evaluation_id")
        return row

    def get(self, evaluation_id: str) -> Evaluation:
        with self.engine.connect() as conn:
            return _evaluation(self._find(conn, evaluation_id))

    def by_idempotency_key(self, key: str) -> Evaluation | None:
        if not key:
            return None
        with self.engine.connect() as conn:
            row = conn.execute(select(EV).where(EV.c.idempotency_key == key)).first()
        return _evaluation(row) if row is not None else None

    def create(self, ev: Evaluation, items: Sequence[Item], dataset_name: str = "") -> tuple[Evaluation, bool]:
        """Store a queued evaluation and its examples; (the earlier one, True) for an idempotency key seen before."""
        resolved = ev.resolved_data or DatasetVersionRef()
        values = dict(
            id=ev.id, state=ev.state, spec_json=orjson.dumps(to_json(ev.spec)).decode(),
            models="|" + "".join(f"{m.name}|" for m in ev.spec.models) if ev.spec.models else "|",
            dataset_id=resolved.dataset, dataset_name=dataset_name, dataset_version=resolved.version,
            job_id=ev.job_id, idempotency_key=ev.spec.idempotency_key or None, created_at=ev.create_time,
            total_examples=len(items), finished_examples=0, errored_examples=0, attempts=0, summary_json="",
            error_code="", error_message="", error_field="",
        )
        try:
            with self.engine.begin() as conn:
                conn.execute(insert(EV).values(**values))
                rows = [dict(evaluation_id=ev.id, index=it.index, example_id=it.example_id,
                             messages_json=orjson.dumps(it.messages).decode(), reference=it.reference)
                        for it in items]
                for i in range(0, len(rows), BATCH):
                    conn.execute(insert(IT), rows[i : i + BATCH])
                return _evaluation(self._find(conn, ev.id)), False
        except IntegrityError:
            earlier = self.by_idempotency_key(ev.spec.idempotency_key)
            if earlier is None:
                raise
            return earlier, True

    def list_evaluations(self, page_size: int, page_token: str, *, states: Iterable[str] = (), model: str = "",
             dataset: str = "", job_id: str = "") -> tuple[list[Evaluation], str, int]:
        offset, size = page_bounds(page_size, page_token)
        conds: list[Any] = []
        if states := list(states):
            conds.append(EV.c.state.in_(states))
        if model:
            conds.append(EV.c.models.contains(f"|{model}|", autoescape=True))
        if dataset:
            conds.append(or_(EV.c.dataset_id == dataset, EV.c.dataset_name == dataset))
        if job_id:
            conds.append(EV.c.job_id == job_id)
        with self.engine.connect() as conn:
            total = conn.execute(select(func.count()).select_from(EV).where(*conds)).scalar_one()
            rows = conn.execute(select(EV).where(*conds).order_by(EV.c.created_at.desc(), EV.c.id)
                                .offset(offset).limit(size)).all()
        return [_evaluation(r) for r in rows], next_token(offset, size, total), total

    def start_attempt(self, evaluation_id: str) -> Evaluation:
        """Count a (re)start; a queued evaluation becomes running. A finished one is returned as it is."""
        with self.engine.begin() as conn:
            row = self._find(conn, evaluation_id, lock=True)
            if row.state in TERMINAL:
                return _evaluation(row)
            values: dict[str, Any] = {"attempts": row.attempts + 1, "state": "running"}
            if row.started_at is None:
                values["started_at"] = now()
            conn.execute(update(EV).where(EV.c.id == evaluation_id).values(**values))
            return _evaluation(self._find(conn, evaluation_id))

    def finish(self, evaluation_id: str, state: State, *, summary: Summary | None = None,
               error: ErrorInfo | None = None, only_if_active: bool = True) -> tuple[Evaluation, bool]:
        """End the evaluation; (it, False) when it had ended already (the first end stands)."""
        with self.engine.begin() as conn:
            row = self._find(conn, evaluation_id, lock=True)
            if only_if_active and row.state in TERMINAL:
                return _evaluation(row), False
            values: dict[str, Any] = {"state": state, "ended_at": now()}
            if summary is not None:
                values["summary_json"] = orjson.dumps(to_json(summary)).decode()
            if error is not None:
                values.update(error_code=error.code, error_message=error.message, error_field=error.field)
            conn.execute(update(EV).where(EV.c.id == evaluation_id).values(**values))
            return _evaluation(self._find(conn, evaluation_id)), True

    def state(self, evaluation_id: str) -> str:
        with self.engine.connect() as conn:
            return str(self._find(conn, evaluation_id).state)

    def delete(self, evaluation_id: str) -> Evaluation:
        with self.engine.begin() as conn:
            row = self._find(conn, evaluation_id, lock=True)
            if row.state not in TERMINAL:
                raise FailedPrecondition(
                    f"evaluation {evaluation_id!r} is {row.state}; cancel it before deleting it",
                    code="evaluation_active", field="evaluation_id")
            for table in (RS, IT):
                conn.execute(delete(table).where(table.c.evaluation_id == evaluation_id))
            conn.execute(delete(EV).where(EV.c.id == evaluation_id))
            return _evaluation(row)

    # ---- examples and results -------------------------------------------------------------------------------
    def items(self, evaluation_id: str) -> list[Item]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(IT).where(IT.c.evaluation_id == evaluation_id).order_by(IT.c.index)).all()
        return [Item(m["index"], orjson.loads(m["messages_json"]), m["reference"], m["example_id"])
                for m in (r._mapping for r in rows)]  # "index" by key: a Row's .index is the tuple method

    def finished_indices(self, evaluation_id: str) -> set[int]:
        with self.engine.connect() as conn:
            return set(conn.execute(select(RS.c.index).where(RS.c.evaluation_id == evaluation_id)).scalars())

    def add_result(self, result: ExampleResult) -> ExampleResult | None:
        """Store one example's result with the next sequence; None when it was stored before (a redelivery) or the
        evaluation has ended."""
        eid = result.evaluation_id
        try:
            with self.engine.begin() as conn:
                # The counter moves first: that takes the row's lock (PostgreSQL) or the write lock (SQLite) before
                # anything is read, so concurrent writers are serialised and each reads the count the last one left.
                conn.execute(update(EV).where(EV.c.id == eid).values(finished_examples=EV.c.finished_examples + 1))
                row = self._find(conn, eid)
                if row.state in TERMINAL:  # cancelled or failed meanwhile: its summary stands as it was taken
                    raise _Skip
                if conn.execute(select(RS.c.index).where(RS.c.evaluation_id == eid,
                                                         RS.c.index == result.index)).first():
                    raise _Skip
                seq, finished, errored = row.finished_examples, now(), result.errored
                conn.execute(insert(RS).values(
                    evaluation_id=eid, index=result.index, sequence=seq, errored=errored,
                    payload_json=orjson.dumps(result_payload(result)).decode(), finished_at=finished))
                if errored:
                    conn.execute(update(EV).where(EV.c.id == eid).values(errored_examples=row.errored_examples + 1))
        except (_Skip, IntegrityError):  # rolled back; an IntegrityError: a concurrent writer of the same example won
            return None
        result.sequence, result.finish_time = seq, finished
        return result

    def results(self, evaluation_id: str, after_sequence: int = 0, limit: int = BATCH) -> list[ExampleResult]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(RS, IT.c.example_id, IT.c.messages_json, IT.c.reference)
                .join(IT, (IT.c.evaluation_id == RS.c.evaluation_id) & (IT.c.index == RS.c.index))
                .where(RS.c.evaluation_id == evaluation_id, RS.c.sequence > after_sequence)
                .order_by(RS.c.sequence).limit(limit)).all()
        return [_result(r, r) for r in rows]

    def all_results(self, evaluation_id: str) -> list[ExampleResult]:
        out: list[ExampleResult] = []
        while batch := self.results(evaluation_id, out[-1].sequence if out else 0):
            out.extend(batch)
        return out
