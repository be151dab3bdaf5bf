"""The gateway's database code on SQLite and on PostgreSQL (when TUNERY_TEST_DATABASE_URL is set): API keys (the
per-call lookup runs its own SQL on a raw DBAPI connection), request logs (filters, JSON metadata, pagination,
batched writes) and fine-tuned models. Each backend gets a fresh database for the session."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import delete
from sqlalchemy.engine import Engine

from tunery.errors import InvalidArgument, NotFound
from tunery.testing import fresh_postgres_database, postgres_admin_url
from tunery_gateway.errors import Unauthenticated
from tunery_gateway.keys import KeyStore
from tunery_gateway.models import TABLES
from tunery_gateway.settings import GatewaySettings
from tunery_gateway.store import AdapterRecord, AdapterStore, LogFilter, LogStore, LogWriter, open_engine


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path_factory.mktemp('gateway-store') / 'gateway.db'}"
        return
    admin = postgres_admin_url()
    if not admin:
        pytest.skip("TUNERY_TEST_DATABASE_URL not set")
    with fresh_postgres_database(admin) as db_url:
        yield db_url


@pytest.fixture(scope="module")
def settings(url: str, tmp_path_factory: pytest.TempPathFactory) -> GatewaySettings:
    return GatewaySettings(data_dir=tmp_path_factory.mktemp("gateway-data"), database_url=url)


@pytest.fixture
def engine(settings: GatewaySettings) -> Iterator[Engine]:
    """The gateway's engine as it opens it (tables created), on empty tables."""
    engine = open_engine(settings)
    with engine.begin() as conn:
        for table in TABLES:
            conn.execute(delete(table))
    yield engine
    engine.dispose()


@pytest.fixture
def keys(engine: Engine) -> Iterator[KeyStore]:
    store = KeyStore(engine)
    yield store
    store.close()


# ---- API keys -----------------------------------------------------------------------------------------------------


def test_key_lookup(keys: KeyStore) -> None:
    rec, key = keys.create("alice", "inference,fine-tune", rpm=30)
    info = keys.verify(key)
    assert (info.id, info.name, info.scopes, info.rpm) == (rec.id, "alice", ("fine-tune", "inference"), 30)
    ident, secret = key.rsplit("-", 1)
    with pytest.raises(Unauthenticated):
        keys.verify(f"{ident}-{'x' * len(secret)}")  # the row exists, the secret is wrong
    with pytest.raises(Unauthenticated):
        keys.verify(f"tny-{'0' * 12}-{secret}")  # no such row
    with pytest.raises(Unauthenticated):
        keys.verify("not a key at all")
    assert keys.verify(key).id == rec.id  # the per-thread connection is still usable after the misses


def test_revocation_is_seen_at_once_across_stores(keys: KeyStore, settings: GatewaySettings) -> None:
    """`tunery keys revoke` writes the same database from another process: the next check sees it."""
    rec, key = keys.create("bob", "inference")
    assert keys.verify(key).id == rec.id
    other = open_engine(settings)
    try:
        assert KeyStore(other).revoke("bob").revoked_at is not None
    finally:
        other.dispose()
    with pytest.raises(Unauthenticated, match="revoked"):
        keys.verify(key)


def test_key_lookup_from_many_threads(keys: KeyStore) -> None:
    """The gateway checks keys from its thread pool: one raw connection per thread, all of them right."""
    made = [keys.create(f"t{i}", "inference") for i in range(4)]
    errors: list[BaseException] = []

    def check() -> None:
        try:
            for _ in range(20):
                for rec, key in made:
                    assert keys.verify(key).id == rec.id
        except BaseException as err:
            errors.append(err)

    threads = [threading.Thread(target=check) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors


def test_key_records(keys: KeyStore) -> None:
    first, _ = keys.create("same-name", "admin")
    keys.revoke(first.id)
    second, _ = keys.create("same-name", "inference")
    assert keys.find("same-name").id == second.id  # the active one of that name
    keys.create("same-name", "inference")
    with pytest.raises(InvalidArgument, match="give the key id"):
        keys.find("same-name")
    with pytest.raises(NotFound):
        keys.find("nobody")
    assert {r.id for r in keys.list()} >= {second.id} and first.id not in {r.id for r in keys.list()}
    assert first.id in {r.id for r in keys.list(include_revoked=True)}
    shown = keys.find(first.id).as_dict()
    assert abs(shown["created_at"] - time.time()) < 300 and shown["revoked_at"] >= shown["created_at"]


# ---- request logs -------------------------------------------------------------------------------------------------


def row(ident: str, created: datetime, **values: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"id": ident, "created_at": created, "endpoint": "chat.completions", "model": "m",
                            "request_metadata": {}, "params": {"max_tokens": 4}, "request": [{"role": "user"}],
                            "completion": ["hi"], "status": "ok", "http_status": 200, "user": "", "key_id": ""}
    return {**base, **values}


def test_log_filters_and_pages(engine: Engine) -> None:
    store = LogStore(engine)
    t0 = datetime.now(UTC).replace(microsecond=0)
    store.insert_many([
        row("log_a", t0, model="a", request_metadata={"run": "x", "i": "1"}, user="u1"),
        row("log_b", t0 + timedelta(seconds=1), model="b", request_metadata={"run": "x", "i": "2"}),
        row("log_c", t0 + timedelta(seconds=1), model="b", status="error", http_status=404),  # same time as log_b
        row("log_d", t0 + timedelta(seconds=2), model="a", key_id="key_1"),
    ])
    ids = lambda flt, **kw: [r["id"] for r in store.list(flt, **kw)[0]]  # noqa: E731
    assert ids(LogFilter()) == ["log_d", "log_c", "log_b", "log_a"]  # newest first, ties by id
    assert ids(LogFilter(model="b")) == ["log_c", "log_b"]
    assert ids(LogFilter(status="error")) == ["log_c"]
    assert ids(LogFilter(key_id="key_1")) == ["log_d"] and ids(LogFilter(user="u1")) == ["log_a"]
    assert ids(LogFilter(metadata={"run": "x"})) == ["log_b", "log_a"]
    assert ids(LogFilter(metadata={"run": "x", "i": "2"})) == ["log_b"]
    assert ids(LogFilter(since=t0 + timedelta(seconds=1))) == ["log_d", "log_c", "log_b"]
    assert ids(LogFilter(until=t0 + timedelta(seconds=1))) == ["log_a"]
    pages, after = [], ""
    while True:
        rows, more = store.list(LogFilter(), limit=1, after=after)
        pages.append(rows[0]["id"])
        if not more:
            break
        after = rows[0]["id"]
    assert pages == ["log_d", "log_c", "log_b", "log_a"]  # the tie at t0+1 s is paged through, not skipped
    with pytest.raises(InvalidArgument):
        store.list(LogFilter(), after="log_nope")
    got = store.get("log_a")
    assert got["request_metadata"] == {"run": "x", "i": "1"} and got["completion"] == ["hi"]
    assert got["params"] == {"max_tokens": 4} and got["ttft_ms"] is None
    with pytest.raises(NotFound):
        store.get("log_nope")


def test_feedback_filters(engine: Engine) -> None:
    store = LogStore(engine)
    t0 = datetime.now(UTC)
    store.insert_many([row(f"log_{i}", t0 + timedelta(seconds=i)) for i in range(3)])
    assert store.set_feedback("log_0", 1.0, "good")["feedback_comment"] == "good"
    store.set_feedback("log_1", -1.0, "")
    ids = lambda flt: sorted(r["id"] for r in store.list(flt)[0])  # noqa: E731
    assert ids(LogFilter(feedback="any")) == ["log_0", "log_1"]
    assert ids(LogFilter(feedback="none")) == ["log_2"]
    assert ids(LogFilter(min_score=0)) == ["log_0"] and ids(LogFilter(max_score=0)) == ["log_1"]
    with pytest.raises(InvalidArgument):
        LogFilter(feedback="maybe").clauses()
    with pytest.raises(NotFound):
        store.set_feedback("log_nope", 1.0, "")


def test_log_writer_keeps_a_batch_with_one_duplicate(engine: Engine) -> None:
    store = LogStore(engine)
    t0 = datetime.now(UTC)
    store.insert_many([row("log_dup", t0)])
    writer = LogWriter(store)
    try:
        for ident in ("log_w1", "log_dup", "log_w2"):
            writer.put(row(ident, t0 + timedelta(seconds=1)))
        writer.flush()
    finally:
        writer.close()
    assert sorted(r["id"] for r in store.list(LogFilter())[0]) == ["log_dup", "log_w1", "log_w2"]


# ---- fine-tuned models ----------------------------------------------------------------------------------------


def test_adapters(engine: Engine, tmp_path: Path) -> None:
    store = AdapterStore(engine)
    t0 = datetime.now(UTC)
    first = AdapterRecord("ft:base:a:job1", "base", str(tmp_path / "a"), "job1", "job_event", t0)
    store.upsert(first)
    store.upsert(AdapterRecord("ft:base:b:job2", "base", str(tmp_path / "b"), "job2", "api", t0 + timedelta(1)))
    moved = AdapterRecord(first.id, "base", str(tmp_path / "a2"), "job1", "job_event", t0)
    store.upsert(moved)  # the same name again: updated, not duplicated
    got = store.get(first.id)
    assert got is not None and got.adapter_path == moved.adapter_path
    assert [r.id for r in store.all()] == [first.id, "ft:base:b:job2"]
    assert store.delete(first.id) and not store.delete(first.id)
    assert store.get(first.id) is None


def test_internal_key_has_the_inference_scope_only(engine: Engine) -> None:
    """TUNERY_GATEWAY_INTERNAL_API_KEY (what `tunery up` gives the evaluator): inference yes, admin no."""
    from tunery_gateway.errors import PermissionDenied

    store = KeyStore(engine, admin_key="tny-admin-000", internal_key="tny-internal-000")
    try:
        who = store.verify("tny-internal-000")
        assert who.id == "key_internal_env" and who.scopes == ("inference",)
        who.require("inference")
        with pytest.raises(PermissionDenied):
            who.require("admin")
        assert store.verify("tny-admin-000").scopes == ("admin",)
        with pytest.raises(Unauthenticated):
            store.verify("tny-internal-001")
    finally:
        store.close()
    settings = GatewaySettings(internal_api_key="tny-internal-000")
    assert "tny-internal-000" not in repr(settings) and "tny-internal-000" not in str(settings.model_dump())
