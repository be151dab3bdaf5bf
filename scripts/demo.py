"""`make demo`: Tunery end to end on this machine, as a new user would drive it.

Starts everything with `tunery up`, builds a dataset from the bundled sample (upload, a rejected file, statistics,
duplicates, a frozen version and a seeded split), fine-tunes the default model (SmolLM2-135M-Instruct, from the
packaged GGUF) on it with LoRA and shows the loss falling, then stops everything. Every step is a CLI command,
printed before it runs.

The sample is a task the base model fails: triage a support ticket into one JSON object {category, priority, reply}
(the base model answers in prose: 0.00 on the held-out tickets). One epoch of LoRA (72 steps of 2 examples, 17k
tokens, about 2 minutes on 2 quiet cores) takes it to about 0.9 (bench/sample_task.py measures both).
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


def main() -> int:
    started = time.monotonic()
    tunery("down", "--data-dir", str(DATA), check=False, show=False)
    fresh_state()
    banner("Start Tunery: an embedded NATS (JetStream), the dataset and trainer services, one trainer worker")
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
            "--batch-size", "2", "--learning-rate", "0.001", "--suffix", "triage", "--watch",
        )
        tunery("jobs", "list")
    finally:
        banner("Stop everything")
        tunery("down", "--data-dir", str(DATA), check=False)
    print(f"\ndemo finished in {time.monotonic() - started:.0f} s; state is in {DATA}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
