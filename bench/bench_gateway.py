"""Gateway throughput, overhead and adapter cost, each against a baseline measured in the same run.

Model: SmolLM2-135M-Instruct from the packaged GGUF (converted once into --data-dir). The gateway runs as its own
process (`python -m tunery_gateway`, API keys on, request logs on), driven over HTTP by this process.

1. Tokens/s at concurrency 1, 4 and 16 (greedy, chat prompts, max_tokens fixed) against a plain `model.generate`
   loop over the same prompts, one after the other, with the same torch thread count; baseline prompts and gateway
   waves alternate, so load from other programs on a shared machine hits both alike.
   Targets (issue 4): >= 0.9x at concurrency 1, >= 3x at concurrency 16.
2. The gateway's own latency on a non-generating route (GET /v1/models with key check; GET /health), sequential
   keep-alive requests, against the same client hitting a bare uvicorn app that returns a constant.
   Target: p50 < 2 ms, p99 < 10 ms.
3. Serving through a LoRA adapter (rank 16 on all seven projections) against the base model, alone and at
   concurrency 16, and 16 calls spread over the base and four adapters (one mixed batch).

    python bench/bench_gateway.py [--data-dir DIR] [--threads 1] [--max-tokens 32] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path
from typing import Any

import httpx

from tunery.models import resolve
from tunery.runtime.natsd import free_port

KEY = "tny-0123456789ab-bench-admin-key-not-secret-at-all-000000"
BASE = "smollm2-135m-instruct"
PROMPTS = [
    "Write a short story about a lighthouse keeper who finds a message in a bottle.",
    "Explain how a bicycle stays upright while moving, in simple words.",
    "Give me five tips for learning a new language, with one sentence each.",
    "Describe the water cycle to a ten-year-old.",
    "What are the pros and cons of working from home? Answer in a paragraph.",
    "Write a polite email asking a colleague to review a document by Friday.",
    "Summarize the plot of a heist movie you would like to see.",
    "Why is the sky blue? Explain step by step.",
]
BARE_APP = """
import uvicorn
async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": b'{"object":"list","data":[]}'})
uvicorn.run(app, host="127.0.0.1", port=int(__import__("sys").argv[1]), log_level="warning", access_log=False)
"""


def messages(prompt: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": prompt}]


# ---- baseline: a plain generate loop ------------------------------------------------------------------------------


class Baseline:
    """The same model in this process, generating one prompt after the other with `model.generate`."""

    def __init__(self, folder: str, threads: int) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        torch.set_num_threads(threads)
        self.torch = torch
        self.tok = AutoTokenizer.from_pretrained(folder)
        self.model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
        self.run(PROMPTS[:1], 4)  # warm-up

    def run(self, prompts: list[str], max_tokens: int) -> dict[str, float]:
        tokens, t0 = 0, time.perf_counter()
        with self.torch.inference_mode():
            for p in prompts:
                enc = self.tok(self.tok.apply_chat_template(messages(p), tokenize=False, add_generation_prompt=True),
                               add_special_tokens=False, return_tensors="pt")
                out = self.model.generate(**enc, max_new_tokens=max_tokens, do_sample=False)
                tokens += out.shape[1] - enc["input_ids"].shape[1]
        seconds = time.perf_counter() - t0
        return {"tokens": tokens, "seconds": seconds, "tps": tokens / seconds}


def total(runs: list[dict[str, float]]) -> dict[str, float]:
    tokens, seconds = sum(r["tokens"] for r in runs), sum(r["seconds"] for r in runs)
    ttfts = [r["ttft_p50"] for r in runs if "ttft_p50" in r]
    return {"tokens": tokens, "seconds": seconds, "tps": tokens / seconds,
            "errors": sum(r.get("errors", 0) for r in runs),
            "ttft_p50": statistics.median(ttfts) if ttfts else float("nan")}


# ---- the gateway over HTTP ----------------------------------------------------------------------------------------


async def drive(url: str, models: list[str], prompts: list[str], concurrency: int, n_calls: int,
                max_tokens: int) -> dict[str, float]:
    limits = httpx.Limits(max_connections=concurrency + 4, max_keepalive_connections=concurrency + 4)
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(n_calls):
        queue.put_nowait(i)
    tokens, ttfts, errors = 0, [], 0
    async with httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {KEY}"}, timeout=1200,
                                 limits=limits) as client:

        async def worker() -> None:
            nonlocal tokens, errors
            while not queue.empty():
                i = queue.get_nowait()
                body = {"model": models[i % len(models)], "messages": messages(prompts[i % len(prompts)]),
                        "max_tokens": max_tokens, "temperature": 0, "stream": True,
                        "stream_options": {"include_usage": True}}
                start = time.perf_counter()
                first = None
                async with client.stream("POST", "/v1/chat/completions", json=body) as r:
                    if r.status_code != 200:
                        errors += 1
                        await r.aread()
                        continue
                    async for line in r.aiter_lines():
                        if first is None and '"content":"' in line and '"content":""' not in line:
                            first = time.perf_counter() - start
                        if '"usage":{' in line:
                            tokens += int(line.split('"completion_tokens":')[1].split(",")[0].split("}")[0])
                if first is not None:
                    ttfts.append(first)

        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        seconds = time.perf_counter() - t0
    return {"tokens": tokens, "seconds": seconds, "tps": tokens / seconds, "errors": errors,
            "ttft_p50": statistics.median(ttfts) if ttfts else float("nan")}


def latency(url: str, path: str, n: int, key: str | None) -> dict[str, float]:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    with httpx.Client(base_url=url, headers=headers, timeout=30) as client:
        for _ in range(50):
            client.get(path)
        samples = []
        for _ in range(n):
            t = time.perf_counter()
            r = client.get(path)
            samples.append((time.perf_counter() - t) * 1000)
            assert r.status_code == 200, r.text
    samples.sort()
    return {"p50": samples[len(samples) // 2], "p99": samples[int(len(samples) * 0.99)], "mean": statistics.mean(
        samples)}


def wait_http(url: str, proc: subprocess.Popen[bytes], timeout: float = 600) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args!r} exited with {proc.returncode}")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise TimeoutError(url)


def load_avg() -> str:
    try:
        return Path("/proc/loadavg").read_text().split()[0]
    except OSError:
        return "?"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-dir", type=Path, default=Path(tempfile.gettempdir()) / "tunery-bench-gateway")
    ap.add_argument("--threads", type=int, default=1, help="torch threads, for the baseline and the gateway alike")
    ap.add_argument("--max-tokens", type=int, default=32)
    ap.add_argument("--quick", action="store_true", help="fewer calls (a smoke run, not for RESULTS.md)")
    args = ap.parse_args()

    from tunery.weights import base_model_folder
    from tunery_gateway.testing import make_adapter

    data_dir = args.data_dir.resolve()
    spec = resolve(BASE)
    print(f"preparing {BASE} in {data_dir} ...", flush=True)
    folder = base_model_folder(spec, data_dir)
    adapters = []
    for i in range(4):
        out = data_dir / "adapters" / f"a{i}"
        if not (out / "adapter_model.safetensors").exists():
            make_adapter(Path(folder), out, seed=i, base_model=spec.name, rank=16, std=0.01,
                         target_modules=("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"))
        adapters.append(out)
    prompts = PROMPTS[:4] if args.quick else PROMPTS
    mt = args.max_tokens

    print("loading the baseline model ...", flush=True)
    plain = Baseline(folder, args.threads)

    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TUNERY_", "OTEL_"))}
    env.update(TUNERY_DATA_DIR=str(data_dir), TUNERY_GATEWAY_PORT=str(port), TUNERY_GATEWAY_BASE_MODELS=BASE,
               TUNERY_GATEWAY_ADMIN_API_KEY=KEY, TUNERY_GATEWAY_TORCH_THREADS=str(args.threads),
               TUNERY_GATEWAY_LISTEN_JOB_EVENTS="false", TUNERY_GATEWAY_MAX_BATCH_SIZE="16",
               TUNERY_GATEWAY_LOG_LEVEL="WARNING")
    gw = subprocess.Popen([sys.executable, "-m", "tunery_gateway"], env=env)
    bare_port = free_port()
    bare = subprocess.Popen([sys.executable, "-c", BARE_APP, str(bare_port)])
    url = f"http://127.0.0.1:{port}"
    results: dict[str, Any] = {}
    try:
        wait_http(f"{url}/health", gw)
        wait_http(f"http://127.0.0.1:{bare_port}/", bare)
        ids = []
        for i, path in enumerate(adapters):
            model_id = f"ft:{BASE}:bench{i}:ftjob-bench{i}"
            r = httpx.post(f"{url}/v1/models", headers={"Authorization": f"Bearer {KEY}"},
                           json={"id": model_id, "adapter_path": str(path)}, timeout=120)
            assert r.status_code == 201, r.text
            ids.append(model_id)
        asyncio.run(drive(url, [BASE], prompts, 2, 4, 4))  # warm-up; no adapter is loaded yet

        # Other work on a shared machine changes speed by 2x within minutes: baseline and gateway alternate in small
        # pieces (one baseline prompt, then one gateway wave of `c` calls), and each ratio is over the alternation.
        waves = {1: 4 if args.quick else 8, 4: 2 if args.quick else 4, 16: 2 if args.quick else 3}
        for c in (1, 4, 16):
            print(f"concurrency {c}: {waves[c]} x (baseline 1 prompt, gateway {c} calls) ...", flush=True)
            base_runs, gw_runs = [], []
            for w in range(waves[c]):
                base_runs.append(plain.run([prompts[w % len(prompts)]], mt))
                wave = [prompts[(w * c + i) % len(prompts)] for i in range(c)]
                gw_runs.append(asyncio.run(drive(url, [BASE], wave, c, c, mt)))
            results[f"c{c}"], results[f"b{c}"] = total(gw_runs), total(base_runs)
            r, b = results[f"c{c}"], results[f"b{c}"]
            print(f"  gateway {r['tps']:.2f} tokens/s, baseline {b['tps']:.2f} tokens/s: {r['tps'] / b['tps']:.2f}x "
                  f"(ttft p50 {r['ttft_p50']:.2f} s, errors {r['errors']})")

        print("latency of non-generating routes ...", flush=True)
        n_lat = 300 if args.quick else 2000
        results["models"] = latency(url, "/v1/models", n_lat, KEY)
        results["health"] = latency(url, "/health", n_lat, None)
        results["bare"] = latency(f"http://127.0.0.1:{bare_port}", "/", n_lat, None)
        for k in ("models", "health", "bare"):
            print(f"  {k}: p50 {results[k]['p50']:.2f} ms, p99 {results[k]['p99']:.2f} ms")

        print("adapter cost ...", flush=True)
        asyncio.run(drive(url, ids, prompts, 4, 4, 2))  # loads the four adapters
        rounds, few = (1 if args.quick else 2), prompts[:4]
        runs: dict[str, list[dict[str, float]]] = {k: [] for k in ("solo_base", "solo_adapter", "c16_base",
                                                                   "c16_adapter", "c16_mixed")}
        for _ in range(rounds):  # alternating, for the same reason as above
            for p in few:
                runs["solo_base"].append(asyncio.run(drive(url, [BASE], [p], 1, 1, mt)))
                runs["solo_adapter"].append(asyncio.run(drive(url, [ids[0]], [p], 1, 1, mt)))
            runs["c16_base"].append(asyncio.run(drive(url, [BASE], prompts, 16, 16, mt)))
            runs["c16_adapter"].append(asyncio.run(drive(url, [ids[0]], prompts, 16, 16, mt)))
            runs["c16_mixed"].append(asyncio.run(drive(url, [BASE, *ids], prompts, 16, 16, mt)))
        for k, v in runs.items():
            results[k] = total(v)
            print(f"  {k}: {results[k]['tps']:.2f} tokens/s")
    finally:
        gw.terminate()
        bare.terminate()
        gw.wait(60)
        bare.wait(10)

    machine = f"{os.cpu_count()}-core {platform.machine()}, Python {platform.python_version()}, load {load_avg()}"
    print("\n| date | machine | torch threads | max_tokens | c=1 gateway / baseline tok/s | c=4 | c=16 | "
          "/v1/models p50 / p99 ms | /health p50 / p99 ms | bare uvicorn p50 / p99 ms |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    cells = [f"{results[f'c{c}']['tps']:.1f} / {results[f'b{c}']['tps']:.1f} "
             f"({results[f'c{c}']['tps'] / results[f'b{c}']['tps']:.2f}x)" for c in (1, 4, 16)]
    lat = [f"{results[k]['p50']:.2f} / {results[k]['p99']:.2f}" for k in ("models", "health", "bare")]
    print(f"| {date.today()} | {machine} | {args.threads} | {mt} | {' | '.join(cells)} | {' | '.join(lat)} |")
    sb, sa = results["solo_base"]["tps"], results["solo_adapter"]["tps"]
    cb, ca, cm = results["c16_base"]["tps"], results["c16_adapter"]["tps"], results["c16_mixed"]["tps"]
    print(f"\nadapter cost: alone {sa:.2f} vs {sb:.2f} tok/s ({sa / sb:.2f}x of base); at concurrency 16 "
          f"{ca:.1f} vs {cb:.1f} tok/s ({ca / cb:.2f}x); 16 calls over base + 4 adapters in one batch {cm:.1f} tok/s "
          f"({cm / cb:.2f}x)")
    ok1 = results["c1"]["tps"] / results["b1"]["tps"] >= 0.9
    ok16 = results["c16"]["tps"] / results["b16"]["tps"] >= 3
    ok_lat = results["models"]["p50"] < 2 and results["models"]["p99"] < 10
    print(f"targets: c=1 >= 0.9x {'PASS' if ok1 else 'FAIL'}; c=16 >= 3x {'PASS' if ok16 else 'FAIL'}; "
          f"non-generating route p50 < 2 ms and p99 < 10 ms {'PASS' if ok_lat else 'FAIL'}")


if __name__ == "__main__":
    main()
