"""Domain objects <-> protobuf messages; the only module besides the servicer that knows proto types."""

from __future__ import annotations

from tunery.dataset.v1 import dataset_pb2 as pb
from tunery.runtime.protoconv import ts
from tunery_dataset.curation import DuplicateGroup
from tunery_dataset.records import DatasetInfo, ExampleInfo, VersionInfo


def dataset(d: DatasetInfo) -> pb.Dataset:
    return pb.Dataset(
        id=d.id,
        name=d.name,
        description=d.description,
        create_time=ts(d.created_at),
        update_time=ts(d.updated_at),
        draft_example_count=d.draft_count,
        latest_version=d.latest_version,
        format=d.format,
        draft_modified=d.draft_modified,
        upload_in_progress=d.upload_in_progress,
    )


def version(v: VersionInfo) -> pb.Version:
    return pb.Version(
        dataset_id=v.dataset_id,
        number=v.number,
        example_count=v.example_count,
        create_time=ts(v.created_at),
        content_sha256=v.content_sha256,
        message=v.message,
        split=v.split,
        parent_version=v.parent_version,
        references=v.references,
        format=v.format,
    )


def example(e: ExampleInfo, fmt: str = "") -> pb.Example:
    return pb.Example(
        id=e.id,
        dataset_id=e.dataset_id,
        json=e.json,
        tags=e.tags,
        position=e.position,
        format=fmt,
        create_time=ts(e.created_at),
    )


def duplicate_group(g: DuplicateGroup) -> pb.DuplicateGroup:
    return pb.DuplicateGroup(kind=g.kind, example_ids=list(g.ids), similarity=g.similarity)


def dataset_event(d: DatasetInfo, v: VersionInfo | None) -> pb.DatasetEvent:
    return pb.DatasetEvent(dataset=dataset(d), version=version(v) if v else None)
