"""Token statistics of a dataset, for validation reports and cost estimates, and the automatic epoch count."""

from __future__ import annotations

from array import array
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from tunery.hyperparams import MAX_TARGET_EXAMPLES, MIN_TARGET_EXAMPLES, auto_epochs

__all__ = ["MAX_TARGET_EXAMPLES", "MIN_TARGET_EXAMPLES", "TokenStats", "auto_epochs", "token_stats"]


@dataclass(frozen=True, slots=True)
class TokenStats:
    """Token counts of a dataset, for validation reports and cost estimates.

    Percentiles use the nearest-rank method (the smallest count that at least
    p% of examples do not exceed), so they are always an actual count.
    ``estimated_training_tokens`` is ``total_tokens * n_epochs`` because
    OpenAI bills fine-tuning on every token of the training file once per
    epoch, not only on the trained (assistant) tokens.
    """

    examples: int
    total_tokens: int
    min_tokens: int
    mean_tokens: float
    max_tokens: int
    p50_tokens: int
    p95_tokens: int
    trained_tokens: int
    over_context: int
    n_epochs: int
    estimated_training_tokens: int


def token_stats(
    token_counts: Iterable[tuple[int, int]],
    *,
    n_epochs: int,
    context_length: int | None,
) -> TokenStats:
    """Summarise ``(tokens_in_example, trained_tokens_in_example)`` pairs.

    Consumes the iterable once; only the per-example totals are kept (8 bytes
    each, in a compact array) for the exact percentiles. ``over_context``
    counts examples with more tokens than ``context_length`` (0 when it is
    None). Empty input gives zeros everywhere except ``n_epochs``, which is
    echoed back.
    """
    if n_epochs < 1:
        raise ValueError(f"n_epochs must be >= 1, got {n_epochs}")
    if context_length is not None and context_length < 1:
        raise ValueError(f"context_length must be >= 1 or None, got {context_length}")
    counts = array("q")
    total = trained = over = 0
    for tokens, trained_here in token_counts:
        if tokens < 0 or not 0 <= trained_here <= tokens:
            raise ValueError(f"invalid token counts ({tokens}, {trained_here}): need 0 <= trained <= tokens")
        counts.append(tokens)
        total += tokens
        trained += trained_here
        if context_length is not None and tokens > context_length:
            over += 1
    if not counts:
        return TokenStats(0, 0, 0, 0.0, 0, 0, 0, 0, 0, n_epochs, 0)
    values = np.frombuffer(counts, dtype=np.int64)
    p50, p95 = np.percentile(values, [50, 95], method="inverted_cdf")
    return TokenStats(
        examples=len(values),
        total_tokens=total,
        min_tokens=int(values.min()),
        mean_tokens=total / len(values),
        max_tokens=int(values.max()),
        p50_tokens=int(p50),
        p95_tokens=int(p95),
        trained_tokens=trained,
        over_context=over,
        n_epochs=n_epochs,
        estimated_training_tokens=total * n_epochs,
    )
