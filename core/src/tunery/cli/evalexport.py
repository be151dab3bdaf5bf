"""`tunery eval export`: every example of an evaluation, as JSONL (one object per example, nested as it is) or CSV
(one row per example; a column per model's answer and error, and per grader and model its score, verdict and
error). Rows come in example order, whatever order they finished in."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Sequence
from typing import Any, TextIO

from tunery.evaluator.v1 import evaluator_pb2 as epb


def _input(input_json: str) -> Any:
    try:
        return json.loads(input_json)
    except ValueError:
        return input_json


def _grade(g: epb.Grade) -> dict[str, Any]:
    out: dict[str, Any] = {
        "score": g.score if g.HasField("score") else None,
        "passed": g.passed if g.HasField("passed") else None,
    }
    for name in ("label", "rationale", "against", "error", "error_message"):
        if getattr(g, name):
            out[name] = getattr(g, name)
    return out


def _grade_key(g: epb.Grade) -> str:
    """A pairwise grade is about the model against another one: both are in its key."""
    return f"{g.model} vs {g.against}" if g.against else g.model


def record(r: epb.ExampleResult) -> dict[str, Any]:
    answers = {a.model: {"content": a.content, "finish_reason": a.finish_reason, "prompt_tokens": a.prompt_tokens,
                         "completion_tokens": a.completion_tokens, "latency_ms": a.latency_ms,
                         "error": a.error, "error_message": a.error_message} for a in r.answers}
    grades: dict[str, dict[str, Any]] = {}
    for g in r.grades:
        grades.setdefault(g.grader, {})[_grade_key(g)] = _grade(g)
    return {"index": r.index, "example_id": r.example_id, "input": _input(r.input_json), "reference": r.reference,
            "answers": answers, "grades": grades}


def write_jsonl(results: Iterable[epb.ExampleResult], out: TextIO) -> int:
    n = 0
    for r in sorted(results, key=lambda r: r.index):
        out.write(json.dumps(record(r), ensure_ascii=False) + "\n")
        n += 1
    return n


def csv_columns(results: Sequence[epb.ExampleResult]) -> tuple[list[str], list[tuple[str, str]]]:
    """Models, and (grader, model key) pairs, in the order they first appear."""
    models: list[str] = []
    grades: list[tuple[str, str]] = []
    for r in results:
        for a in r.answers:
            if a.model not in models:
                models.append(a.model)
        for g in r.grades:
            if (key := (g.grader, _grade_key(g))) not in grades:
                grades.append(key)
    return models, grades


def write_csv(results: Iterable[epb.ExampleResult], out: TextIO) -> int:
    items = sorted(results, key=lambda r: r.index)
    models, grades = csv_columns(items)
    header = ["index", "example_id", "input", "reference"]
    for m in models:
        header += [f"answer:{m}", f"error:{m}"]
    for grader, key in grades:
        header += [f"score:{grader}:{key}", f"passed:{grader}:{key}", f"label:{grader}:{key}",
                   f"error:{grader}:{key}"]
    w = csv.writer(out)
    w.writerow(header)
    for r in items:
        answers = {a.model: a for a in r.answers}
        by_key = {(g.grader, _grade_key(g)): g for g in r.grades}
        row: list[Any] = [r.index, r.example_id, r.input_json, r.reference]
        for m in models:
            a = answers.get(m)
            row += [a.content, a.error] if a is not None else ["", ""]
        for key in grades:
            g = by_key.get(key)
            if g is None:
                row += ["", "", "", ""]
                continue
            row += [g.score if g.HasField("score") else "", ("true" if g.passed else "false")
                    if g.HasField("passed") else "", g.label, g.error]
        w.writerow(row)
    return len(items)
