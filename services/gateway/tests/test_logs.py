"""Request logs: every call stored, listed and filtered (API and `tunery logs`), rated, and imported into a dataset
through the real dataset service — the way from production back to training.

Each test makes its own calls (tagged with its own metadata) and gives its own feedback, so the tests pass alone, in
any order and together.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import pytest
from typer.testing import CliRunner

from tunery.cli.main import app as cli
from tunery.dataset.v1 import dataset_pb2 as dpb
from tunery.dataset.v1 import dataset_pb2_grpc
from tunery.runtime.client import channel
from tunery_gateway.keys import KeyStore

runner = CliRunner()


@pytest.fixture
def calls(gw: Any) -> dict[str, Any]:
    """Four calls tagged with this test's own metadata: three good ones, one for a model that does not exist."""
    tag = uuid.uuid4().hex[:8]
    store = KeyStore(gw.gateway.db_engine)
    _, user_key = store.create(f"logs-user-{tag}", "inference")
    _, other_key = store.create(f"logs-other-{tag}", "inference")
    ids = []
    for i in range(3):
        r = gw.client(user_key).chat.completions.create(
            model=gw.base, messages=[{"role": "system", "content": "Be kind."},
                                     {"role": "user", "content": f"question {i} {tag}"}],
            max_tokens=5, temperature=0, metadata={"run": tag, "i": str(i)}, user=f"user-{i % 2}")
        ids.append(r.id)
    bad = gw.chat(key=user_key, model="missing-model", metadata={"run": tag})
    assert bad.status_code == 404
    return {"tag": tag, "ids": ids, "user_key": user_key, "other_key": other_key, "since": time.time() - 60}


def rate(gw: Any, log_id: str, score: float, comment: str = "") -> None:
    r = gw.http("POST", f"/v1/logs/{log_id}/feedback", json={"score": score, "comment": comment})
    assert r.status_code == 200, r.text


def logs(gw: Any, **params: Any) -> list[dict[str, Any]]:
    r = gw.http("GET", "/v1/logs", params=params)
    assert r.status_code == 200, r.text
    return r.json()["data"]  # type: ignore[no-any-return]


def test_every_call_is_logged(gw: Any, calls: dict[str, Any]) -> None:
    found = logs(gw, **{"metadata.run": calls["tag"]})
    assert len(found) == 4
    ok = [x for x in found if x["status"] == "ok"]
    assert sorted(x["id"] for x in ok) == sorted(calls["ids"])
    one = next(x for x in ok if x["metadata"]["i"] == "0")
    assert one["model"] == gw.base and one["endpoint"] == "chat.completions"
    assert one["request"][1]["content"].startswith("question 0")
    assert isinstance(one["completion"][0], str)
    assert one["usage"]["completion_tokens"] >= 1 and one["usage"]["prompt_tokens"] > 5
    assert one["latency_ms"] > 0 and one["ttft_ms"] is not None and one["ttft_ms"] <= one["latency_ms"]
    assert one["params"]["max_tokens"] == 5 and one["params"]["temperature"] == 0
    assert one["key_id"].startswith("key_") and one["user"] == "user-0" and len(one["trace_id"]) == 32
    failed = next(x for x in found if x["status"] == "error")
    assert failed["http_status"] == 404 and failed["error"]["code"] == "model_not_found"
    assert gw.http("GET", f"/v1/logs/{one['id']}").json()["id"] == one["id"]
    assert gw.http("GET", "/v1/logs/nope").status_code == 404


def test_filters(gw: Any, calls: dict[str, Any]) -> None:
    run = {"metadata.run": calls["tag"]}
    assert len(logs(gw, **run, status="ok")) == 3
    assert len(logs(gw, **run, model="missing-model")) == 1
    assert len(logs(gw, **run, user="user-1")) == 1
    assert [x["metadata"]["i"] for x in logs(gw, **run, **{"metadata.i": "2"})] == ["2"]
    assert len(logs(gw, **run, since=calls["since"])) == 4
    assert logs(gw, **run, until="2000-01-01T00:00:00Z") == []
    page = gw.http("GET", "/v1/logs", params={**run, "limit": 2}).json()
    assert len(page["data"]) == 2 and page["has_more"]
    rest = gw.http("GET", "/v1/logs", params={**run, "limit": 2, "after": page["last_id"]}).json()
    assert len(rest["data"]) == 2 and not rest["has_more"]
    assert {x["id"] for x in page["data"]}.isdisjoint(x["id"] for x in rest["data"])
    assert gw.http("GET", "/v1/logs", params={"since": "yesterday"}).status_code == 400


def test_feedback(gw: Any, calls: dict[str, Any]) -> None:
    first, second = calls["ids"][0], calls["ids"][1]
    r = gw.http("POST", f"/v1/logs/{first}/feedback", key=calls["user_key"], json={"score": 1, "comment": "great"})
    assert r.status_code == 200 and r.json()["feedback"]["score"] == 1
    r = gw.http("POST", f"/v1/logs/{second}/feedback", key=calls["other_key"], json={"score": -1})
    assert r.status_code == 403 and r.json()["error"]["code"] == "not_your_log"
    assert gw.http("POST", f"/v1/logs/{second}/feedback", json={"score": -1, "comment": "wrong"}).status_code == 200
    assert gw.http("POST", f"/v1/logs/{first}/feedback", json={"comment": "no score"}).status_code == 400
    run = {"metadata.run": calls["tag"]}
    assert [x["id"] for x in logs(gw, **run, min_score=1)] == [first]
    assert len(logs(gw, **run, feedback="any")) == 2
    assert len(logs(gw, **run, feedback="none")) == 2


def test_import_into_dataset(gw: Any, calls: dict[str, Any]) -> None:
    name = f"from-logs-{calls['tag']}"
    rate(gw, calls["ids"][0], 1)
    rate(gw, calls["ids"][1], -1)  # only the third good call has no feedback
    ch = channel(gw.dataset_addr)
    stub = dataset_pb2_grpc.DatasetServiceStub(ch)
    stub.CreateDataset(dpb.CreateDatasetRequest(name=name))
    gw.spans.clear()
    r = gw.http("POST", "/v1/logs/import", json={"dataset": name, "metadata": {"run": calls["tag"]},
                                                 "feedback": "none", "tags": ["prod"]})
    assert r.status_code == 200, r.text
    result = r.json()
    assert result["imported"] == 1 and result["skipped"] == 1 and result["tags"] == ["from-logs", "prod"]
    examples = stub.ListExamples(dpb.ListExamplesRequest(dataset=name)).examples
    assert len(examples) == 1 and "from-logs" in examples[0].tags
    messages = json.loads(examples[0].json)["messages"]
    assert [m["role"] for m in messages] == ["system", "user", "assistant"]
    assert messages[1]["content"].startswith("question 2")
    # The gRPC call is a client span of the gateway's trace (its context travels in the call's metadata).
    span = next(s for s in gw.spans.get_finished_spans() if s.name.endswith("/UploadExamples"))
    assert span.attributes["rpc.system"] == "grpc"
    # Nothing to import, a dataset that does not exist: clear errors, nothing written.
    r = gw.http("POST", "/v1/logs/import", json={"dataset": name, "metadata": {"run": "nothing-here"}})
    assert r.status_code == 400 and r.json()["error"]["code"] == "nothing_to_import"
    r = gw.http("POST", "/v1/logs/import", json={"dataset": "no-such-dataset", "metadata": {"run": calls["tag"]}})
    assert r.status_code == 404, r.text
    assert len(stub.ListExamples(dpb.ListExamplesRequest(dataset=name)).examples) == 1
    ch.close()


def test_cli(gw: Any, calls: dict[str, Any]) -> None:
    base = ["--url", gw.url, "--api-key", gw.admin_key]
    rate(gw, calls["ids"][0], 1)
    rate(gw, calls["ids"][1], -1)
    r = runner.invoke(cli, ["logs", "list", "--meta", f"run={calls['tag']}", "--status", "ok", "--json", *base])
    assert r.exit_code == 0, r.output
    assert len(json.loads(r.stdout)["data"]) == 3
    r = runner.invoke(cli, ["logs", "list", "--meta", f"run={calls['tag']}", *base])
    assert r.exit_code == 0 and calls["ids"][0] in r.stdout
    third = calls["ids"][2]
    r = runner.invoke(cli, ["logs", "feedback", third, "--score", "5", "--comment", "cli", *base])
    assert r.exit_code == 0 and "score 5" in r.stdout
    r = runner.invoke(cli, ["logs", "show", third, *base])
    assert json.loads(r.stdout)["feedback"]["comment"] == "cli"
    name = f"cli-import-{calls['tag']}"
    ch = channel(gw.dataset_addr)
    dataset_pb2_grpc.DatasetServiceStub(ch).CreateDataset(dpb.CreateDatasetRequest(name=name))
    ch.close()
    r = runner.invoke(cli, ["logs", "import", name, "--meta", f"run={calls['tag']}", "--min-score", "1", *base])
    assert r.exit_code == 0, r.output
    assert "imported 2 examples" in r.stdout
    r = runner.invoke(cli, ["logs", "list", "--url", gw.url, "--api-key", "tny-000000000000-wrong-wrong-wrong-wrong"])
    assert r.exit_code == 1 and "invalid API key" in r.output
