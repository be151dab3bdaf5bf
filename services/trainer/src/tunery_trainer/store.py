"""All database I/O of the trainer service (synchronous; run in worker threads)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, insert, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from tunery.errors import FailedPrecondition, InvalidArgument, NotFound
from tunery.pagination import next_token, page_bounds
from tunery.trainer.v1 import trainer_pb2 as pb
from tunery_trainer import states
from tunery_trainer.models import CheckpointRow, JobEventRow, JobRow, now

J = JobRow.__table__
EV = JobEventRow.__table__
CK = CheckpointRow.__table__


def new_job_id() -> str:
    return f"ftjob-{uuid.uuid4().hex[:20]}"


@dataclass(slots=True)
class JobRecord:
    """A job row as a plain object (columns by name)."""

    row: dict[str, Any]

    def __getattr__(self, name: str) -> Any:
        try:
            return self.row[name]
        except KeyError as err:
            raise AttributeError(name) from err


class JobStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def create(self, values: dict[str, Any]) -> tuple[JobRecord, bool]:
        """Insert a job; with an idempotency key already used, return that job instead (existing=True)."""
        key = values.get("idempotency_key")
        if key:
            found = self.find_by_key(key)
            if found is not None:
                return found, True
        try:
            with self.engine.begin() as conn:
                conn.execute(insert(J).values(**values))
        except IntegrityError:
            if key:
                found = self.find_by_key(key)
                if found is not None:
                    return found, True
            raise
        return self.get(values["id"]), False

    def find_by_key(self, key: str) -> JobRecord | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(J).where(J.c.idempotency_key == key)).first()
        return JobRecord(dict(row._mapping)) if row else None

    def get(self, job_id: str) -> JobRecord:
        if not job_id:
            raise InvalidArgument("field 'job_id' is required", code="missing_field", field="job_id")
        with self.engine.connect() as conn:
            row = conn.execute(select(J).where(J.c.id == job_id)).first()
        if row is None:
            raise NotFound(f"job {job_id!r} not found", code="job_not_found", field="job_id")
        return JobRecord(dict(row._mapping))

    def list(
        self, page_size: int, page_token: str, state: str, base_model: str, dataset_ids: Sequence[str] | None
    ) -> tuple[list[JobRecord], str, int]:
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
                select(J).where(*cond).order_by(J.c.created_at.desc(), J.c.id).offset(offset).limit(size)
            ).all()
        return [JobRecord(dict(r._mapping)) for r in rows], next_token(offset, size, total), total

    def update(self, job_id: str, **values: Any) -> None:
        with self.engine.begin() as conn:
            conn.execute(update(J).where(J.c.id == job_id).values(**values))

    def transition(
        self, job_id: str, new: str, *, allowed_from: Sequence[str] | None = None, action: str = "", **values: Any
    ) -> tuple[str, JobRecord]:
        """Move a job to `new` if that is legal from its current state; returns (previous state, job)."""
        with self.engine.begin() as conn:
            row = conn.execute(select(J.c.state).where(J.c.id == job_id)).first()
            if row is None:
                raise NotFound(f"job {job_id!r} not found", code="job_not_found", field="job_id")
            current = row.state
            ok = current in allowed_from if allowed_from is not None else states.legal(current, new)
            if not ok:
                verb = action or f"move to {new}"
                now_is = f"it has already ended ({current})" if current in states.TERMINAL else f"it is {current}"
                raise FailedPrecondition(f"cannot {verb} job {job_id}: {now_is}", code="invalid_state", field="job_id")
            if new in states.TERMINAL:
                values.setdefault("ended_at", now())
            res = conn.execute(update(J).where(J.c.id == job_id, J.c.state == current).values(state=new, **values))
            if res.rowcount != 1:
                raise FailedPrecondition(
                    f"job {job_id} changed state concurrently; try again", code="concurrent_change", field="job_id"
                )
        return current, self.get(job_id)

    # ---- events -----------------------------------------------------------------------------------------------
    def append_event(self, event_id: str, event: pb.JobEvent) -> pb.JobEvent | None:
        """Store an event with the next per-job sequence; None when this event id was stored before."""
        with self.engine.begin() as conn:
            if conn.execute(select(EV.c.id).where(EV.c.event_id == event_id)).first():
                return None
            seq = (conn.execute(select(func.max(EV.c.sequence)).where(EV.c.job_id == event.job_id)).scalar() or 0) + 1
            stored = pb.JobEvent()
            stored.CopyFrom(event)
            stored.sequence = seq
            conn.execute(
                insert(EV).values(job_id=event.job_id, sequence=seq, event_id=event_id, data=stored.SerializeToString())
            )
        return stored

    def events_after(self, job_id: str, after: int, limit: int = 500) -> list[pb.JobEvent]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(EV.c.data)
                .where(EV.c.job_id == job_id, EV.c.sequence > after)
                .order_by(EV.c.sequence)
                .limit(limit)
            ).all()
        out = []
        for r in rows:
            e = pb.JobEvent()
            e.ParseFromString(r.data)
            out.append(e)
        return out

    def add_checkpoint(self, job_id: str, step: int, epoch: float, path: str, created: datetime) -> None:
        with self.engine.begin() as conn:
            if conn.execute(select(CK.c.step).where(CK.c.job_id == job_id, CK.c.step == step)).first():
                conn.execute(update(CK).where(CK.c.job_id == job_id, CK.c.step == step).values(path=path, epoch=epoch))
            else:
                conn.execute(insert(CK).values(job_id=job_id, step=step, epoch=epoch, path=path, created_at=created))

    def checkpoints(self, job_id: str) -> list[dict[str, Any]]:
        self.get(job_id)
        with self.engine.connect() as conn:
            rows = conn.execute(select(CK).where(CK.c.job_id == job_id).order_by(CK.c.step)).all()
        return [dict(r._mapping) for r in rows]

    def unfinished(self, state: str) -> list[JobRecord]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(J).where(J.c.state == state)).all()
        return [JobRecord(dict(r._mapping)) for r in rows]
