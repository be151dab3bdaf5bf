"""Tables. Example content is stored once (`ExampleBlob`) and referenced by the draft and by every version, so
freezing a version copies references, not text, and a version never changes when the draft is edited."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import Column, Index, Text
from sqlmodel import Field, SQLModel


def now() -> datetime:
    return datetime.now(UTC)


class DatasetRow(SQLModel, table=True):
    __tablename__ = "datasets"

    id: str = Field(primary_key=True, max_length=40)
    name: str = Field(index=True, unique=True, max_length=64)
    description: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))
    format: str = Field(default="", max_length=32)
    created_at: datetime = Field(default_factory=now)
    updated_at: datetime = Field(default_factory=now)
    latest_version: int = 0
    draft_modified: bool = False
    draft_count: int = 0
    next_position: int = 0
    # Set while an upload runs; a conditional UPDATE on it makes concurrent uploads fail fast, across processes.
    upload_token: str | None = Field(default=None, max_length=40)
    upload_started_at: datetime | None = None


class ExampleBlob(SQLModel, table=True):
    __tablename__ = "example_blobs"

    id: str = Field(primary_key=True, max_length=40)
    dataset_id: str = Field(foreign_key="datasets.id", index=True, max_length=40, ondelete="CASCADE")
    content: str = Field(sa_column=Column(Text, nullable=False))
    created_at: datetime = Field(default_factory=now)


class DraftEntry(SQLModel, table=True):
    """The editable draft: user-visible example id -> current content."""

    __tablename__ = "draft_entries"
    __table_args__ = (Index("ix_draft_pos", "dataset_id", "position"),)

    dataset_id: str = Field(foreign_key="datasets.id", primary_key=True, max_length=40, ondelete="CASCADE")
    example_id: str = Field(primary_key=True, max_length=40)
    position: int
    blob_id: str = Field(foreign_key="example_blobs.id", max_length=40)
    # "|a|b|" so a tag filter is one LIKE.
    tags: str = Field(default="|", max_length=2000)
    created_at: datetime = Field(default_factory=now)


class VersionRow(SQLModel, table=True):
    __tablename__ = "versions"

    dataset_id: str = Field(foreign_key="datasets.id", primary_key=True, max_length=40, ondelete="CASCADE")
    number: int = Field(primary_key=True)
    example_count: int = 0
    content_sha256: str = Field(default="", max_length=64)
    message: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))
    split: str = Field(default="", max_length=16)
    parent_version: int = 0
    format: str = Field(default="", max_length=32)
    created_at: datetime = Field(default_factory=now)


class VersionEntry(SQLModel, table=True):
    __tablename__ = "version_entries"

    dataset_id: str = Field(primary_key=True, max_length=40)
    version: int = Field(primary_key=True)
    position: int = Field(primary_key=True)
    example_id: str = Field(max_length=40)
    blob_id: str = Field(foreign_key="example_blobs.id", max_length=40)
    tags: str = Field(default="|", max_length=2000)


class VersionReference(SQLModel, table=True):
    __tablename__ = "version_references"

    dataset_id: str = Field(primary_key=True, max_length=40)
    version: int = Field(primary_key=True)
    reference: str = Field(primary_key=True, max_length=200)
    created_at: datetime = Field(default_factory=now)


# The tables as SQLAlchemy Core objects, for the hand-written SQL of store.py and versions.py.
D = DatasetRow.__table__
B = ExampleBlob.__table__
E = DraftEntry.__table__
V = VersionRow.__table__
VE = VersionEntry.__table__
VR = VersionReference.__table__
