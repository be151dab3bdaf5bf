"""The dataset service end to end: real gRPC channel, real NATS events, real SQLite / PostgreSQL."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from sqlalchemy import update

from tunery.dataset.v1 import dataset_pb2 as pb
from tunery.errors import FailedPrecondition, InvalidArgument, NotFound
from tunery.runtime.grpcerrors import from_rpc_error
from tunery.split import split_examples
from tunery.testing import EventLog
from tunery_dataset.models import D, now
from tunery_dataset.records import UPLOAD_LOCK_TTL
from tunery_dataset.testing import Service


def chat(i: int, answer: str = "") -> dict[str, Any]:
    return {
        "messages": [
            {"role": "system", "content": "You are a terse assistant."},
            {"role": "user", "content": f"Question number {i}: what is {i} plus {i}?"},
            {"role": "assistant", "content": answer or f"{i} plus {i} is {2 * i}."},
        ]
    }


def jsonl(rows: list[dict[str, Any]], eol: bytes = b"\n") -> bytes:
    return b"".join(json.dumps(r).encode() + eol for r in rows)


def requests(data: bytes, dataset: str = "", chunk: int = 7919, **header: Any) -> Iterator[pb.UploadExamplesRequest]:
    yield pb.UploadExamplesRequest(header=pb.UploadHeader(dataset=dataset, filename="train.jsonl", **header))
    for i in range(0, len(data), chunk):
        yield pb.UploadExamplesRequest(chunk=data[i : i + chunk])


def err(call: Any, *args: Any, **kw: Any) -> Any:
    with pytest.raises(grpc.RpcError) as info:
        call(*args, **kw)
    return from_rpc_error(info.value)


def new_dataset(svc: Service, prefix: str = "ds") -> pb.Dataset:
    name = f"{prefix}-{uuid.uuid4().hex[:8]}"
    return svc.stub.CreateDataset(pb.CreateDatasetRequest(name=name, description="test")).dataset


def draft_jsons(svc: Service, ds: str, version: int = 0) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    token = ""
    while True:
        r = svc.stub.ListExamples(
            pb.ListExamplesRequest(dataset=ds, version=version, page=dict(page_size=100, page_token=token))
        )
        out += [json.loads(e.json) for e in r.examples]
        token = r.page.next_page_token
        if not token:
            return out


def test_create_get_list_rename_delete(service: Service, event_log: EventLog) -> None:
    ds = new_dataset(service)
    assert ds.id.startswith("ds_") and ds.draft_example_count == 0
    _, event, headers = event_log.wait_for("dataset.created", ds.id)
    assert headers["Nats-Msg-Id"] == event.id == f"dataset.{ds.id}.created"
    got = service.stub.GetDataset(pb.GetDatasetRequest(dataset=ds.name)).dataset
    assert got.id == ds.id
    renamed = service.stub.UpdateDataset(pb.UpdateDatasetRequest(dataset=ds.id, name=ds.name + "-x")).dataset
    assert renamed.name == ds.name + "-x"
    for _ in range(3):
        new_dataset(service, "page")
    first = service.stub.ListDatasets(pb.ListDatasetsRequest(page=dict(page_size=2)))
    assert len(first.datasets) == 2 and first.page.next_page_token and first.page.total_size >= 4
    second = service.stub.ListDatasets(
        pb.ListDatasetsRequest(page=dict(page_size=2, page_token=first.page.next_page_token))
    )
    assert {d.id for d in first.datasets}.isdisjoint({d.id for d in second.datasets})
    service.stub.DeleteDataset(pb.DeleteDatasetRequest(dataset=ds.id))
    event_log.wait_for("dataset.deleted", ds.id)
    e = err(service.stub.GetDataset, pb.GetDatasetRequest(dataset=ds.id))
    assert isinstance(e, NotFound) and e.code == "dataset_not_found"


@pytest.mark.parametrize("name", ["../etc", "a/b", "bad\x07name", "", ".hidden", "x" * 65, "a..b"])
def test_bad_dataset_names(service: Service, name: str) -> None:
    e = err(service.stub.CreateDataset, pb.CreateDatasetRequest(name=name))
    assert isinstance(e, InvalidArgument) and e.field == "name"
    assert e.code in {"invalid_name", "missing_field"}


def test_duplicate_name_and_missing_fields(service: Service) -> None:
    ds = new_dataset(service)
    e = err(service.stub.CreateDataset, pb.CreateDatasetRequest(name=ds.name))
    assert e.code == "dataset_exists" and ds.name in e.message
    assert err(service.stub.GetDataset, pb.GetDatasetRequest()).field == "dataset"
    assert err(service.stub.FreezeVersion, pb.FreezeVersionRequest()).field == "dataset"
    assert err(service.stub.GetExample, pb.GetExampleRequest(dataset=ds.id)).field == "example_id"
    assert err(service.stub.UploadExamples, iter([pb.UploadExamplesRequest(chunk=b"{}")])).code == "missing_header"


def test_upload_stores_all_and_emits(service: Service, event_log: EventLog) -> None:
    ds = new_dataset(service)
    rows = [chat(i) for i in range(25)]
    r = service.stub.UploadExamples(requests(jsonl(rows), ds.id, tags=["seed"]))
    assert r.examples_added == 25 and r.lines == 25 and r.format == "chat"
    assert r.dataset.draft_example_count == 25
    assert draft_jsons(service, ds.id) == rows
    event_log.wait_for("dataset.examples.uploaded", ds.id)
    tagged = service.stub.ListExamples(pb.ListExamplesRequest(dataset=ds.id, tag="seed"))
    assert tagged.page.total_size == 25
    # appending keeps order; replace swaps the draft
    service.stub.UploadExamples(requests(jsonl([chat(100)]), ds.id))
    assert draft_jsons(service, ds.id)[-1] == chat(100)
    service.stub.UploadExamples(requests(jsonl([chat(7)]), ds.id, replace=True))
    assert draft_jsons(service, ds.id) == [chat(7)]


def test_bom_crlf_and_no_trailing_newline_are_accepted(service: Service) -> None:
    ds = new_dataset(service)
    data = b"\xef\xbb\xbf" + jsonl([chat(1), chat(2)], eol=b"\r\n") + json.dumps(chat(3)).encode()
    r = service.stub.UploadExamples(requests(data, ds.id, chunk=5))
    assert r.examples_added == 3
    assert draft_jsons(service, ds.id) == [chat(1), chat(2), chat(3)]


def test_rejected_file_lists_problems_and_stores_nothing(service: Service) -> None:
    ds = new_dataset(service)
    service.stub.UploadExamples(requests(jsonl([chat(0)]), ds.id))
    bad = [
        json.dumps(chat(1)),  # 1 ok
        "[1, 2]",  # 2 not an object
        json.dumps({"messages": [{"role": "robot", "content": "x"}]}),  # 3 role
        json.dumps({"messages": [{"role": "user", "content": "q"}, {"role": "assistant"}]}),  # 4 no content
        json.dumps(
            {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a", "weight": 2}]}
        ),  # 5 weight
        "{not json",  # 6
    ]
    data = ("\n".join(bad) + "\n").encode() + b'{"messages": [{"role": "user", "content": "\xff"}]}\n'
    e = err(service.stub.UploadExamples, requests(data, ds.id))
    assert isinstance(e, InvalidArgument) and e.code == "validation_failed"
    codes = {(p.line, p.code) for p in e.problems}
    assert {
        (2, "not_an_object"),
        (3, "unrecognized_role"),
        (4, "missing_content"),
        (5, "invalid_weight"),
        (6, "invalid_json"),
        (7, "invalid_utf8"),
    } <= codes
    assert all(p.file == "train.jsonl" for p in e.problems)
    assert "nothing stored" in e.message
    assert draft_jsons(service, ds.id) == [chat(0)]


@pytest.mark.parametrize(
    "data,code",
    [
        (b"", "empty_file"),
        (b"\n\n  \n", "empty_file"),
        (b'{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "trunc', "invalid_json"),
    ],
)
def test_empty_and_truncated(service: Service, data: bytes, code: str) -> None:
    ds = new_dataset(service)
    e = err(service.stub.UploadExamples, requests(data, ds.id))
    assert code in {p.code for p in e.problems}
    assert service.stub.GetDataset(pb.GetDatasetRequest(dataset=ds.id)).dataset.draft_example_count == 0


def test_huge_line_and_oversized_upload(service: Service) -> None:
    ds = new_dataset(service)
    line = (
        json.dumps(
            {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "x" * (10 * 1024 * 1024)}]}
        ).encode()
        + b"\n"
    )
    e = err(service.stub.UploadExamples, requests(jsonl([chat(1)]) + line, ds.id, chunk=1 << 20))
    assert [(p.line, p.code) for p in e.problems] == [(2, "line_too_long")]
    declared = err(service.stub.UploadExamples, requests(b"", ds.id, size_bytes=10**12))
    assert declared.code == "file_too_large" and type(declared).__name__ == "ResourceExhausted"
    big = jsonl([chat(i, "y" * 4000) for i in range(9000)])  # > 32 MiB test limit
    streamed = err(service.stub.UploadExamples, requests(big, ds.id, chunk=1 << 20))
    assert streamed.code == "file_too_large"
    assert service.stub.GetDataset(pb.GetDatasetRequest(dataset=ds.id)).dataset.draft_example_count == 0
    # the lock was released: a good upload now works
    assert service.stub.UploadExamples(requests(jsonl([chat(1)]), ds.id)).examples_added == 1


def test_concurrent_upload_is_refused(service: Service) -> None:
    """A second upload into a draft that an upload holds is refused; the first one is unharmed.

    Deterministic under any load: the probe runs only once the dataset says the first upload holds the lock, so it
    can only be refused (a probe sent earlier could take the lock itself and make the first upload the refused one).
    """
    ds = new_dataset(service)
    release = threading.Event()

    def slow() -> Iterator[pb.UploadExamplesRequest]:
        yield pb.UploadExamplesRequest(header=pb.UploadHeader(dataset=ds.id, filename="a.jsonl"))
        yield pb.UploadExamplesRequest(chunk=jsonl([chat(1)]))
        release.wait(120)
        yield pb.UploadExamplesRequest(chunk=jsonl([chat(2)]))

    def uploading() -> bool:
        return service.stub.GetDataset(pb.GetDatasetRequest(dataset=ds.id)).dataset.upload_in_progress

    assert not uploading()
    first = service.stub.UploadExamples.future(slow())
    try:
        deadline = time.monotonic() + 120
        while not uploading():
            if first.done():
                first.result()  # the upload ended without holding the lock: show why
            assert time.monotonic() < deadline, "the first upload never took the lock"
            time.sleep(0.005)
        seen = err(service.stub.UploadExamples, requests(jsonl([chat(3)]), ds.id))
        assert isinstance(seen, FailedPrecondition) and seen.code == "upload_in_progress"
        assert "in progress" in seen.message
    finally:
        release.set()
    assert first.result(120).examples_added == 2
    assert not uploading()
    assert draft_jsons(service, ds.id) == [chat(1), chat(2)]


def test_a_lock_left_by_a_dead_upload_expires(service: Service) -> None:
    """An upload whose process died keeps the lock only for UPLOAD_LOCK_TTL; then it is not "in progress" any more
    and the next upload takes the lock over."""
    ds = new_dataset(service)
    store = service.app.service.store
    store.lock_upload(ds.id)  # as a process that died mid-upload leaves it
    assert service.stub.GetDataset(pb.GetDatasetRequest(dataset=ds.id)).dataset.upload_in_progress
    assert err(service.stub.UploadExamples, requests(jsonl([chat(1)]), ds.id)).code == "upload_in_progress"
    with store.engine.begin() as conn:
        conn.execute(update(D).where(D.c.id == ds.id).values(upload_started_at=now() - UPLOAD_LOCK_TTL * 1.01))
    assert not service.stub.GetDataset(pb.GetDatasetRequest(dataset=ds.id)).dataset.upload_in_progress
    assert service.stub.UploadExamples(requests(jsonl([chat(1)]), ds.id)).examples_added == 1


def test_examples_edit_tag_filter_and_versions(service: Service, event_log: EventLog) -> None:
    ds = new_dataset(service)
    service.stub.UploadExamples(requests(jsonl([chat(i) for i in range(12)]), ds.id))
    added = service.stub.AddExample(
        pb.AddExampleRequest(dataset=ds.id, json=json.dumps(chat(99, "ninety-nine")), tags=["manual"])
    )
    assert added.example.tags == ["manual"]
    bad = err(service.stub.AddExample, pb.AddExampleRequest(dataset=ds.id, json='{"messages": []}'))
    assert isinstance(bad, InvalidArgument) and bad.field == "json"
    found = service.stub.ListExamples(pb.ListExamplesRequest(dataset=ds.id, text="NINETY-nine"))
    assert [e.id for e in found.examples] == [added.example.id]
    v1 = service.stub.FreezeVersion(pb.FreezeVersionRequest(dataset=ds.id, message="first")).version
    assert v1.number == 1 and v1.example_count == 13 and len(v1.content_sha256) == 64
    event_log.wait_for("dataset.version.frozen", ds.id)
    before = draft_jsons(service, ds.id, 1)
    first_id = service.stub.ListExamples(pb.ListExamplesRequest(dataset=ds.id)).examples[0].id
    service.stub.UpdateExample(
        pb.UpdateExampleRequest(dataset=ds.id, example_id=first_id, json=json.dumps(chat(0, "edited")))
    )
    service.stub.DeleteExample(pb.DeleteExampleRequest(dataset=ds.id, example_id=added.example.id))
    service.stub.TagExamples(pb.TagExamplesRequest(dataset=ds.id, example_ids=[first_id], add_tags=["good"]))
    assert draft_jsons(service, ds.id, 1) == before, "a frozen version never changes"
    d = service.stub.GetDataset(pb.GetDatasetRequest(dataset=ds.id)).dataset
    assert d.draft_modified and d.draft_example_count == 12
    v2 = service.stub.FreezeVersion(pb.FreezeVersionRequest(dataset=ds.id)).version
    assert v2.number == 2 and v2.example_count == 12 and v2.content_sha256 != v1.content_sha256
    assert draft_jsons(service, ds.id, 2)[0] == chat(0, "edited")
    assert service.stub.ListExamples(pb.ListExamplesRequest(dataset=ds.id, version=2, tag="good")).page.total_size == 1
    # a version a job uses cannot be deleted
    service.stub.SetVersionReference(
        pb.SetVersionReferenceRequest(dataset=ds.id, version=1, reference="job:ft-1", add=True)
    )
    e = err(service.stub.DeleteVersion, pb.DeleteVersionRequest(dataset=ds.id, version=1))
    assert isinstance(e, FailedPrecondition) and "job:ft-1" in e.message
    assert err(service.stub.DeleteDataset, pb.DeleteDatasetRequest(dataset=ds.id)).code == "dataset_in_use"
    service.stub.SetVersionReference(pb.SetVersionReferenceRequest(dataset=ds.id, version=1, reference="job:ft-1"))
    service.stub.DeleteVersion(pb.DeleteVersionRequest(dataset=ds.id, version=1))
    assert draft_jsons(service, ds.id, 2)[0] == chat(0, "edited")
    missing = err(service.stub.GetVersion, pb.GetVersionRequest(dataset=ds.id, version=1))
    assert isinstance(missing, NotFound) and "versions: 2" in missing.message


def test_freeze_empty_is_refused(service: Service) -> None:
    ds = new_dataset(service)
    e = err(service.stub.FreezeVersion, pb.FreezeVersionRequest(dataset=ds.id))
    assert isinstance(e, FailedPrecondition) and e.code == "empty_dataset"


def test_split_is_seeded(service: Service) -> None:
    ds = new_dataset(service)
    service.stub.UploadExamples(requests(jsonl([chat(i) for i in range(40)]), ds.id))
    service.stub.FreezeVersion(pb.FreezeVersionRequest(dataset=ds.id))
    a = service.stub.SplitVersion(pb.SplitVersionRequest(dataset=ds.id, version=1, validation_fraction=0.25, seed=7))
    b = service.stub.SplitVersion(pb.SplitVersionRequest(dataset=ds.id, version=1, validation_fraction=0.25, seed=7))
    assert (a.train.example_count, a.validation.example_count) == (30, 10)
    assert a.train.split == "train" and a.validation.parent_version == 1
    assert a.validation.content_sha256 == b.validation.content_sha256
    train, val = draft_jsons(service, ds.id, a.train.number), draft_jsons(service, ds.id, a.validation.number)
    assert sorted(map(json.dumps, train + val)) == sorted(json.dumps(chat(i)) for i in range(40))
    e = err(service.stub.SplitVersion, pb.SplitVersionRequest(dataset=ds.id, version=1, validation_fraction=1.5))
    assert e.field == "validation_fraction"


def test_the_same_file_splits_the_same_way_everywhere(service: Service) -> None:
    """Split by content: two datasets, and the same file uploaded again into one draft (new example ids), give the
    same validation examples, and the ones the trainer's split (the same `tunery.split` function) picks."""
    rows = [chat(i) for i in range(40)] + [chat(7), chat(7)]  # exact copies are told apart the same way too
    data = jsonl(rows)
    _, want = split_examples(rows, 0.2, seed=11)
    expected = b"".join(json.dumps(rows[i]).encode() + b"\n" for i in want)
    first, second = new_dataset(service), new_dataset(service)
    exports, digests, ids = [], set(), []
    for ds in (first, second, second):
        service.stub.UploadExamples(requests(data, ds.id, replace=True))
        v = service.stub.FreezeVersion(pb.FreezeVersionRequest(dataset=ds.id)).version
        split = service.stub.SplitVersion(
            pb.SplitVersionRequest(dataset=ds.id, version=v.number, validation_fraction=0.2, seed=11)
        ).validation
        req = pb.ExportVersionRequest(dataset=ds.id, version=split.number)
        exports.append(b"".join(c.chunk for c in service.stub.ExportVersion(req)))
        digests.add(split.content_sha256)
        listed = service.stub.ListExamples(pb.ListExamplesRequest(dataset=ds.id, version=split.number))
        ids.append(frozenset(e.id for e in listed.examples))
    assert exports == [expected] * 3 and len(want) == 8
    assert len(digests) == 1
    assert len(set(ids)) == 3, "every upload has new example ids, yet the split is the same"


def test_dedup_reports_then_removes(service: Service) -> None:
    ds = new_dataset(service)
    long = " ".join(f"word{i}" for i in range(60))
    near = long.replace("word30", "changed")
    rows = [chat(1), chat(2), chat(1), chat(3, long), chat(3, near), chat(5)]
    data = jsonl(rows).replace(b'"content": "1 plus', b'"content":  "1 plus', 1)
    service.stub.UploadExamples(requests(data, ds.id))
    report = service.stub.Deduplicate(pb.DeduplicateRequest(dataset=ds.id, near=True, threshold=0.8))
    kinds = sorted(g.kind for g in report.groups)
    assert kinds == ["exact", "near"] and report.removed == 0
    assert len(draft_jsons(service, ds.id)) == 6
    done = service.stub.Deduplicate(pb.DeduplicateRequest(dataset=ds.id, near=True, threshold=0.8, remove=True))
    assert done.removed == 2 and done.dataset.draft_example_count == 4
    assert draft_jsons(service, ds.id) == [rows[0], rows[1], rows[3], rows[5]]


def test_statistics_with_the_default_models_tokenizer(service: Service) -> None:
    ds = new_dataset(service)
    service.stub.UploadExamples(requests(jsonl([chat(i) for i in range(20)]), ds.id))
    s = service.stub.GetStatistics(pb.GetStatisticsRequest(dataset=ds.id, n_epochs=2)).statistics
    assert s.base_model == "smollm2-135m-instruct" and s.examples == 20 and s.context_length == 8192
    assert 20 < s.min_tokens <= s.mean_tokens <= s.max_tokens < 80
    assert s.total_tokens >= 20 * s.min_tokens and s.estimated_training_tokens == 2 * s.total_tokens
    assert 0 < s.trained_tokens < s.total_tokens
    auto = service.stub.GetStatistics(pb.GetStatisticsRequest(dataset=ds.id)).statistics
    assert auto.n_epochs == 5  # "auto": ceil(100 / 20)
    e = err(service.stub.GetStatistics, pb.GetStatisticsRequest(dataset=ds.id, base_model="no-such-model"))
    assert isinstance(e, NotFound) and "smollm2-135m-instruct" in e.message


def test_export_round_trip(service: Service) -> None:
    ds = new_dataset(service)
    rows = [chat(i, "é ✓ " * i) for i in range(30)]
    service.stub.UploadExamples(requests(jsonl(rows), ds.id))
    service.stub.FreezeVersion(pb.FreezeVersionRequest(dataset=ds.id))
    data = b"".join(c.chunk for c in service.stub.ExportVersion(pb.ExportVersionRequest(dataset=ds.id, version=1)))
    assert [json.loads(x) for x in data.splitlines()] == rows
    e = err(lambda: list(service.stub.ExportVersion(pb.ExportVersionRequest(dataset=ds.id, version=9))))
    assert isinstance(e, NotFound)


def test_validate_only_stores_nothing(service: Service) -> None:
    r = service.stub.ValidateFile(requests(jsonl([chat(1), {"messages": [{"role": "assistant", "content": "a"}]}])))
    assert r.lines == 2 and r.examples_added == 0
    assert "no_user_message" in {w.code for w in r.warnings}
