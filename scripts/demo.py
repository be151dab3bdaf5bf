"""`make demo`: Tunery end to end on this machine, as a new user would drive it.

Starts everything with `tunery up`, builds a dataset from the bundled sample (upload, a rejected file, statistics,
duplicates, a frozen version and a seeded split), fine-tunes the default model (SmolLM2-135M-Instruct, from the
packaged GGUF) on it with LoRA and shows the loss falling, evaluates the fine-tuned model against its base on the
held-out tickets (the job asks for it; the evaluator generates through the gateway and grades with the `json`
grader) and prints the table, then stops everything. Every step is a CLI command, printed before it runs.

The sample is a task the base model fails: triage a support ticket into one JSON object {category, priority, reply}
(the base model answers in prose: 0.00 on the held-out tickets). One epoch of LoRA (72 steps of 2 examples, 17k
tokens, about 2 minutes on 2 quiet cores) takes it to about 0.9 (bench/RESULTS.md).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(os.environ.get("TUNERY_DEMO_DIR", ROOT / ".tunery-demo"))
TUNERY = [sys.executable, "-m", "tunery.cli.main"]
EPOCHS = os.environ.get("TUNERY_DEMO_EPOCHS", "1")  # bench/RESULTS.md: 1 epoch 0.92, 2 (batch 4) 0.99
SCHEMA = ROOT / "core" / "src" / "tunery" / "data" / "sample_schema.json"
# The task grader: the answer must be one JSON object following the sample's schema; its score is the share of
# category and priority equal to the reference's (a prose answer scores 0).
TRIAGE = {"match_fields": ["category", "priority"], "schema": json.loads(SCHEMA.read_text())}


def banner(text: str) -> None:
    print(f"\n\033[1m== {text}\033[0m", flush=True)


def tunery(*args: str, check: bool = True, show: bool = True) -> subprocess.CompletedProcess[str]:
    print(f"$ tunery {' '.join(args)}", flush=True)
    env = {**os.environ, "TUNERY_DATA_DIR": str(DATA)}
    env.pop("TUNERY_NATS_URL", None)
    r = subprocess.run([*TUNERY, *args], env=env, text=True, capture_output=not show)
    if check and r.returncode != 0:
        raise SystemExit(f"demo step failed (exit {r.returncode}): tunery {' '.join(args)}")
    return r


def fresh_state() -> None:
    """Start clean, but keep converted models so a second demo does not convert the GGUF again."""
    if not DATA.exists():
        return
    for child in DATA.iterdir():
        if child.name != "models":
            shutil.rmtree(child) if child.is_dir() else child.unlink()


def verdict(evaluation_id: str) -> None:
    """Say in one line whether the fine-tuned model beat its base on the task grader, outside the 95% interval."""
    ev = json.loads(tunery("eval", "show", evaluation_id, "--json", show=False).stdout)
    if ev.get("state") != "JOB_STATE_SUCCEEDED":
        raise SystemExit(f"demo step failed: evaluation {evaluation_id} ended {ev.get('state')}: {ev.get('error')}")
    pair = next((p for p in ev["summary"]["pairs"] if p["grader"] == "triage"), None)
    if pair is None:
        raise SystemExit(f"demo step failed: evaluation {evaluation_id} has no base/fine-tuned pair for triage")
    sign = 1 if pair["model_a"] == "fine-tuned" else -1  # mean_difference is a - b, oriented so that > 0: a better
    diff, low, high = (sign * pair[k] for k in ("mean_difference", "ci_low", "ci_high"))
    low, high = min(low, high), max(low, high)
    means = {g["model"]: g["mean"] for g in ev["summary"]["graders"] if g["grader"] == "triage"}
    print(f"\ntriage score: base {means.get('base', 0):.2f}, fine-tuned {means.get('fine-tuned', 0):.2f}; "
          f"fine-tuned - base = {diff:+.2f} [95% CI {low:+.2f}, {high:+.2f}], p = {pair['p_value']:.2g} "
          f"({pair['test']}, n = {pair['count']})", flush=True)
    if low <= 0:
        raise SystemExit("demo step failed: the fine-tuned model did not beat its base outside the 95% interval")
    print("the fine-tuned model wins on the task grader, by a margin outside the bootstrap 95% interval", flush=True)


def main() -> int:
    started = time.monotonic()
    tunery("down", "--data-dir", str(DATA), check=False, show=False)
    fresh_state()
    banner("Start Tunery: embedded NATS (JetStream), dataset, trainer, evaluator and gateway services, a worker")
    tunery("up", "--detach", "--data-dir", str(DATA))
    try:
        tunery("status", "--data-dir", str(DATA))

        banner("A dataset from the bundled sample: 180 support tickets, each triaged as one JSON object (chat format)")
        tunery("datasets", "create", "support-demo", "--description", "support tickets -> {category, priority, reply}")
        tunery("datasets", "upload", "support-demo", "@sample")

        banner("A broken file is rejected whole, with every problem and its line; nothing is stored")
        with tempfile.TemporaryDirectory() as tmp:
            bad = Path(tmp) / "broken.jsonl"
            good = {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}
            bad.write_text(
                "\n".join([
                    json.dumps(good),
                    json.dumps({"messages": [{"role": "robot", "content": "beep"}]}),
                    json.dumps({"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "weight": 2,
                                                                                  "content": "a"}]}),
                    "[1, 2, 3]",
                    '{"messages": [{"role": "user", "content": "cut off',
                ])
            )
            tunery("datasets", "upload", "support-demo", str(bad), check=False)
        tunery("datasets", "show", "support-demo")

        banner("Curate: statistics with the model's own tokenizer and chat template, then duplicates")
        tunery("datasets", "stats", "support-demo", "--epochs", EPOCHS)
        tunery("datasets", "dedup", "support-demo")

        banner("Freeze an immutable version and split it (seeded) into train and validation versions")
        tunery("datasets", "freeze", "support-demo", "-m", "bundled sample")
        tunery("datasets", "split", "support-demo", "1", "--validation-fraction", "0.2", "--seed", "0")
        tunery("datasets", "versions", "support-demo")

        banner("Fine-tune smollm2-135m-instruct with LoRA on version 2 (144 tickets), validating on version 3 (36)")
        tunery("jobs", "backends")
        tunery(
            "jobs", "create", "--dataset", "support-demo", "--version", "2",
            "--validation-dataset", "support-demo", "--validation-version", "3",
            "--model", "smollm2-135m-instruct", "--backend", "peft", "--epochs", EPOCHS,
            "--batch-size", "2", "--learning-rate", "0.001", "--suffix", "triage",
            "--eval-grader", f"triage=json:{json.dumps(TRIAGE)}", "--eval-grader", "latency",
            "--eval-max-tokens", "64", "--watch",
        )
        tunery("jobs", "list")

        banner("Base against fine-tuned on the 36 held-out tickets (version 3), answers side by side")
        job = json.loads(tunery("jobs", "list", "--json", show=False).stdout)["jobs"][0]
        found = json.loads(tunery("eval", "list", "--job", job["id"], "--json", show=False).stdout)["evaluations"]
        if not found:
            raise SystemExit(f"demo step failed: job {job['id']} has no evaluation")
        evaluation_id = found[0]["id"]
        tunery("eval", "show", evaluation_id, "--examples", "3")
        verdict(evaluation_id)
    finally:
        banner("Stop everything")
        tunery("down", "--data-dir", str(DATA), check=False)
    print(f"\ndemo finished in {time.monotonic() - started:.0f} s; state is in {DATA}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
