"""Base against fine-tuned models on the bundled sample's task, through the gateway, with bootstrap intervals.

The held-out tickets are the validation part of the seeded split of `@sample` (the same `tunery.split` the dataset
service's `split` uses, so `--validation-fraction`/`--seed` here match `tunery datasets split`), or any exported
JSONL (`--file`). Each model answers every ticket at temperature 0 through the official `openai` client; an answer
scores the fraction of {category, priority} equal to the reference once parsed as a JSON object (code fences
stripped), 0 when it does not parse: the rule of the evaluator's `json` grader with match_fields [category,
priority], written out here only until `tunery eval` can run it. Prints, per model: n, the mean score with its
bootstrap 95% interval, parse / schema / category / priority rates, and the paired difference to the first model.

    python bench/sample_task.py --models smollm2-135m-instruct,ft:smollm2-135m-instruct:triage:ftjob-...
        [--base-url http://127.0.0.1:8000/v1] [--api-key KEY] [--validation-fraction 0.2] [--seed 0] [--file F]
"""

from __future__ import annotations

import argparse
import importlib.resources
import json
import os
import re
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import jsonschema
import numpy as np
from openai import OpenAI
from scipy.stats import bootstrap

from tunery.split import split_examples

FIELDS = ("category", "priority")
FENCE = re.compile(r"^\s*```[a-zA-Z]*\s*\n?(.*?)\n?\s*```\s*$", re.DOTALL)


def held_out(a: argparse.Namespace) -> list[dict[str, Any]]:
    if a.file:
        return [json.loads(line) for line in Path(a.file).read_text().splitlines() if line.strip()]
    text = (importlib.resources.files("tunery") / "data" / "sample_chat.jsonl").read_text()
    examples = [json.loads(line) for line in text.splitlines()]
    return [examples[i] for i in split_examples(examples, a.validation_fraction, a.seed)[1]]


def parse(text: str) -> Any:
    m = FENCE.match(text)
    try:
        return json.loads(m.group(1) if m else text)
    except ValueError:
        return None


def grade(answer: str, reference: str, validator: jsonschema.Validator) -> dict[str, float]:
    got, ref = parse(answer), json.loads(reference)
    if not isinstance(got, dict):
        return {"score": 0.0, "parsed": 0.0, "schema": 0.0, "category": 0.0, "priority": 0.0}
    same = {f: float(got.get(f) == ref[f]) for f in FIELDS}
    return {"score": sum(same.values()) / len(FIELDS), "parsed": 1.0, "schema": float(validator.is_valid(got)),
            **same}


def interval(*samples: np.ndarray, stat: Any = np.mean) -> tuple[float, float]:
    ci = bootstrap(samples, stat, paired=len(samples) > 1, confidence_level=0.95, n_resamples=9999,
                   method="percentile", random_state=0).confidence_interval
    return float(ci.low), float(ci.high)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", required=True, help="comma-separated model names the gateway serves; first = base")
    ap.add_argument("--base-url", default="http://127.0.0.1:8000/v1")
    ap.add_argument("--api-key", default=os.environ.get("TUNERY_API_KEY", "unused"))
    ap.add_argument("--validation-fraction", type=float, default=0.2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--file", help="held-out examples as JSONL instead of the bundled sample's split")
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--concurrency", type=int, default=8, help="calls in flight (the gateway batches them)")
    ap.add_argument("--show", type=int, default=3, help="missed answers printed per model")
    a = ap.parse_args()
    examples = held_out(a)
    schema = json.loads((importlib.resources.files("tunery") / "data" / "sample_schema.json").read_text())
    validator = jsonschema.Draft202012Validator(schema)
    client = OpenAI(base_url=a.base_url, api_key=a.api_key, max_retries=2, timeout=600)

    def ask(model: str, ex: dict[str, Any]) -> tuple[str, int]:
        r = client.chat.completions.create(model=model, messages=ex["messages"][:-1], temperature=0,
                                           max_tokens=a.max_tokens)
        return r.choices[0].message.content or "", r.usage.completion_tokens if r.usage else 0

    rows: dict[str, dict[str, np.ndarray]] = {}
    for model in a.models.split(","):
        with ThreadPoolExecutor(a.concurrency) as pool:
            answers = list(pool.map(lambda ex, m=model: ask(m, ex), examples))
        pairs = list(zip(answers, examples, strict=True))
        grades = [grade(text, ex["messages"][-1]["content"], validator) for (text, _), ex in pairs]
        rows[model] = {k: np.array([g[k] for g in grades]) for k in grades[0]}
        rows[model]["tokens"] = np.array([t for _, t in answers], dtype=float)
        misses = [(text, ex) for ((text, _), ex), g in zip(pairs, grades, strict=True) if g["score"] < 1]
        for text, ex in misses[: a.show]:
            print(f"[{model}] missed {ex['messages'][-2]['content']!r}\n  -> {text!r}", flush=True)
    base = next(iter(rows.values()))["score"]
    print(f"\nsample task: n={len(examples)} held-out tickets, temperature 0, max_tokens {a.max_tokens}")
    print(f"{'model':60s} {'score':>6s} {'95% CI':>14s} {'parsed':>7s} {'schema':>7s} {'categ.':>7s} "
          f"{'prior.':>7s} {'tokens':>7s} {'vs first (95% CI)':>24s}")
    for model, r in rows.items():
        lo, hi = interval(r["score"])
        d_lo, d_hi = interval(r["score"], base, stat=lambda x, y, axis=-1: np.mean(x - y, axis=axis))
        diff = f"{r['score'].mean() - base.mean():+.3f} [{d_lo:+.3f}, {d_hi:+.3f}]"
        print(f"{model:60s} {r['score'].mean():6.3f} [{lo:.3f}, {hi:.3f}] {r['parsed'].mean():7.2f} "
              f"{r['schema'].mean():7.2f} {r['category'].mean():7.2f} {r['priority'].mean():7.2f} "
              f"{r['tokens'].mean():7.1f} {diff:>24s}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
