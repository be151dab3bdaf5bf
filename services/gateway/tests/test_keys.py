"""API keys: `tunery keys` on the gateway's database, scopes, revocation at once, rpm limits, and no key anywhere
in logs, request logs or spans."""

from __future__ import annotations

import logging
import re
from typing import Any

import pytest
from typer.testing import CliRunner

from tunery.cli.main import app as cli
from tunery_gateway.keys import KeyStore, hash_key

runner = CliRunner()


def tunery(gw: Any, *args: str) -> Any:
    result = runner.invoke(cli, [*args, "--data-dir", str(gw.settings.data_dir)], catch_exceptions=False)
    return result


def create_key(gw: Any, name: str, scopes: str = "inference", rpm: int = 0) -> str:
    r = tunery(gw, "keys", "create", "--name", name, "--scopes", scopes, "--rpm", str(rpm))
    assert r.exit_code == 0, r.output
    key = r.stdout.strip().splitlines()[-1]
    assert re.fullmatch(r"tny-[0-9a-f]{12}-[A-Za-z0-9_-]{43}", key), r.stdout
    return key


def test_cli_create_list_revoke(gw: Any) -> None:
    key = create_key(gw, "cli-key", "inference,fine-tune")
    assert gw.chat(key=key).status_code == 200
    listed = tunery(gw, "keys", "list", "--json")
    assert listed.exit_code == 0
    rows = [k for k in __import__("json").loads(listed.stdout)["keys"] if k["name"] == "cli-key"]
    assert rows and rows[0]["scopes"] == ["fine-tune", "inference"] and "key" not in rows[0]
    assert key not in listed.stdout
    # Only the hash is stored.
    with gw.gateway.db_engine.connect() as conn:
        dump = "\n".join(str(tuple(r)) for r in conn.exec_driver_sql("SELECT * FROM gateway_api_keys"))
    assert key not in dump and hash_key(key) in dump
    # Revoked: the very next call fails, no restart, no cache to wait for.
    r = tunery(gw, "keys", "revoke", rows[0]["id"])
    assert r.exit_code == 0 and "revoked" in r.stdout
    assert gw.chat(key=key).json()["error"]["code"] == "revoked_api_key"


def test_cli_rejects_bad_input(gw: Any) -> None:
    r = tunery(gw, "keys", "create", "--name", "x", "--scopes", "inference,root")
    assert r.exit_code == 1 and "scopes" in r.output
    r = tunery(gw, "keys", "revoke", "no-such-key")
    assert r.exit_code == 1 and "no API key" in r.output


def test_scopes(gw: Any) -> None:
    inference = create_key(gw, "scoped-inference", "inference")
    admin = create_key(gw, "scoped-admin", "admin")
    assert gw.http("GET", "/v1/models", key=inference).status_code == 200
    assert gw.http("GET", "/v1/logs", key=inference).status_code == 403
    assert gw.http("GET", "/v1/keys", key=inference).status_code == 403
    assert gw.http("GET", "/v1/logs", key=admin).status_code == 200
    assert gw.chat(key=admin).status_code == 200  # admin implies every scope


def test_rate_limit(gw: Any) -> None:
    key = create_key(gw, "limited", "inference", rpm=3)
    codes = [gw.http("GET", "/v1/models", key=key).status_code for _ in range(5)]
    assert codes[:3] == [200, 200, 200] and codes[3:] == [429, 429]
    r = gw.http("GET", "/v1/models", key=key)
    assert r.json()["error"]["code"] == "rate_limit_exceeded"
    assert 1 <= int(r.headers["Retry-After"]) <= 20
    # Other keys are not affected.
    assert gw.http("GET", "/v1/models").status_code == 200


def test_keys_over_http(gw: Any) -> None:
    r = gw.http("POST", "/v1/keys", json={"name": "via-api", "scopes": ["inference"], "rpm": 100})
    assert r.status_code == 201, r.text
    created = r.json()
    assert created["key"].startswith("tny-") and created["rpm"] == 100
    assert gw.chat(key=created["key"]).status_code == 200
    listed = gw.http("GET", "/v1/keys").json()["data"]
    assert any(k["id"] == created["id"] for k in listed) and all("key" not in k for k in listed)
    assert gw.http("DELETE", f"/v1/keys/{created['id']}").json()["revoked_at"] is not None
    assert gw.chat(key=created["key"]).status_code == 401
    bad = gw.http("POST", "/v1/keys", json={"name": "x", "scopes": ["superuser"]})
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "scopes"


def test_no_key_in_logs_request_logs_or_spans(gw: Any, caplog: pytest.LogCaptureFixture) -> None:
    key = create_key(gw, "secret-watch", "inference")
    gw.spans.clear()
    with caplog.at_level(logging.DEBUG):
        assert gw.chat(key=key, metadata={"k": "v"}).status_code == 200
        assert gw.chat(key=key, model="missing-model").status_code == 404
        assert gw.chat(key=key + "x").status_code == 401
        stream = gw.chat(key=key, stream=True)
        assert stream.status_code == 200
        # What the calls do after their responses (their request-log rows, stored by the writer thread) is done
        # once flush returns, and anything it logged is in caplog by then: still at DEBUG.
        gw.gateway.logs.flush()
    assert key not in caplog.text
    with gw.gateway.db_engine.connect() as conn:
        dump = "\n".join(str(tuple(r)) for r in conn.exec_driver_sql("SELECT * FROM gateway_request_logs"))
    assert key not in dump
    secret = key.rsplit("-", 1)[1]
    spans = gw.spans.get_finished_spans()
    assert spans
    for span in spans:
        text = repr(dict(span.attributes or {})) + repr([e.attributes for e in span.events]) + span.name
        assert key not in text and secret not in text
    store = KeyStore(gw.gateway.db_engine)
    assert any(s.attributes.get("tunery.api_key.id") == store.find("secret-watch").id for s in spans)
