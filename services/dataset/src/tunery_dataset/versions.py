"""Immutable versions: the SQL that snapshots a draft, splits a version and digests its content.

Every function runs inside the caller's transaction (`DatasetStore` opens it), so a version appears whole or not at
all. A version's entries point at the same content blobs as the draft did, so freezing copies references, not text.
"""

from __future__ import annotations

import hashlib

from sqlalchemy import func, insert, select, update
from sqlalchemy.engine import Connection

from tunery.errors import FailedPrecondition, NotFound
from tunery_dataset.models import VE, VR, B, D, E, V, now
from tunery_dataset.records import DatasetInfo, VersionInfo

BATCH = 2000


def get(conn: Connection, ds: DatasetInfo, number: int) -> VersionInfo:
    """Version `number` of `ds`, with the references that keep it from being deleted."""
    row = conn.execute(select(V).where(V.c.dataset_id == ds.id, V.c.number == number)).first()
    if row is None:
        have = (
            ", ".join(
                str(n)
                for n in conn.execute(select(V.c.number).where(V.c.dataset_id == ds.id).order_by(V.c.number)).scalars()
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


def digest(conn: Connection, ds_id: str, version: int) -> str:
    """sha256 over the contents in order, each followed by a newline (what `ExportVersion` streams)."""
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


def create(conn: Connection, ds: DatasetInfo, message: str, split: str = "", parent: int = 0, fmt: str = "") -> int:
    """A new, still empty version row; returns its number (one more than the highest so far)."""
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


def finish(conn: Connection, ds_id: str, number: int) -> None:
    """Record the example count and digest once the entries are in."""
    count = conn.execute(
        select(func.count()).select_from(VE).where(VE.c.dataset_id == ds_id, VE.c.version == number)
    ).scalar_one()
    conn.execute(
        update(V)
        .where(V.c.dataset_id == ds_id, V.c.number == number)
        .values(example_count=count, content_sha256=digest(conn, ds_id, number))
    )


def freeze(conn: Connection, ds: DatasetInfo, message: str) -> VersionInfo:
    """Snapshot the draft as the next version: entries point at the same blobs, so nothing is copied."""
    if ds.draft_count == 0:
        raise FailedPrecondition(
            f"dataset {ds.name!r} has no examples to freeze; upload or add some first",
            code="empty_dataset",
            field="dataset",
        )
    number = create(conn, ds, message)
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
    finish(conn, ds.id, number)
    conn.execute(update(D).where(D.c.id == ds.id).values(latest_version=number, draft_modified=False, updated_at=now()))
    return get(conn, ds, number)


def split(
    conn: Connection, ds: DatasetInfo, number: int, train_ids: list[str], val_ids: list[str], seed: int, fraction: float
) -> tuple[VersionInfo, VersionInfo]:
    """Two new versions from version `number`: its `train_ids` and its `val_ids` entries, each in the given order."""
    parent = get(conn, ds, number)
    rows = {
        r.example_id: r
        for r in conn.execute(
            select(VE.c.example_id, VE.c.blob_id, VE.c.tags).where(VE.c.dataset_id == ds.id, VE.c.version == number)
        ).all()
    }
    made = []
    for split_name, ids in (("train", train_ids), ("validation", val_ids)):
        msg = f"{split_name} split of version {number} (validation_fraction={fraction}, seed={seed})"
        n = create(conn, ds, msg, split=split_name, parent=number, fmt=parent.format)
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
        finish(conn, ds.id, n)
        made.append(n)
    conn.execute(update(D).where(D.c.id == ds.id).values(latest_version=made[-1], updated_at=now()))
    return get(conn, ds, made[0]), get(conn, ds, made[1])
