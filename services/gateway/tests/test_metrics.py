"""GET /metrics in Prometheus format, and `tunery monitor` reading it."""

from __future__ import annotations

from typing import Any

from typer.testing import CliRunner

from tunery.cli import monitor
from tunery.cli.main import app as cli


def test_metrics(gw: Any) -> None:
    client = gw.client()
    client.chat.completions.create(model=gw.base, messages=[{"role": "user", "content": "hi"}], max_tokens=4)
    list(client.chat.completions.create(model=gw.base, messages=[{"role": "user", "content": "hi"}], max_tokens=4,
                                        stream=True))
    gw.chat(model="not-a-model-" + "x" * 20)
    r = gw.http("GET", "/metrics", key=None)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    text = r.text
    sample = monitor.parse(text)

    def value(name: str, **labels: str) -> float:
        return sum(v for (n, lab), v in sample.items() if n == name and labels.items() <= dict(lab).items())

    assert value("tunery_gateway_requests_total", endpoint="chat.completions", model=gw.base, status="ok") >= 2
    assert value("tunery_gateway_request_errors_total", model="unknown", code="model_not_found") >= 1
    assert "not-a-model" not in text  # unknown names do not become series
    assert value("tunery_gateway_request_duration_seconds_count", model=gw.base) >= 2
    assert value("tunery_gateway_time_to_first_token_seconds_count", model=gw.base) >= 2
    assert value("tunery_gateway_tokens_total", model=gw.base, type="output") >= 2
    assert value("tunery_gateway_tokens_total", model=gw.base, type="input") >= 10
    assert value("tunery_gateway_output_tokens_per_second_count", model=gw.base) >= 1
    assert value("tunery_gateway_http_responses_total", route="/v1/chat/completions", status="200") >= 2
    assert ("tunery_gateway_engine_running", (("base_model", gw.base),)) in sample
    assert "tunery_gateway_inflight_requests" in text


def test_monitor_once(gw: Any) -> None:
    gw.chat()
    r = CliRunner().invoke(cli, ["monitor", "--once", "--url", gw.url], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    assert gw.base in r.stdout and "ttft" in r.stdout
    r = CliRunner().invoke(cli, ["monitor", "--once", "--url", "http://127.0.0.1:9"])
    assert r.exit_code == 1 and "cannot reach the gateway" in r.output


def test_quantile_and_rates() -> None:
    buckets = [(0.1, 10.0), (0.5, 30.0), (1.0, 40.0), (float("inf"), 40.0)]
    assert monitor.quantile(0.25, buckets) == 0.1
    assert abs(monitor.quantile(0.5, buckets) - 0.3) < 1e-9  # type: ignore[operator]
    assert monitor.quantile(0.5, []) is None
    old = monitor.parse('tunery_gateway_requests_total{endpoint="c",model="m",status="ok"} 10\n')
    new = monitor.parse('tunery_gateway_requests_total{endpoint="c",model="m",status="ok"} 30\n')
    table = monitor.render(new, old, 10.0, "http://x")
    from rich.console import Console

    console = Console(width=200, record=True)
    console.print(table)
    assert "2.00" in console.export_text()  # 20 calls in 10 s
