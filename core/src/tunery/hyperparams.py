"""The "auto" hyperparameters, shared by the dataset service (estimates) and the trainer (jobs).

- n_epochs: OpenAI's published heuristic. Start from 3. When n_examples * 3 < 100, use ceil(100 / n_examples),
  at most 25, so tiny datasets are still seen about 100 times; when n_examples * 3 > 25 000, use
  floor(25 000 / n_examples), at least 1, so huge datasets do not cost three full passes.
- batch_size: about 0.2% of the examples (OpenAI's rule), rounded down to a power of two, between 1 and 8: small
  batches keep CPU and single-GPU steps short and give enough optimizer steps on small datasets.
- learning_rate: 2e-4 (the usual LoRA rate) times learning_rate_multiplier (default 1).
"""

from __future__ import annotations

import math

DEFAULT_EPOCHS = 3
MIN_TARGET_EXAMPLES = 100
MAX_TARGET_EXAMPLES = 25_000
MAX_AUTO_EPOCHS = 25
MAX_AUTO_BATCH = 8
BASE_LORA_LR = 2e-4


def auto_epochs(n_examples: int) -> int:
    if n_examples < 1:
        raise ValueError(f"n_examples must be >= 1, got {n_examples}")
    if n_examples * DEFAULT_EPOCHS < MIN_TARGET_EXAMPLES:
        return min(MAX_AUTO_EPOCHS, math.ceil(MIN_TARGET_EXAMPLES / n_examples))
    if n_examples * DEFAULT_EPOCHS > MAX_TARGET_EXAMPLES:
        return max(1, MAX_TARGET_EXAMPLES // n_examples)
    return DEFAULT_EPOCHS


def auto_batch_size(n_examples: int) -> int:
    target = max(1, min(MAX_AUTO_BATCH, int(n_examples * 0.002)))
    return 1 << (target.bit_length() - 1)


def auto_learning_rate(multiplier: float = 1.0) -> float:
    return BASE_LORA_LR * multiplier
