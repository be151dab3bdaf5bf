"""Generate realistic chat fine-tuning JSONL for benchmarks.

Benchmarks of the dataset pipeline only mean something on data shaped like real uploads,
so the output mixes: a long-tailed number of turns (1-8, mostly short conversations),
message lengths from 20 to 4000 characters (log-normal; assistant replies longer than
user turns), optional system prompts, tool-calling conversations with ``tools``
definitions, occasional ``weight: 0`` on earlier assistant turns, and multilingual
Unicode text (accents, Cyrillic, CJK, emoji).  Output is deterministic for a seed.

Usage: ``python bench/gen_chat_jsonl.py OUT.jsonl --mb 100 [--seed 0]``
"""

from __future__ import annotations

import argparse
import json
import math
import random
from pathlib import Path
from typing import Any

_TEXT = (
    "the model learns from examples and every answer should be clear concise and "
    "correct please explain how this function works in detail with code data training "
    "loss gradient server request response latency database query index cache memory "
    "token batch schedule we you they it is are was were can could should would will "
    "might must not never always "
    "résumé café naïve façade jalapeño über straße crème brûlée señor déjà vu "
    "привет мир данные модель обучение ответ вопрос пример "
    "你好 世界 数据 模型 训练 问题 回答 例子 "
    "こんにちは 学習 データ モデル "
    "안녕하세요 데이터 "
    "مرحبا بيانات "
    "🙂 🚀 ✅ 🔥 📈 → ≤ ≥ ± ÷ ∑ ∞ "
    "1 2 3 42 100 2024 3.14 0.001 "
    "`x` `y` (see above) [note] {key: value} \"quoted\" 'single' a/b c-d e_f"
)
_WORDS = _TEXT.split()
# Real text is mostly plain English: ASCII words are weighted up so Unicode is present
# but not dominant.
_WEIGHTS = [8 if w.isascii() else 1 for w in _WORDS]

_TOOLS: list[dict[str, Any]] = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Get the current weather for a city.",
            "parameters": {
                "type": "object",
                "properties": {
                    "city": {"type": "string"},
                    "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
                },
                "required": ["city"],
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": "search_docs",
            "description": "Full-text search over the product documentation.",
            "parameters": {
                "type": "object",
                "properties": {
                    "query": {"type": "string"},
                    "limit": {"type": "integer"},
                },
                "required": ["query"],
            },
        },
    },
]
_CITIES = [
    "Paris",
    "Zürich",
    "Москва",
    "東京",
    "São Paulo",
    "Reykjavík",
    "Kraków",
    "Seoul",
]
_TURN_WEIGHTS = [40, 22, 13, 9, 6, 4, 3, 3]  # 1..8 turns, long-tailed


def _text(rng: random.Random, mu: float) -> str:
    """Random prose of log-normal length clipped to 20..4000 characters."""
    target = min(4000, max(20, int(math.exp(rng.gauss(mu, 1.0)))))
    words = rng.choices(_WORDS, _WEIGHTS, k=target // 5 + 2)
    text = " ".join(words)
    if len(text) < target:
        text = (text + " ") * (target // (len(text) + 1) + 1)
    return text[:target].strip() or "ok"


def _example(rng: random.Random, idx: int) -> dict[str, Any]:
    messages: list[dict[str, Any]] = []
    if rng.random() < 0.4:
        messages.append({"role": "system", "content": _text(rng, 4.5)})
    turns = rng.choices(range(1, 9), _TURN_WEIGHTS)[0]
    use_tools = rng.random() < 0.15
    tool_turn = rng.randrange(turns) if use_tools else -1
    for t in range(turns):
        messages.append({"role": "user", "content": _text(rng, 5.3)})
        if t == tool_turn:
            call_id = f"call_{idx}_{t}"
            if rng.random() < 0.5:
                name = "get_weather"
                args: dict[str, Any] = {"city": rng.choice(_CITIES), "unit": "celsius"}
                result: dict[str, Any] = {
                    "temp_c": rng.randint(-20, 40),
                    "sky": rng.choice(["clear", "rain"]),
                }
            else:
                name = "search_docs"
                args = {"query": _text(rng, 3.2), "limit": rng.randint(1, 10)}
                result = {"hits": [_text(rng, 4.0) for _ in range(rng.randint(1, 3))]}
            messages.append(
                {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {
                            "id": call_id,
                            "type": "function",
                            "function": {
                                "name": name,
                                "arguments": json.dumps(args, ensure_ascii=False),
                            },
                        }
                    ],
                }
            )
            messages.append(
                {
                    "role": "tool",
                    "tool_call_id": call_id,
                    "content": json.dumps(result, ensure_ascii=False),
                }
            )
        reply: dict[str, Any] = {"role": "assistant", "content": _text(rng, 6.0)}
        if t < turns - 1 and rng.random() < 0.1:
            reply["weight"] = 0
        messages.append(reply)
    example: dict[str, Any] = {"messages": messages}
    if use_tools:
        example["tools"] = _TOOLS
    return example


def generate(path: Path, target_bytes: int, seed: int = 0) -> int:
    """Write examples to ``path`` until it holds ``target_bytes``; returns lines."""
    rng = random.Random(seed)
    dumps = json.JSONEncoder(ensure_ascii=False, separators=(", ", ": ")).encode
    written = 0
    lines = 0
    with open(path, "wb") as f:
        while written < target_bytes:
            data = (dumps(_example(rng, lines)) + "\n").encode()
            f.write(data)
            written += len(data)
            lines += 1
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="output .jsonl path")
    parser.add_argument("--mb", type=float, default=100.0, help="target size in MB (10**6 bytes)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    n = generate(args.out, int(args.mb * 1_000_000), args.seed)
    print(f"wrote {n} lines to {args.out}")


if __name__ == "__main__":
    main()
