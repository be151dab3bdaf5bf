"""How an evaluation reads in the terminal: its record, the summary (per grader and model: mean with a 95%
interval, pass rate, errors), the pairwise comparison (wins, losses, ties, mean difference, interval, p-value) and
examples side by side. Tables fit 100 columns: long answers fold, ids do not."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

from rich.markup import escape
from rich.table import Table

from tunery.cli import output
from tunery.cli.jobview import duration, seconds, state_name
from tunery.cli.output import when
from tunery.evaluator.v1 import evaluator_pb2 as epb

ANSWER_CHARS = 600
"""Longest answer shown in a side-by-side table (export has them whole)."""


def model_name(m: epb.ModelRef) -> str:
    return m.label or m.model


def models_text(spec: epb.EvaluationSpec) -> str:
    parts = []
    for m in spec.models:
        name = m.model + (f" @ {m.base_url}" if m.base_url else "")
        parts.append(f"{m.label} ({name})" if m.label and m.label != m.model else name)
    return ", ".join(parts)


def data_text(d: epb.EvaluationData, resolved: epb.DatasetVersionRef | None = None) -> str:
    if d.WhichOneof("source") == "job_id":
        text = f"validation part of job {d.job_id}"
        if resolved is not None and resolved.dataset:
            text += f" ({resolved.dataset} v{resolved.version})"
    elif d.dataset_version.dataset:
        text = f"{d.dataset_version.dataset} v{d.dataset_version.version}"
    else:
        text = "-"
    return text + (f", first {d.limit}" if d.limit else "")


def graders_text(spec: epb.EvaluationSpec) -> str:
    out = []
    for g in spec.graders:
        name = g.name if g.name and g.name != g.type else ""
        cfg = json.dumps(output.to_dict(g.config)) if g.config.fields else ""
        out.append(" ".join(p for p in (f"{name}={g.type}" if name else g.type, cfg) if p))
    return "; ".join(out) or "-"


def generation_text(g: epb.GenerationConfig) -> str:
    parts = [f"temperature {g.temperature:g}" if g.HasField("temperature") else "greedy",
             f"max tokens {g.max_tokens or 256}"]
    if g.HasField("top_p"):
        parts.append(f"top_p {g.top_p:g}")
    if g.HasField("seed"):
        parts.append(f"seed {g.seed}")
    if g.stop:
        parts.append("stop " + ", ".join(json.dumps(s) for s in g.stop))
    parts.append(f"concurrency {g.concurrency or 4}")
    return ", ".join(parts)


def progress_text(e: epb.Evaluation) -> str:
    if not e.total_examples:
        return ""
    errored = f" ({e.errored_examples} errored)" if e.errored_examples else ""
    return f"{e.finished_examples}/{e.total_examples}{errored}"


def error_line(err: Any) -> str:
    return f"{err.code}: {err.message}" + (f" (field {err.field})" if err.field else "")


def rows(e: epb.Evaluation) -> list[tuple[str, Any]]:
    s = e.spec
    out: list[tuple[str, Any]] = [
        ("id", e.id), ("state", state_name(e.state)), ("name", s.display_name or "-"), ("models", models_text(s)),
        ("data", data_text(s.data, e.resolved_data)), ("graders", graders_text(s)),
        ("generation", generation_text(s.generation)),
    ]
    if e.total_examples:
        out.append(("progress", progress_text(e)))
    if e.job_id:
        out.append(("job", e.job_id))
    if e.error.code:
        out.append(("error", error_line(e.error)))
    took = ""
    if e.start_time.seconds and e.end_time.seconds:
        took = f" ({duration(seconds(e.end_time) - seconds(e.start_time))})"
    out += [("created", when(e.create_time)), ("started", when(e.start_time) or "-"),
            ("ended", (when(e.end_time) + took) if e.end_time.seconds else "-")]
    return out


def _num(v: float) -> str:
    return f"{v:.3f}" if abs(v) < 1000 else f"{v:.0f}"


def summary_table(summary: epb.EvaluationSummary) -> Table | None:
    if not summary.graders:
        return None
    t = output.table("grader", "model", "mean [95% CI]", "pass rate", "n", "errors", title="summary")
    for col in t.columns[2:]:
        col.justify = "right"
    for g in summary.graders:
        better = "" if g.higher_is_better else " (lower is better)"
        ci = f"{_num(g.mean)} [{_num(g.ci_low)}, {_num(g.ci_high)}]" if g.count else "-"
        rate = f"{g.pass_rate:.1%}" if g.HasField("pass_rate") else "-"
        t.add_row(escape(g.grader) + better, escape(g.model), ci, rate, str(g.count), str(g.errored or ""))
    return t


def pairs_table(summary: epb.EvaluationSummary) -> Table | None:
    if not summary.pairs:
        return None
    t = output.table("grader", "a vs b", "wins/losses/ties", "mean diff [95% CI]", "p-value", title="a against b")
    for col in t.columns[2:]:
        col.justify = "right"
    for p in summary.pairs:
        ci = f"{p.mean_difference:+.3f} [{p.ci_low:+.3f}, {p.ci_high:+.3f}]" if p.count else "-"
        pv = f"{p.p_value:.3g}" + (f" ({p.test})" if p.test else "") if p.count else "-"
        t.add_row(escape(p.grader), f"{escape(p.model_a)} vs {escape(p.model_b)}", f"{p.wins}/{p.losses}/{p.ties}",
                  ci, pv)
    return t


def model_errors_line(summary: epb.EvaluationSummary) -> str:
    errs = {k: v for k, v in summary.model_errors.items() if v}
    return ", ".join(f"{escape(k)}: {v}" for k, v in sorted(errs.items()))


def input_text(input_json: str) -> str:
    """The conversation the models saw: the last user turn, with the turns before it counted."""
    try:
        messages = json.loads(input_json)
    except ValueError:
        return input_json
    if isinstance(messages, dict):
        messages = messages.get("messages", [])
    if not isinstance(messages, list) or not messages:
        return input_json
    last = messages[-1]
    content = last.get("content", "") if isinstance(last, dict) else str(last)
    if isinstance(content, list):
        content = " ".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    before = f" (after {len(messages) - 1} earlier turns)" if len(messages) > 1 else ""
    return f"{content}{before}"


def _cut(text: str) -> str:
    return text if len(text) <= ANSWER_CHARS else text[:ANSWER_CHARS] + f"… (+{len(text) - ANSWER_CHARS} chars)"


def grade_text(g: epb.Grade) -> str:
    if g.error:
        return f"error {g.error}"
    parts = []
    if g.HasField("score"):
        parts.append(_num(g.score))
    if g.HasField("passed"):
        parts.append("pass" if g.passed else "fail")
    if g.label:
        parts.append(g.label)
    text = " ".join(parts) or "-"
    return f"{text} vs {g.against}" if g.against else text


def example_table(r: epb.ExampleResult, models: Sequence[str], graders: Iterable[str]) -> Table:
    """One example: input and reference above, then a column per model (its answer, then a row per grader)."""
    t = output.table("", *models, title=f"example {r.index} {r.example_id}".rstrip())
    t.caption = f"input: {escape(input_text(r.input_json))}\nreference: {escape(r.reference or '-')}"
    t.caption_justify = "left"
    answers = {a.model: a for a in r.answers}
    cells = []
    for m in models:
        a = answers.get(m)
        if a is None:
            cells.append("-")
        elif a.error:
            cells.append(f"error {escape(a.error)}: {escape(a.error_message)}")
        else:
            cells.append(escape(_cut(a.content)))
    t.add_row("answer", *cells)
    for name in graders:
        by_model = {g.model: g for g in r.grades if g.grader == name}
        t.add_row(escape(name), *[escape(grade_text(by_model[m])) if m in by_model else "" for m in models])
    t.columns[0].style = "bold"
    t.columns[0].no_wrap = True
    return t


def grader_names(spec: epb.EvaluationSpec, results: Iterable[epb.ExampleResult] = ()) -> list[str]:
    names: list[str] = []
    for r in results:
        for g in r.grades:
            if g.grader not in names:
                names.append(g.grader)
    return names or [g.name or g.type for g in spec.graders]
