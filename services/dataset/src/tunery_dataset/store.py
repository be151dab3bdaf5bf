"""All database I/O of the dataset service (synchronous; the service runs it in worker threads)."""

from __future__ import annotations

import hashlib
import re
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import and_, delete, func, insert, select, update
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError

from tunery.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound
from tunery.pagination import next_token, page_bounds
from tunery_dataset.models import (
    DatasetRow,
    DraftEntry,
    ExampleBlob,
    VersionEntry,
    VersionReference,
    VersionRow,
    now,
)

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
TAG_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$")
BATCH = 2000
# An upload lock older than this is considered abandoned (its process died) and may be taken over.
UPLOAD_LOCK_TTL = timedelta(hours=6)

D = DatasetRow.__table__
B = ExampleBlob.__table__
E = DraftEntry.__table__
V = VersionRow.__table__
VE = VersionEntry.__table__
VR = VersionReference.__table__


def new_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:20]}"


def check_name(name: str, field_name: str = "name") -> str:
    if not name:
        raise InvalidArgument(f"field '{field_name}' is required", code="missing_field", field=field_name)
    if any(ord(c) < 32 or ord(c) == 127 for c in name):
        raise InvalidArgument(
            f"dataset name {name!r} contains control characters", code="invalid_name", field=field_name
        )
    if not NAME_RE.match(name) or ".." in name:
        raise InvalidArgument(
            f"dataset name {name!r} is not allowed: use 1-64 letters, digits, '-', '_' or '.', starting with a letter "
            "or digit, without '..' or '/'",
            code="invalid_name",
            field=field_name,
        )
    return name


def check_tags(tags: Iterable[str], field_name: str = "tags") -> list[str]:
    out = []
    for i, t in enumerate(tags):
        if not TAG_RE.match(t):
            raise InvalidArgument(
                f"tag {t!r} is not allowed: 1-64 letters, digits, '_', '.', ':' or '-'",
                code="invalid_tag",
                field=f"{field_name}[{i}]",
            )
        out.append(t)
    return sorted(set(out))


def encode_tags(tags: Iterable[str]) -> str:
    return "|" + "".join(f"{t}|" for t in sorted(set(tags)))


def decode_tags(s: str) -> list[str]:
    return [t for t in s.split("|") if t]


@dataclass(frozen=True, slots=True)
class DatasetInfo:
    id: str
    name: str
    description: str
    format: str
    created_at: datetime
    updated_at: datetime
    latest_version: int
    draft_modified: bool
    draft_count: int


@dataclass(frozen=True, slots=True)
class VersionInfo:
    dataset_id: str
    number: int
    example_count: int
    content_sha256: str
    message: str
    split: str
    parent_version: int
    format: str
    created_at: datetime
    references: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class ExampleInfo:
    id: str
    dataset_id: str
    json: str
    tags: list[str]
    position: int
    created_at: datetime


def _ds(row: object) -> DatasetInfo:
    r = row._mapping  # type: ignore[attr-defined]
    return DatasetInfo(
        r["id"],
        r["name"],
        r["description"],
        r["format"],
        r["created_at"],
        r["updated_at"],
        r["latest_version"],
        bool(r["draft_modified"]),
        r["draft_count"],
    )


class DatasetStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    # ---- datasets -------------------------------------------------------------------------------------------
    def _find(self, conn: Connection, ref: str, *, field_name: str = "dataset") -> DatasetInfo:
        if not ref:
            raise InvalidArgument(
                f"field '{field_name}' is required (a dataset id or name)", code="missing_field", field=field_name
            )
        row = conn.execute(select(D).where((D.c.id == ref) | (D.c.name == ref))).first()
        if row is None:
            raise NotFound(f"dataset {ref!r} not found", code="dataset_not_found", field=field_name)
        return _ds(row)

    def get(self, ref: str) -> DatasetInfo:
        with self.engine.connect() as conn:
            return self._find(conn, ref)

    def create(self, name: str, description: str) -> DatasetInfo:
        check_name(name)
        ds_id = new_id("ds")
        try:
            with self.engine.begin() as conn:
                conn.execute(
                    insert(D).values(
                        id=ds_id,
                        name=name,
                        description=description,
                        created_at=now(),
                        updated_at=now(),
                        latest_version=0,
                        draft_modified=False,
                        draft_count=0,
                        next_position=0,
                        format="",
                    )
                )
                return self._find(conn, ds_id)
        except IntegrityError as err:
            raise AlreadyExists(
                f"a dataset named {name!r} already exists", code="dataset_exists", field="name"
            ) from err

    def list(self, page_size: int, page_token: str) -> tuple[list[DatasetInfo], str, int]:
        offset, size = page_bounds(page_size, page_token)
        with self.engine.connect() as conn:
            total = conn.execute(select(func.count()).select_from(D)).scalar_one()
            rows = conn.execute(select(D).order_by(D.c.created_at, D.c.id).offset(offset).limit(size)).all()
        return [_ds(r) for r in rows], next_token(offset, size, total), total

    def update(self, ref: str, name: str, description: str | None) -> DatasetInfo:
        values: dict[str, object] = {"updated_at": now()}
        if name:
            values["name"] = check_name(name)
        if description is not None:
            values["description"] = description
        try:
            with self.engine.begin() as conn:
                ds = self._find(conn, ref)
                conn.execute(update(D).where(D.c.id == ds.id).values(**values))
                return self._find(conn, ds.id)
        except IntegrityError as err:
            raise AlreadyExists(
                f"a dataset named {name!r} already exists", code="dataset_exists", field="name"
            ) from err

    def delete(self, ref: str) -> DatasetInfo:
        with self.engine.begin() as conn:
            ds = self._find(conn, ref)
            refs = conn.execute(select(VR.c.version, VR.c.reference).where(VR.c.dataset_id == ds.id)).all()
            if refs:
                used = ", ".join(f"version {v} by {r}" for v, r in refs[:5])
                raise FailedPrecondition(
                    f"dataset {ds.name!r} is in use ({used}); delete or finish those first",
                    code="dataset_in_use",
                    field="dataset",
                )
            for table in (VE, VR, V, E, B):
                conn.execute(delete(table).where(table.c.dataset_id == ds.id))
            conn.execute(delete(D).where(D.c.id == ds.id))
            return ds

    # ---- upload ---------------------------------------------------------------------------------------------
    def lock_upload(self, ref: str) -> tuple[DatasetInfo, str]:
        token = uuid.uuid4().hex
        with self.engine.begin() as conn:
            ds = self._find(conn, ref)
            stale = now() - UPLOAD_LOCK_TTL
            res = conn.execute(
                update(D)
                .where(D.c.id == ds.id)
                .where((D.c.upload_token.is_(None)) | (D.c.upload_started_at < stale))
                .values(upload_token=token, upload_started_at=now())
            )
            if res.rowcount != 1:
                raise FailedPrecondition(
                    f"another upload to dataset {ds.name!r} is in progress; wait for it to finish and try again",
                    code="upload_in_progress",
                    field="dataset",
                )
        return ds, token

    def unlock_upload(self, ds_id: str, token: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                update(D)
                .where(and_(D.c.id == ds_id, D.c.upload_token == token))
                .values(upload_token=None, upload_started_at=None)
            )

    def append_examples(self, ds_id: str, lines: Iterator[bytes], fmt: str, tags: list[str], replace: bool) -> int:
        """Insert all examples in one transaction: either every line is stored or none is."""
        tag_s = encode_tags(tags)
        added = 0
        with self.engine.begin() as conn:
            row = conn.execute(
                select(D.c.next_position, D.c.format, D.c.draft_count, D.c.name).where(D.c.id == ds_id)
            ).one()
            pos, existing_fmt, count, name = row
            if replace:
                self._drop_draft(conn, ds_id)
                count, existing_fmt = 0, ""
            if existing_fmt and fmt and existing_fmt != fmt:
                raise FailedPrecondition(
                    f"dataset {name!r} holds {existing_fmt} examples; this file is {fmt}. Upload it to another "
                    "dataset, or pass replace to swap the draft",
                    code="format_mismatch",
                    field="dataset",
                )
            # Plain DBAPI executemany: the ORM/Core bulk path costs 2-3x more on large uploads (bench/bench_upload.py).
            ts = now()
            ph = "?" if conn.dialect.paramstyle == "qmark" else "%s"
            blob_sql = f"INSERT INTO {B.name} (id, dataset_id, content, created_at) VALUES ({ph}, {ph}, {ph}, {ph})"
            entry_sql = (
                f"INSERT INTO {E.name} (dataset_id, example_id, position, blob_id, tags, created_at) "
                f"VALUES ({ph}, {ph}, {ph}, {ph}, {ph}, {ph})"
            )
            ts_param = ts.replace(tzinfo=None).isoformat(sep=" ") if conn.dialect.name == "sqlite" else ts
            # One random prefix per upload plus a counter: unique ids without a urandom call per row.
            prefix = uuid.uuid4().hex[:12]
            blobs: list[tuple[object, ...]] = []
            entries: list[tuple[object, ...]] = []
            cursor = conn.connection.cursor()
            try:
                for raw in lines:
                    suffix = f"{prefix}{added + len(blobs):08x}"
                    bid, eid = f"blob_{suffix}", f"ex_{suffix}"
                    blobs.append((bid, ds_id, raw.decode("utf-8"), ts_param))
                    entries.append((ds_id, eid, pos, bid, tag_s, ts_param))
                    pos += 1
                    if len(blobs) >= BATCH:
                        cursor.executemany(blob_sql, blobs)
                        cursor.executemany(entry_sql, entries)
                        added += len(blobs)
                        blobs, entries = [], []
                if blobs:
                    cursor.executemany(blob_sql, blobs)
                    cursor.executemany(entry_sql, entries)
                    added += len(blobs)
            finally:
                cursor.close()
            conn.execute(
                update(D)
                .where(D.c.id == ds_id)
                .values(
                    next_position=pos,
                    draft_count=count + added,
                    format=fmt or existing_fmt,
                    updated_at=now(),
                    draft_modified=True,
                )
            )
        return added

    def _drop_draft(self, conn: Connection, ds_id: str) -> None:
        conn.execute(delete(E).where(E.c.dataset_id == ds_id))
        self._gc_blobs(conn, ds_id)

    def _gc_blobs(self, conn: Connection, ds_id: str) -> None:
        """Delete blobs that neither the draft nor any version refers to any more."""
        conn.execute(
            delete(B)
            .where(B.c.dataset_id == ds_id)
            .where(~B.c.id.in_(select(E.c.blob_id).where(E.c.dataset_id == ds_id)))
            .where(~B.c.id.in_(select(VE.c.blob_id).where(VE.c.dataset_id == ds_id)))
        )

    # ---- examples -------------------------------------------------------------------------------------------
    def _entry(self, conn: Connection, ds_id: str, example_id: str) -> ExampleInfo:
        if not example_id:
            raise InvalidArgument("field 'example_id' is required", code="missing_field", field="example_id")
        row = conn.execute(
            select(E.c.example_id, E.c.position, E.c.tags, E.c.created_at, B.c.content)
            .join(B, B.c.id == E.c.blob_id)
            .where(E.c.dataset_id == ds_id, E.c.example_id == example_id)
        ).first()
        if row is None:
            raise NotFound(
                f"example {example_id!r} not found in the draft of dataset {ds_id}",
                code="example_not_found",
                field="example_id",
            )
        return ExampleInfo(row.example_id, ds_id, row.content, decode_tags(row.tags), row.position, row.created_at)

    def get_example(self, ref: str, example_id: str) -> ExampleInfo:
        with self.engine.connect() as conn:
            ds = self._find(conn, ref)
            return self._entry(conn, ds.id, example_id)

    def add_example(self, ref: str, raw: str, fmt: str, tags: list[str]) -> ExampleInfo:
        with self.engine.begin() as conn:
            ds = self._find(conn, ref)
            if ds.format and fmt != ds.format:
                raise InvalidArgument(
                    f"dataset {ds.name!r} holds {ds.format} examples; this one is {fmt}",
                    code="format_mismatch",
                    field="json",
                )
            pos = conn.execute(select(D.c.next_position).where(D.c.id == ds.id)).scalar_one()
            bid, eid = new_id("blob"), new_id("ex")
            conn.execute(insert(B).values(id=bid, dataset_id=ds.id, content=raw, created_at=now()))
            conn.execute(
                insert(E).values(
                    dataset_id=ds.id,
                    example_id=eid,
                    position=pos,
                    blob_id=bid,
                    tags=encode_tags(tags),
                    created_at=now(),
                )
            )
            conn.execute(
                update(D)
                .where(D.c.id == ds.id)
                .values(
                    next_position=pos + 1,
                    draft_count=D.c.draft_count + 1,
                    format=fmt,
                    draft_modified=True,
                    updated_at=now(),
                )
            )
            return self._entry(conn, ds.id, eid)

    def update_example(self, ref: str, example_id: str, raw: str, fmt: str) -> ExampleInfo:
        """Point the draft entry at new content; versions keep the old blob."""
        with self.engine.begin() as conn:
            ds = self._find(conn, ref)
            self._entry(conn, ds.id, example_id)
            if ds.format and fmt != ds.format:
                raise InvalidArgument(
                    f"dataset {ds.name!r} holds {ds.format} examples; this one is {fmt}",
                    code="format_mismatch",
                    field="json",
                )
            bid = new_id("blob")
            conn.execute(insert(B).values(id=bid, dataset_id=ds.id, content=raw, created_at=now()))
            conn.execute(update(E).where(E.c.dataset_id == ds.id, E.c.example_id == example_id).values(blob_id=bid))
            self._gc_blobs(conn, ds.id)
            conn.execute(update(D).where(D.c.id == ds.id).values(draft_modified=True, updated_at=now()))
            return self._entry(conn, ds.id, example_id)

    def delete_examples(self, ref: str, example_ids: list[str]) -> int:
        with self.engine.begin() as conn:
            ds = self._find(conn, ref)
            removed = 0
            for i in range(0, len(example_ids), 500):
                chunk = example_ids[i : i + 500]
                removed += conn.execute(delete(E).where(E.c.dataset_id == ds.id, E.c.example_id.in_(chunk))).rowcount
            if len(example_ids) == 1 and removed == 0:
                raise NotFound(
                    f"example {example_ids[0]!r} not found in the draft of dataset {ds.name!r}",
                    code="example_not_found",
                    field="example_id",
                )
            self._gc_blobs(conn, ds.id)
            left = conn.execute(select(func.count()).select_from(E).where(E.c.dataset_id == ds.id)).scalar_one()
            conn.execute(
                update(D)
                .where(D.c.id == ds.id)
                .values(draft_count=left, draft_modified=True, updated_at=now(), format=ds.format if left else "")
            )
            return removed

    def tag_examples(self, ref: str, example_ids: list[str], add: list[str], remove: list[str]) -> int:
        with self.engine.begin() as conn:
            ds = self._find(conn, ref)
            rows = conn.execute(
                select(E.c.example_id, E.c.tags).where(E.c.dataset_id == ds.id, E.c.example_id.in_(example_ids))
            ).all()
            found = {r.example_id for r in rows}
            missing = [e for e in example_ids if e not in found]
            if missing:
                raise NotFound(
                    f"examples not found in dataset {ds.name!r}: {', '.join(missing[:5])}",
                    code="example_not_found",
                    field="example_ids",
                )
            for r in rows:
                tags = (set(decode_tags(r.tags)) | set(add)) - set(remove)
                conn.execute(
                    update(E)
                    .where(E.c.dataset_id == ds.id, E.c.example_id == r.example_id)
                    .values(tags=encode_tags(tags))
                )
            conn.execute(update(D).where(D.c.id == ds.id).values(draft_modified=True, updated_at=now()))
            return len(rows)

    def list_examples(
        self, ref: str, version: int, page_size: int, page_token: str, tag: str, text: str
    ) -> tuple[list[ExampleInfo], str, int]:
        offset, size = page_bounds(page_size, page_token)
        with self.engine.connect() as conn:
            ds = self._find(conn, ref)
            if version:
                self._version(conn, ds, version)
                t = VE
                cond = [VE.c.dataset_id == ds.id, VE.c.version == version]
            else:
                t = E
                cond = [E.c.dataset_id == ds.id]
            if tag:
                cond.append(t.c.tags.like(f"%|{tag}|%"))
            if text:
                cond.append(func.lower(B.c.content).like(f"%{text.lower()}%"))
            base = (
                select(t.c.example_id, t.c.position, t.c.tags, B.c.content).join(B, B.c.id == t.c.blob_id).where(*cond)
            )
            total = conn.execute(select(func.count()).select_from(base.subquery())).scalar_one()
            rows = conn.execute(base.order_by(t.c.position).offset(offset).limit(size)).all()
        items = [
            ExampleInfo(r.example_id, ds.id, r.content, decode_tags(r.tags), r.position, ds.created_at) for r in rows
        ]
        return items, next_token(offset, size, total), total

    def iter_contents(self, ref: str, version: int) -> Iterator[tuple[str, str]]:
        """(example id, json) in order, streamed in batches so memory stays bounded."""
        with self.engine.connect() as conn:
            ds = self._find(conn, ref)
            if version:
                self._version(conn, ds, version)
            t = VE if version else E
            cond = [t.c.dataset_id == ds.id] + ([VE.c.version == version] if version else [])
            last = -1
            while True:
                rows = conn.execute(
                    select(t.c.example_id, t.c.position, B.c.content)
                    .join(B, B.c.id == t.c.blob_id)
                    .where(*cond, t.c.position > last)
                    .order_by(t.c.position)
                    .limit(BATCH)
                ).all()
                if not rows:
                    return
                for r in rows:
                    yield r.example_id, r.content
                last = rows[-1].position

    # ---- versions -------------------------------------------------------------------------------------------
    def _version(self, conn: Connection, ds: DatasetInfo, number: int) -> VersionInfo:
        row = conn.execute(select(V).where(V.c.dataset_id == ds.id, V.c.number == number)).first()
        if row is None:
            have = (
                ", ".join(
                    str(n)
                    for n in conn.execute(
                        select(V.c.number).where(V.c.dataset_id == ds.id).order_by(V.c.number)
                    ).scalars()
                )
                or "none"
            )
            raise NotFound(
                f"dataset {ds.name!r} has no version {number} (versions: {have})",
                code="version_not_found",
                field="version",
            )
        refs = list(
            conn.execute(
                select(VR.c.reference).where(VR.c.dataset_id == ds.id, VR.c.version == number).order_by(VR.c.reference)
            ).scalars()
        )
        m = row._mapping
        return VersionInfo(
            ds.id,
            m["number"],
            m["example_count"],
            m["content_sha256"],
            m["message"],
            m["split"],
            m["parent_version"],
            m["format"],
            m["created_at"],
            refs,
        )

    def get_version(self, ref: str, number: int) -> VersionInfo:
        if number <= 0:
            raise InvalidArgument(
                "field 'version' must be a version number >= 1", code="missing_field", field="version"
            )
        with self.engine.connect() as conn:
            return self._version(conn, self._find(conn, ref), number)

    def list_versions(self, ref: str, page_size: int, page_token: str) -> tuple[list[VersionInfo], str, int]:
        offset, size = page_bounds(page_size, page_token)
        with self.engine.connect() as conn:
            ds = self._find(conn, ref)
            total = conn.execute(select(func.count()).select_from(V).where(V.c.dataset_id == ds.id)).scalar_one()
            nums = (
                conn.execute(
                    select(V.c.number).where(V.c.dataset_id == ds.id).order_by(V.c.number).offset(offset).limit(size)
                )
                .scalars()
                .all()
            )
            return [self._version(conn, ds, n) for n in nums], next_token(offset, size, total), total

    def _digest(self, conn: Connection, ds_id: str, version: int) -> str:
        h = hashlib.sha256()
        last = -1
        while True:
            rows = conn.execute(
                select(VE.c.position, B.c.content)
                .join(B, B.c.id == VE.c.blob_id)
                .where(VE.c.dataset_id == ds_id, VE.c.version == version, VE.c.position > last)
                .order_by(VE.c.position)
                .limit(BATCH)
            ).all()
            if not rows:
                return h.hexdigest()
            for r in rows:
                h.update(r.content.encode())
                h.update(b"\n")
            last = rows[-1].position

    def _new_version(
        self, conn: Connection, ds: DatasetInfo, message: str, split: str = "", parent: int = 0, fmt: str = ""
    ) -> int:
        number = (conn.execute(select(func.max(V.c.number)).where(V.c.dataset_id == ds.id)).scalar() or 0) + 1
        conn.execute(
            insert(V).values(
                dataset_id=ds.id,
                number=number,
                message=message,
                split=split,
                parent_version=parent,
                format=fmt or ds.format,
                created_at=now(),
            )
        )
        return number

    def _finish_version(self, conn: Connection, ds_id: str, number: int) -> None:
        count = conn.execute(
            select(func.count()).select_from(VE).where(VE.c.dataset_id == ds_id, VE.c.version == number)
        ).scalar_one()
        conn.execute(
            update(V)
            .where(V.c.dataset_id == ds_id, V.c.number == number)
            .values(example_count=count, content_sha256=self._digest(conn, ds_id, number))
        )

    def freeze(self, ref: str, message: str) -> VersionInfo:
        with self.engine.begin() as conn:
            ds = self._find(conn, ref)
            if ds.draft_count == 0:
                raise FailedPrecondition(
                    f"dataset {ds.name!r} has no examples to freeze; upload or add some first",
                    code="empty_dataset",
                    field="dataset",
                )
            number = self._new_version(conn, ds, message)
            # Positions are renumbered 0..n-1 so a version reads as a plain list.
            rows = conn.execute(
                select(E.c.example_id, E.c.blob_id, E.c.tags).where(E.c.dataset_id == ds.id).order_by(E.c.position)
            ).all()
            batch = []
            for i, r in enumerate(rows):
                batch.append(
                    {
                        "dataset_id": ds.id,
                        "version": number,
                        "position": i,
                        "example_id": r.example_id,
                        "blob_id": r.blob_id,
                        "tags": r.tags,
                    }
                )
                if len(batch) >= BATCH:
                    conn.execute(insert(VE), batch)
                    batch = []
            if batch:
                conn.execute(insert(VE), batch)
            self._finish_version(conn, ds.id, number)
            conn.execute(
                update(D).where(D.c.id == ds.id).values(latest_version=number, draft_modified=False, updated_at=now())
            )
            return self._version(conn, ds, number)

    def split(
        self, ref: str, number: int, train_ids: list[str], val_ids: list[str], seed: int, fraction: float
    ) -> tuple[VersionInfo, VersionInfo]:
        with self.engine.begin() as conn:
            ds = self._find(conn, ref)
            parent = self._version(conn, ds, number)
            rows = {
                r.example_id: r
                for r in conn.execute(
                    select(VE.c.example_id, VE.c.blob_id, VE.c.tags).where(
                        VE.c.dataset_id == ds.id, VE.c.version == number
                    )
                ).all()
            }
            made = []
            for split_name, ids in (("train", train_ids), ("validation", val_ids)):
                msg = f"{split_name} split of version {number} (validation_fraction={fraction}, seed={seed})"
                n = self._new_version(conn, ds, msg, split=split_name, parent=number, fmt=parent.format)
                batch = [
                    {
                        "dataset_id": ds.id,
                        "version": n,
                        "position": i,
                        "example_id": eid,
                        "blob_id": rows[eid].blob_id,
                        "tags": rows[eid].tags,
                    }
                    for i, eid in enumerate(ids)
                ]
                for i in range(0, len(batch), BATCH):
                    conn.execute(insert(VE), batch[i : i + BATCH])
                self._finish_version(conn, ds.id, n)
                made.append(n)
            conn.execute(update(D).where(D.c.id == ds.id).values(latest_version=made[-1], updated_at=now()))
            return self._version(conn, ds, made[0]), self._version(conn, ds, made[1])

    def delete_version(self, ref: str, number: int) -> VersionInfo:
        with self.engine.begin() as conn:
            ds = self._find(conn, ref)
            v = self._version(conn, ds, number)
            if v.references:
                raise FailedPrecondition(
                    f"version {number} of dataset {ds.name!r} is used by {', '.join(v.references[:5])}; "
                    "it cannot be deleted while they refer to it",
                    code="version_in_use",
                    field="version",
                )
            conn.execute(delete(VE).where(VE.c.dataset_id == ds.id, VE.c.version == number))
            conn.execute(delete(V).where(V.c.dataset_id == ds.id, V.c.number == number))
            self._gc_blobs(conn, ds.id)
            latest = conn.execute(select(func.max(V.c.number)).where(V.c.dataset_id == ds.id)).scalar() or 0
            conn.execute(update(D).where(D.c.id == ds.id).values(latest_version=latest, updated_at=now()))
            return v

    def set_reference(self, ref: str, number: int, reference: str, add: bool) -> VersionInfo:
        if not reference:
            raise InvalidArgument("field 'reference' is required", code="missing_field", field="reference")
        with self.engine.begin() as conn:
            ds = self._find(conn, ref)
            self._version(conn, ds, number)
            cond = (VR.c.dataset_id == ds.id, VR.c.version == number, VR.c.reference == reference)
            exists = conn.execute(select(VR.c.reference).where(*cond)).first()
            if add and not exists:
                conn.execute(insert(VR).values(dataset_id=ds.id, version=number, reference=reference, created_at=now()))
            elif not add:
                conn.execute(delete(VR).where(*cond))
            return self._version(conn, ds, number)
