"""Fixtures for the trainer's backend tests: a tiny random Llama with SmolLM2's real tokenizer and chat template."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "smollm2: trains the real SmolLM2-135M (converted from the packaged GGUF)")


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tunery.testing import build_tiny_llama

    root = tmp_path_factory.mktemp("tiny")
    return build_tiny_llama(root / "model", seed=0, data_dir=root / "data")


@pytest.fixture(scope="session")
def chat_examples() -> list[dict[str, Any]]:
    """24 short conversations whose answers follow a learnable pattern."""
    rng = random.Random(0)
    out = []
    for i in range(24):
        a, b = rng.randint(1, 9), rng.randint(1, 9)
        msgs: list[dict[str, Any]] = [{"role": "system", "content": "Answer with the sum."}]
        if i % 3 == 0:  # some multi-turn, with an untrained (weight 0) first answer
            msgs += [
                {"role": "user", "content": "Hi"},
                {"role": "assistant", "content": "Hello! Ask me a sum.", "weight": 0},
            ]
        msgs += [
            {"role": "user", "content": f"{a}+{b}?"},
            {"role": "assistant", "content": f"The sum is {a + b}."},
        ]
        out.append({"messages": msgs})
    return out
