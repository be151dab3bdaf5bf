"""`tunery monitor`: a live summary of the gateway from its Prometheus metrics (GET /metrics).

Rates and latency quantiles are computed over the last interval (the difference of two scrapes), the way a
dashboard would; `--once` prints one summary over the gateway's whole life instead.
"""

from __future__ import annotations

import math
import re
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Annotated

import typer
from rich.live import Live
from rich.markup import escape
from rich.table import Table

from tunery.cli import output
from tunery.cli.gatewayapi import KeyOpt, UrlOpt, base_url, call
from tunery.cli.output import console

app = typer.Typer()

_LINE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')

Sample = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def parse(text: str) -> Sample:
    """Prometheus text format into {(name, sorted labels): value}."""
    out: Sample = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = _LINE.match(line)
        if not m:
            continue
        labels = tuple(sorted(_LABEL.findall(m.group(2) or "")))
        try:
            out[(m.group(1), labels)] = float(m.group(3))
        except ValueError:
            continue
    return out


def quantile(q: float, buckets: list[tuple[float, float]]) -> float | None:
    """histogram_quantile over cumulative (upper bound, count) pairs, interpolating inside the bucket."""
    buckets = sorted(buckets)
    if not buckets or buckets[-1][1] <= 0:
        return None
    rank = q * buckets[-1][1]
    prev_bound, prev_count = 0.0, 0.0
    for bound, count in buckets:
        if count >= rank:
            if math.isinf(bound):
                return prev_bound
            if count == prev_count:
                return bound
            return prev_bound + (bound - prev_bound) * (rank - prev_count) / (count - prev_count)
        prev_bound, prev_count = bound, count
    return prev_bound


@dataclass
class ModelStats:
    ok: float = 0
    errors: float = 0
    cancelled: float = 0
    input_tokens: float = 0
    output_tokens: float = 0
    latency: dict[float, float] = field(default_factory=dict)
    ttft: dict[float, float] = field(default_factory=dict)


def summarize(s: Sample) -> tuple[dict[str, ModelStats], dict[str, float]]:
    models: dict[str, ModelStats] = defaultdict(ModelStats)
    gauges: dict[str, float] = defaultdict(float)
    for (name, labels), value in s.items():
        lab = dict(labels)
        model = lab.get("model", "")
        if name == "tunery_gateway_requests_total":
            st = lab.get("status", "")
            m = models[model]
            if st == "ok":
                m.ok += value
            elif st == "cancelled":
                m.cancelled += value
            else:
                m.errors += value
        elif name == "tunery_gateway_tokens_total":
            if lab.get("type") == "input":
                models[model].input_tokens += value
            else:
                models[model].output_tokens += value
        elif name == "tunery_gateway_request_duration_seconds_bucket":
            b = float(lab["le"])
            models[model].latency[b] = models[model].latency.get(b, 0) + value
        elif name == "tunery_gateway_time_to_first_token_seconds_bucket":
            b = float(lab["le"])
            models[model].ttft[b] = models[model].ttft.get(b, 0) + value
        elif name == "tunery_gateway_inflight_requests":
            gauges["inflight"] += value
        elif name.startswith("tunery_gateway_engine_"):
            gauges[name.removeprefix("tunery_gateway_engine_")] += value
    return dict(models), dict(gauges)


def _delta(new: dict[float, float], old: dict[float, float]) -> list[tuple[float, float]]:
    return [(b, v - old.get(b, 0)) for b, v in new.items()]


def _ms(v: float | None) -> str:
    return f"{v * 1000:.0f}" if v is not None else "-"


def render(new: Sample, old: Sample | None, seconds: float, where: str) -> Table:
    models, gauges = summarize(new)
    before, _ = summarize(old) if old is not None else ({}, {})
    window = f"last {seconds:.0f} s" if old is not None else "since start"
    title = (f"gateway {where} ({window}); in flight {gauges.get('inflight', 0):.0f}, decoding "
             f"{gauges.get('running', 0):.0f}, queued {gauges.get('queued', 0):.0f}, adapters loaded "
             f"{gauges.get('adapters_loaded', 0):.0f}")
    t = output.table("model", "requests", "errors", "req/s", "p50 ms", "p95 ms", "ttft p50 ms", "in tok/s",
                     "out tok/s", title=title)
    for name in sorted(models):
        m, o = models[name], before.get(name, ModelStats())
        reqs = (m.ok + m.errors + m.cancelled) - (o.ok + o.errors + o.cancelled)
        span = seconds if old is not None else 0
        rate = f"{reqs / span:.2f}" if span else "-"
        t.add_row(escape(name), f"{reqs:.0f}", f"{m.errors - o.errors:.0f}", rate,
                  _ms(quantile(0.5, _delta(m.latency, o.latency))), _ms(quantile(0.95, _delta(m.latency, o.latency))),
                  _ms(quantile(0.5, _delta(m.ttft, o.ttft))),
                  f"{(m.input_tokens - o.input_tokens) / span:.1f}" if span else f"{m.input_tokens:.0f} total",
                  f"{(m.output_tokens - o.output_tokens) / span:.1f}" if span else f"{m.output_tokens:.0f} total")
    if not models:
        t.caption = "no inference calls yet"
    return t


@app.command()
def monitor(url: UrlOpt = None, api_key: KeyOpt = None,
            interval: Annotated[float, typer.Option(min=0.2, help="Seconds between refreshes.")] = 2.0,
            once: Annotated[bool, typer.Option("--once", help="Print one summary (since start) and exit.")] = False,
            ) -> None:
    """Live summary of the gateway: requests, errors, latency and time to first token, tokens per second, by model."""
    where = base_url(url)
    with output.handled():
        first = parse(call(url, "GET", "/metrics", api_key, raw=True))
    if once:
        console.print(render(first, None, 0, where))
        return
    prev, prev_t = first, time.monotonic()
    with Live(render(first, None, 0, where), console=console, refresh_per_second=4) as live:
        try:
            while True:
                time.sleep(interval)
                with output.handled():
                    now = parse(call(url, "GET", "/metrics", api_key, raw=True))
                t = time.monotonic()
                live.update(render(now, prev, t - prev_t, where))
                prev, prev_t = now, t
        except KeyboardInterrupt:
            pass
