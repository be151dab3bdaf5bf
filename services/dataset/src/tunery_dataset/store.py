"""All database I/O of the dataset service (synchronous; the service runs it in worker threads).

`DatasetStore` opens one transaction per call; the SQL of immutable versions lives in `versions`, the records it
returns in `records`.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

from sqlalchemy import and_, delete, func, insert, select, update
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError

from tunery.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound
from tunery.pagination import next_token, page_bounds
from tunery_dataset import versions
from tunery_dataset.models import VE, VR, B, D, E, V, now
from tunery_dataset.records import (
    UPLOAD_LOCK_TTL,
    DatasetInfo,
    ExampleInfo,
    VersionInfo,
    check_name,
    dataset_info,
    decode_tags,
    encode_tags,
    new_id,
)

BATCH = 2000


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
        return dataset_info(row)

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
        return [dataset_info(r) for r in rows], next_token(offset, size, total), total

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
                versions.get(conn, ds, version)
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
                versions.get(conn, ds, version)
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
    def get_version(self, ref: str, number: int) -> VersionInfo:
        if number <= 0:
            raise InvalidArgument(
                "field 'version' must be a version number >= 1", code="missing_field", field="version"
            )
        with self.engine.connect() as conn:
            return versions.get(conn, self._find(conn, ref), number)

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
            return [versions.get(conn, ds, n) for n in nums], next_token(offset, size, total), total

    def freeze(self, ref: str, message: str) -> VersionInfo:
        with self.engine.begin() as conn:
            return versions.freeze(conn, self._find(conn, ref), message)

    def split(
        self, ref: str, number: int, train_ids: list[str], val_ids: list[str], seed: int, fraction: float
    ) -> tuple[VersionInfo, VersionInfo]:
        with self.engine.begin() as conn:
            return versions.split(conn, self._find(conn, ref), number, train_ids, val_ids, seed, fraction)

    def delete_version(self, ref: str, number: int) -> VersionInfo:
        with self.engine.begin() as conn:
            ds = self._find(conn, ref)
            v = versions.get(conn, ds, number)
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
            versions.get(conn, ds, number)
            cond = (VR.c.dataset_id == ds.id, VR.c.version == number, VR.c.reference == reference)
            exists = conn.execute(select(VR.c.reference).where(*cond)).first()
            if add and not exists:
                conn.execute(insert(VR).values(dataset_id=ds.id, version=number, reference=reference, created_at=now()))
            elif not add:
                conn.execute(delete(VR).where(*cond))
            return versions.get(conn, ds, number)
