"""`tunery logs ...`: the gateway's request logs through its API (admin key): list and filter, show one, give
feedback, and import the good ones into a dataset — the way from production back to training."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.markup import escape

from tunery.cli import output
from tunery.cli.gatewayapi import KeyOpt, UrlOpt, call
from tunery.cli.output import console, info, print_json, say

app = typer.Typer(help="Request logs of the gateway: list, show, feedback, import into a dataset.",
                  no_args_is_help=True)

JsonOpt = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON instead of a table.")]
ModelOpt = Annotated[str, typer.Option("--model", "-m", help="Only calls to this model.")]
SinceOpt = Annotated[str, typer.Option(help="From this time on (ISO 8601, or Unix seconds).")]
UntilOpt = Annotated[str, typer.Option(help="Before this time (ISO 8601, or Unix seconds).")]
FeedbackOpt = Annotated[str, typer.Option(help="'any': only rated calls; 'none': only unrated ones.")]
MinScoreOpt = Annotated[float | None, typer.Option(help="Only calls rated at least this.")]
MaxScoreOpt = Annotated[float | None, typer.Option(help="Only calls rated at most this.")]
MetaOpt = Annotated[list[str] | None, typer.Option("--meta", help="KEY=VALUE of the call's metadata (repeatable).")]
StatusOpt = Annotated[str, typer.Option(help="ok, error or cancelled.")]
KeyIdOpt = Annotated[str, typer.Option("--key-id", help="Only calls made with this API key id.")]
UserOpt = Annotated[str, typer.Option("--user", help="Only calls with this `user`.")]


def _filters(model: str, since: str, until: str, feedback: str, min_score: float | None, max_score: float | None,
             meta: list[str] | None, status: str = "", key_id: str = "", user: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {"model": model, "since": since, "until": until, "feedback": feedback,
                           "min_score": min_score, "max_score": max_score, "status": status, "key_id": key_id,
                           "user": user}
    for pair in meta or []:
        k, sep, v = pair.partition("=")
        if not sep or not k:
            raise typer.BadParameter(f"{pair!r} is not KEY=VALUE", param_hint="--meta")
        out[f"metadata.{k}"] = v
    return {k: v for k, v in out.items() if v not in (None, "")}


def _preview(log: dict[str, Any], width: int = 60) -> str:
    req = log.get("request")
    if isinstance(req, list) and req:
        text = str(req[-1].get("content") or "")
    elif isinstance(req, str):
        text = req
    else:
        return "(text not stored)"
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


@app.command("list")
def list_logs(model: ModelOpt = "", since: SinceOpt = "", until: UntilOpt = "", feedback: FeedbackOpt = "",
              min_score: MinScoreOpt = None, max_score: MaxScoreOpt = None, meta: MetaOpt = None,
              status: StatusOpt = "", key_id: KeyIdOpt = "", user: UserOpt = "",
              limit: Annotated[int, typer.Option(min=1, max=1000, help="At most this many (newest first).")] = 50,
              url: UrlOpt = None, api_key: KeyOpt = None, as_json: JsonOpt = False) -> None:
    """Newest first, filtered by model, time, feedback, metadata, status, key or user."""
    params = _filters(model, since, until, feedback, min_score, max_score, meta, status, key_id, user)
    with output.handled():
        page = call(url, "GET", "/v1/logs", api_key, params=params | {"limit": limit})
    if as_json:
        print_json(page)
        return
    t = output.table("id", "time", "model", "status", "tokens in/out", "latency ms", "ttft ms", "score", "last message")
    t.columns[0].no_wrap = t.columns[1].no_wrap = True  # ids are copied into `logs show`: never fold them
    from datetime import datetime

    for log in page["data"]:
        when = datetime.fromtimestamp(log["created_at"]).strftime("%Y-%m-%d %H:%M:%S")
        fb = log.get("feedback")
        t.add_row(log["id"], when, escape(log["model"]), log["status"],
                  f"{log['usage']['prompt_tokens']}/{log['usage']['completion_tokens']}", f"{log['latency_ms']:.0f}",
                  f"{log['ttft_ms']:.0f}" if log["ttft_ms"] is not None else "",
                  f"{fb['score']:g}" if fb else "", escape(_preview(log)))
    console.print(t)
    if page.get("has_more"):
        info("more logs match; narrow the filters or raise --limit (max 1000)")


@app.command()
def show(log_id: Annotated[str, typer.Argument(help="Request log id (chatcmpl-... or cmpl-...).")],
         url: UrlOpt = None, api_key: KeyOpt = None) -> None:
    """One request log in full, as JSON."""
    with output.handled():
        print_json(call(url, "GET", f"/v1/logs/{log_id}", api_key))


@app.command()
def feedback(log_id: Annotated[str, typer.Argument(help="Request log id.")],
             score: Annotated[float, typer.Option(help="Your scale, e.g. 1 / -1 for good / bad, or 1-5.")],
             comment: Annotated[str, typer.Option(help="Why.")] = "",
             url: UrlOpt = None, api_key: KeyOpt = None) -> None:
    """Rate a call, so it can be chosen (or left out) when importing logs into a dataset."""
    with output.handled():
        log = call(url, "POST", f"/v1/logs/{log_id}/feedback", api_key, body={"score": score, "comment": comment})
    say(f"{log['id']}: score {log['feedback']['score']:g}")


@app.command("import")
def import_logs(dataset: Annotated[str, typer.Argument(help="Dataset name or id (it must exist).")],
                model: ModelOpt = "", since: SinceOpt = "", until: UntilOpt = "", feedback: FeedbackOpt = "",
                min_score: MinScoreOpt = None, max_score: MaxScoreOpt = None, meta: MetaOpt = None,
                tag: Annotated[list[str] | None, typer.Option(
                    "--tag", help="Tag for the new examples (repeatable; 'from-logs' always).")] = None,
                limit: Annotated[int, typer.Option(min=1, help="Look at most at this many logs.")] = 1000,
                url: UrlOpt = None, api_key: KeyOpt = None, as_json: JsonOpt = False) -> None:
    """Add matching successful chat calls to a dataset's draft as examples (messages + the model's answer)."""
    body: dict[str, Any] = {"dataset": dataset, "tags": tag or [], "limit": limit, "metadata": {}}
    for k, v in _filters(model, since, until, feedback, min_score, max_score, meta).items():
        if k.startswith("metadata."):
            body["metadata"][k.removeprefix("metadata.")] = v
        else:
            body[k] = v
    with output.handled():
        result = call(url, "POST", "/v1/logs/import", api_key, body=body, timeout=600)
    if as_json:
        print_json(result)
        return
    say(f"imported {result['imported']} examples into {escape(result['dataset'])} (tags {', '.join(result['tags'])});"
        f" {result['skipped']} of {result['matched']} matching logs could not become examples")
