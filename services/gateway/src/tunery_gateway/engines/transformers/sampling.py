"""Sampling one token from a row of logits, in numpy (see `BaseWorker._sample` for why not torch)."""

from __future__ import annotations

import numpy as np


def sample_row(logits: np.ndarray, temperature: float, top_p: float, rng: np.random.Generator) -> int:
    """One token from softmax(logits / temperature), restricted to the top-p nucleus; exact.

    The nucleus is looked for among the 256 likeliest tokens first (one argpartition), and the whole vocabulary is
    sorted only when those do not reach top_p.
    """
    x = logits.astype(np.float64) / temperature
    x -= x.max()
    probs = np.exp(x)
    probs /= probs.sum()
    if top_p < 1.0:
        k = min(256, probs.size)
        cand = np.argpartition(probs, probs.size - k)[probs.size - k:] if k < probs.size else np.arange(probs.size)
        if probs[cand].sum() < top_p:
            cand = np.arange(probs.size)
        order = cand[np.argsort(-probs[cand], kind="stable")]
        cum = np.cumsum(probs[order])
        keep = order[: int(np.searchsorted(cum, top_p, side="left")) + 1]
        cdf = np.cumsum(probs[keep])
        return int(keep[min(int(np.searchsorted(cdf, rng.random() * cdf[-1], side="right")), keep.size - 1)])
    cdf = np.cumsum(probs)
    return int(min(int(np.searchsorted(cdf, rng.random() * cdf[-1], side="right")), probs.size - 1))
