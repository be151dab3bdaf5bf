"""Database I/O of the gateway (synchronous; the app calls it in threads): request logs, adapters, the schema."""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import and_, delete, insert, or_, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from tunery.errors import InvalidArgument, NotFound
from tunery.runtime.store import make_engine
from tunery_gateway.models import TABLES, AdapterRow, RequestLogRow, now
from tunery_gateway.settings import GatewaySettings

log = logging.getLogger("tunery.gateway.store")
L = RequestLogRow.__table__  # type: ignore[attr-defined]
A = AdapterRow.__table__  # type: ignore[attr-defined]
MAX_PAGE = 1000


def open_engine(settings: GatewaySettings) -> Engine:
    """The gateway's database with its tables (only its own: other services' tables live elsewhere)."""
    settings.service_dir.mkdir(parents=True, exist_ok=True)
    engine = make_engine(settings.sqlalchemy_url())
    TABLES[0].metadata.create_all(engine, tables=TABLES)
    return engine


# ---- request logs -------------------------------------------------------------------------------------------------


@dataclass(slots=True)
class LogFilter:
    model: str = ""
    key_id: str = ""
    user: str = ""
    endpoint: str = ""
    status: str = ""
    since: datetime | None = None
    until: datetime | None = None
    # "any": has a score; "none": has none; "": either.
    feedback: str = ""
    min_score: float | None = None
    max_score: float | None = None
    metadata: dict[str, str] = field(default_factory=dict)

    def clauses(self) -> list[Any]:
        c: list[Any] = []
        for name in ("model", "key_id", "user", "endpoint", "status"):
            value = getattr(self, name)
            if value:
                c.append(L.c[name] == value)
        if self.since is not None:
            c.append(L.c.created_at >= self.since)
        if self.until is not None:
            c.append(L.c.created_at < self.until)
        if self.feedback == "any":
            c.append(L.c.feedback_score.is_not(None))
        elif self.feedback == "none":
            c.append(L.c.feedback_score.is_(None))
        elif self.feedback:
            raise InvalidArgument(f"feedback must be 'any' or 'none', not {self.feedback!r}", code="invalid_filter",
                                  field="feedback")
        if self.min_score is not None:
            c.append(L.c.feedback_score >= self.min_score)
        if self.max_score is not None:
            c.append(L.c.feedback_score <= self.max_score)
        for k, v in self.metadata.items():
            c.append(L.c.request_metadata[k].as_string() == v)
        return c


def row_dict(row: Any) -> dict[str, Any]:
    return dict(row._mapping)


class LogStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def insert_many(self, rows: Sequence[dict[str, Any]]) -> None:
        if rows:
            with self.engine.begin() as conn:
                conn.execute(insert(L), list(rows))

    def get(self, log_id: str) -> dict[str, Any]:
        with self.engine.connect() as conn:
            row = conn.execute(select(L).where(L.c.id == log_id)).first()
        if row is None:
            raise NotFound(f"no request log {log_id!r}", code="log_not_found", field="id")
        return row_dict(row)

    def list(self, flt: LogFilter, *, limit: int = 50, after: str = "") -> tuple[list[dict[str, Any]], bool]:
        """Newest first; `after` is the last id of the previous page. Returns the rows and whether more follow."""
        limit = max(1, min(limit, MAX_PAGE))
        clauses = flt.clauses()
        if after:
            with self.engine.connect() as conn:
                anchor = conn.execute(select(L.c.created_at).where(L.c.id == after)).scalar()
            if anchor is None:
                raise InvalidArgument(f"no request log {after!r} to continue after", code="invalid_cursor",
                                      field="after")
            clauses.append(or_(L.c.created_at < anchor, and_(L.c.created_at == anchor, L.c.id < after)))
        q = select(L).where(*clauses).order_by(L.c.created_at.desc(), L.c.id.desc()).limit(limit + 1)
        with self.engine.connect() as conn:
            rows = [row_dict(r) for r in conn.execute(q)]
        return rows[:limit], len(rows) > limit

    def set_feedback(self, log_id: str, score: float, comment: str) -> dict[str, Any]:
        with self.engine.begin() as conn:
            n = conn.execute(update(L).where(L.c.id == log_id).values(
                feedback_score=score, feedback_comment=comment, feedback_at=now())).rowcount
        if not n:
            raise NotFound(f"no request log {log_id!r}", code="log_not_found", field="id")
        return self.get(log_id)


class LogWriter:
    """Request logs are written off the request path, in batches; `flush` waits until all queued rows are stored."""

    def __init__(self, store: LogStore, *, batch: int = 200) -> None:
        self.store = store
        self.batch = batch
        self._q: queue.Queue[dict[str, Any] | threading.Event | None] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="request-log-writer", daemon=True)
        self._thread.start()

    def put(self, row: dict[str, Any]) -> None:
        self._q.put(row)

    def flush(self, timeout: float = 30.0) -> None:
        done = threading.Event()
        self._q.put(done)
        done.wait(timeout)

    def close(self) -> None:
        self._q.put(None)
        self._thread.join(30)

    def _run(self) -> None:
        stop = False
        while not stop:
            item = self._q.get()
            rows: list[dict[str, Any]] = []
            events: list[threading.Event] = []
            while True:
                if item is None:
                    stop = True
                elif isinstance(item, threading.Event):
                    events.append(item)
                else:
                    rows.append(item)
                if stop or len(rows) >= self.batch:
                    break
                try:
                    item = self._q.get_nowait()
                except queue.Empty:
                    break
            self._write(rows)
            for ev in events:
                ev.set()

    def _write(self, rows: list[dict[str, Any]]) -> None:
        if not rows:
            return
        try:
            self.store.insert_many(rows)
        except IntegrityError:  # one duplicate id must not lose the whole batch
            for row in rows:
                try:
                    self.store.insert_many([row])
                except IntegrityError:
                    log.warning("request log %s already stored", row.get("id"))
        except Exception:
            log.exception("could not store %d request logs", len(rows))


# ---- adapters -----------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AdapterRecord:
    id: str
    base_model: str
    adapter_path: str
    job_id: str
    source: str
    created_at: datetime


class AdapterStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def upsert(self, rec: AdapterRecord) -> None:
        values = {"id": rec.id, "base_model": rec.base_model, "adapter_path": rec.adapter_path, "job_id": rec.job_id,
                  "source": rec.source, "created_at": rec.created_at}
        with self.engine.begin() as conn:
            if conn.execute(update(A).where(A.c.id == rec.id).values(**values)).rowcount == 0:
                conn.execute(insert(A).values(**values))

    def get(self, model_id: str) -> AdapterRecord | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(A).where(A.c.id == model_id)).first()
        return AdapterRecord(**row._mapping) if row is not None else None

    def all(self) -> list[AdapterRecord]:
        with self.engine.connect() as conn:
            return [AdapterRecord(**r._mapping) for r in conn.execute(select(A).order_by(A.c.created_at))]

    def delete(self, model_id: str) -> bool:
        with self.engine.begin() as conn:
            return bool(conn.execute(delete(A).where(A.c.id == model_id)).rowcount)
