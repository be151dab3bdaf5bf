"""The plain records the dataset service's layers exchange, and the checks on user-chosen names and tags.

The store returns these, the service passes them on, and `convert` turns them into protobuf at the gRPC edge.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from tunery.errors import InvalidArgument
from tunery_dataset.models import now

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
TAG_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$")
# An upload lock older than this is considered abandoned (its process died) and may be taken over.
UPLOAD_LOCK_TTL = timedelta(hours=6)


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
    upload_in_progress: bool = False
    """An upload into the draft holds the upload lock (one that outlived `UPLOAD_LOCK_TTL` does not count)."""


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


def dataset_info(row: object) -> DatasetInfo:
    """A `datasets` row as a record."""
    r = row._mapping  # type: ignore[attr-defined]
    started = r["upload_started_at"]
    if started is not None and started.tzinfo is None:  # SQLite returns naive UTC values
        started = started.replace(tzinfo=UTC)
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
        r["upload_token"] is not None and started is not None and started > now() - UPLOAD_LOCK_TTL,
    )
