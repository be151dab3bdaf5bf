"""The bundled demo sample (`@sample`): fresh from its generator, every answer valid under the bundled schema."""

from __future__ import annotations

import importlib.resources
import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import jsonschema

ROOT = Path(__file__).resolve().parents[2]


def test_sample_is_fresh() -> None:
    r = subprocess.run([sys.executable, str(ROOT / "scripts/make_sample.py"), "--check"], capture_output=True,
                       text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def test_sample_answers_follow_the_packaged_schema() -> None:
    data = importlib.resources.files("tunery") / "data"
    schema = json.loads((data / "sample_schema.json").read_text())
    validator = jsonschema.Draft202012Validator(schema)
    lines = (data / "sample_chat.jsonl").read_text().splitlines()
    answers = [json.loads(json.loads(line)["messages"][-1]["content"]) for line in lines]
    for i, a in enumerate(answers, 1):
        assert not list(validator.iter_errors(a)), f"line {i}: {a}"
    tickets = [json.loads(line)["messages"][1]["content"] for line in lines]
    assert len(set(tickets)) == len(tickets)
    # Balanced labels: every category x priority pair is there, none dominates.
    pairs = Counter((a["category"], a["priority"]) for a in answers)
    n_pairs = len(schema["properties"]["category"]["enum"]) * len(schema["properties"]["priority"]["enum"])
    assert len(pairs) == n_pairs and max(pairs.values()) - min(pairs.values()) <= 1
