"""Training throughput of Tunery's backends against TRL's SFTTrainer with its default settings, in one run.

Same model (smollm2-135m-instruct, converted once from the packaged GGUF), same data (a realistic spread of lengths:
multi-turn support conversations of 1-8 exchanges built from bench/make_tess.py, about 100-1,000 tokens), same LoRA
config (r=16, alpha=32, dropout=0.05, all attention and MLP projections), same batch size, learning rate and epochs.
Each run is its own process (so peak RSS is its own). Reported per run:
- tokens/s: tokens of the examples (no padding) per second of training (model loading excluded);
- MFU: tokens/s x 6 x parameters / the matrix-multiply peak measured at the start of this run (fp32 and bf16);
- peak RSS of the process;
- validation loss: assistant-token loss on held-out conversations, computed the same way for every adapter.
Target (issue 3): the faster Tunery backend >= 1.5x the default-TRL tokens/s with the same or lower validation loss.

    python bench/bench_train.py [--train 96] [--valid 24] [--epochs 1] [--runs trl-default,peft,trl]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path
from typing import Any

import make_tess  # bench/ is sys.path[0] for this script and its child processes

ROOT = Path(__file__).resolve().parent.parent
LORA = {
    "r": 16,
    "lora_alpha": 32,
    "lora_dropout": 0.05,
    "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
}


def make_data(n: int, seed: int) -> list[dict[str, Any]]:
    """Conversations of 1-8 support exchanges under one system prompt: a long-tailed spread of lengths."""
    src = make_tess.make(7, 120)  # the Tess conversations the benchmark was always measured on
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        k = rng.choices([1, 2, 3, 4, 6, 8], weights=[35, 25, 15, 12, 8, 5])[0]
        picks = rng.sample(src, k)
        msgs = [picks[0]["messages"][0]]
        for p in picks:
            msgs += p["messages"][1:]
        out.append({"messages": [{k2: v for k2, v in m.items() if k2 != "weight"} for m in msgs]})
    return out


def peak_rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def matmul_peak() -> dict[str, float]:
    """Best of a few square matrix products per dtype, bounded in time (bf16 is slow on CPUs without AVX512-BF16)."""
    import torch

    out = {}
    for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        best = 0.0
        for n in (512, 1024, 2048):
            a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
            t0 = time.perf_counter()
            a @ b
            first = time.perf_counter() - t0
            reps = max(1, min(10, int(1.0 / max(first, 1e-4))))
            t0 = time.perf_counter()
            for _ in range(reps):
                a @ b
            best = max(best, 2 * n**3 * reps / (time.perf_counter() - t0) / 1e9)
            if first > 1.0:
                break
        out[name] = best
    return out


def valid_loss(model_dir: Path, adapter: Path, valid: list[dict[str, Any]]) -> float:
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from tunery.chatformat import IGNORE_INDEX
    from tunery_trainer.data import collate_padding_free, encode_sft

    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    model = PeftModel.from_pretrained(model, str(adapter)).eval()
    enc = encode_sft(tok, valid, 2048).examples
    total, count = 0.0, 0
    with torch.no_grad():
        for i in range(0, len(enc), 4):
            batch = collate_padding_free(enc[i : i + 4])
            labels = batch.pop("labels")
            logits = model(**batch, use_cache=False).logits[:, :-1].float()
            tgt = labels[:, 1:]
            loss = torch.nn.functional.cross_entropy(
                logits.reshape(-1, logits.shape[-1]), tgt.reshape(-1), ignore_index=IGNORE_INDEX, reduction="sum"
            )
            total += float(loss)
            count += int((tgt != IGNORE_INDEX).sum())
    return total / count


def run_trl_default(model_dir: Path, train: list[dict[str, Any]], out: Path, a: argparse.Namespace) -> dict[str, Any]:
    """TRL's SFTTrainer as its docs show it, defaults untouched but for the shared batch size, lr, epochs, seed
    (and use_cpu with bf16=False: TRL's default bf16=True refuses a CPU, and with use_cpu it turns on bf16 autocast,
    which is about 10x slower on CPUs without AVX512-BF16 — an unfair baseline)."""
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    tok = AutoTokenizer.from_pretrained(model_dir)
    args = SFTConfig(
        output_dir=str(out),
        per_device_train_batch_size=a.batch_size,
        num_train_epochs=a.epochs,
        learning_rate=a.lr,
        seed=0,
        save_strategy="no",
        report_to=[],
        logging_steps=1,
        disable_tqdm=True,
        use_cpu=True,
        bf16=False,  # on AVX2-only CPUs, bf16 autocast is ~10x slower; TRL defaults it on
    )
    trainer = SFTTrainer(
        model=str(model_dir),
        args=args,
        train_dataset=Dataset.from_list(train),
        processing_class=tok,
        peft_config=LoraConfig(task_type="CAUSAL_LM", **LORA),
    )
    tokens = sum(len(x) for x in trainer.train_dataset["input_ids"])
    t0 = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - t0
    trainer.save_model(str(out / "adapter"))
    return {"tokens": tokens * a.epochs, "seconds": seconds, "adapter": str(out / "adapter")}


class _Timer:
    def __init__(self) -> None:
        self.tokens = 0
        self.t0 = 0.0
        self.t1 = 0.0
        self.losses: list[float] = []

    def on_start(self, total_steps: int, start_step: int) -> None:
        self.t0 = time.perf_counter()

    def on_step(self, m: Any) -> None:
        self.tokens += m.tokens
        self.losses.append(m.loss)
        self.t1 = time.perf_counter()

    def on_checkpoint(self, c: Any) -> None: ...
    def on_validation(self, v: Any) -> None: ...

    def control(self) -> str:
        return "continue"


def run_tunery(
    name: str, model_dir: Path, train: list[dict[str, Any]], out: Path, a: argparse.Namespace, config: dict[str, Any]
) -> dict[str, Any]:
    from tunery_trainer.backends.base import LoraSpec, TrainingContext, TrainSpec
    from tunery_trainer.backends.registry import get_backend, parse_config

    backend = get_backend(name)
    spec = TrainSpec(
        n_epochs=a.epochs,
        batch_size=a.batch_size,
        learning_rate=a.lr,
        max_seq_length=2048,
        seed=0,
        lora=LoraSpec(rank=16, alpha=32, dropout=0.05),
    )
    timer = _Timer()
    ctx = TrainingContext(
        job_id=f"bench-{name}",
        model_dir=model_dir,
        train_examples=train,
        validation_examples=[],
        spec=spec,
        output_dir=out,
        reporter=timer,
    )  # type: ignore[arg-type]
    result = backend.train(ctx, parse_config(backend, config))
    assert result.adapter_dir is not None
    return {
        "tokens": timer.tokens,
        "seconds": timer.t1 - timer.t0,
        "adapter": str(result.adapter_dir),
        "first_loss": timer.losses[0],
        "last_loss": timer.losses[-1],
    }


def child(a: argparse.Namespace) -> None:
    from tunery.models import resolve
    from tunery.weights import base_model_folder

    model_dir = base_model_folder(resolve("smollm2-135m-instruct"), Path(a.data_dir))
    train = make_data(a.train, seed=1)
    valid = make_data(a.valid, seed=2)
    out = Path(tempfile.mkdtemp(prefix=f"bench-{a.child}-"))
    kind, _, cfg = a.child.partition(":")
    if kind == "trl-default":
        r = run_trl_default(model_dir, train, out, a)
    else:
        r = run_tunery(kind, model_dir, train, out, a, json.loads(cfg) if cfg else {})
    r["peak_rss_mb"] = peak_rss_mb()
    r["valid_loss"] = valid_loss(model_dir, Path(r["adapter"]), valid)
    print("RESULT " + json.dumps(r), flush=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--train", type=int, default=48)
    ap.add_argument("--valid", type=int, default=16)
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--lr", type=float, default=2e-4)
    ap.add_argument("--runs", default="trl-default,peft,trl")
    ap.add_argument("--data-dir", default=str(Path(os.environ.get("TUNERY_DATA_DIR", "~/.tunery")).expanduser()))
    ap.add_argument("--child", default="", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        child(a)
        return 0
    import torch
    from transformers import AutoConfig

    from tunery.models import resolve
    from tunery.weights import base_model_folder

    model_dir = base_model_folder(resolve("smollm2-135m-instruct"), Path(a.data_dir))
    cfg = AutoConfig.from_pretrained(model_dir)
    from transformers import AutoModelForCausalLM

    n_params = sum(p.numel() for p in AutoModelForCausalLM.from_config(cfg).parameters())
    peak = matmul_peak()
    print(
        f"matmul peak: fp32 {peak['fp32']:.0f} GFLOP/s, bf16 {peak['bf16']:.0f} GFLOP/s; model {n_params / 1e6:.0f}M "
        f"parameters; torch {torch.__version__}, {torch.get_num_threads()} threads",
        flush=True,
    )
    results: dict[str, dict[str, Any]] = {}
    for run in a.runs.split(","):
        cmd = [
            sys.executable,
            __file__,
            "--child",
            run,
            "--train",
            str(a.train),
            "--valid",
            str(a.valid),
            "--epochs",
            str(a.epochs),
            "--batch-size",
            str(a.batch_size),
            "--lr",
            str(a.lr),
            "--data-dir",
            a.data_dir,
        ]
        print(f"running {run} ...", flush=True)
        proc = subprocess.run(cmd, capture_output=True, text=True)
        line = next((x for x in proc.stdout.splitlines() if x.startswith("RESULT ")), None)
        if line is None:
            print(proc.stdout[-3000:], proc.stderr[-3000:])
            raise SystemExit(f"run {run} failed")
        results[run] = json.loads(line[7:])
    base = results.get("trl-default")
    print(
        f"\ntraining benchmark  {date.today()}  {os.cpu_count()} cores  {platform.machine()}  "
        f"python {platform.python_version()}  train {a.train} valid {a.valid} epochs {a.epochs} "
        f"batch {a.batch_size} lr {a.lr}"
    )
    print(
        f"{'run':28s} {'tokens/s':>9s} {'vs TRL':>7s} {'MFU fp32':>9s} {'MFU bf16':>9s} {'peak RSS':>9s} "
        f"{'valid loss':>10s}"
    )
    for run, r in results.items():
        tps = r["tokens"] / r["seconds"]
        ratio = tps / (base["tokens"] / base["seconds"]) if base else float("nan")
        flops = tps * 6 * n_params / 1e9
        print(
            f"{run:28s} {tps:9.1f} {ratio:6.2f}x {flops / peak['fp32']:8.1%} {flops / peak['bf16']:8.1%} "
            f"{r['peak_rss_mb']:7.0f}MB {r['valid_loss']:10.4f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
