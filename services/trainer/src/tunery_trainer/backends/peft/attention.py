"""Attention within each example of a packed row, registered with transformers as its own attention kernel."""

from __future__ import annotations

import itertools
from typing import Any

import torch
import torch.nn.functional as F

SEGMENTED_ATTENTION = "tunery_segmented_sdpa"


def _segmented_sdpa(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    dropout: float = 0.0,
    scaling: float | None = None,
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    """Causal SDPA per example of a packed row (what flash-attention's varlen kernel does on GPUs).

    Cost is the sum of squared example lengths instead of the squared row length; no mask is built at all.
    """
    bounds: list[int] | None = kwargs.get("tunery_segments")
    groups = getattr(module, "num_key_value_groups", 1)
    if groups > 1:
        key = key.repeat_interleave(groups, dim=1)
        value = value.repeat_interleave(groups, dim=1)
    if bounds is None:  # one sequence per row, no padding
        bounds = [0, query.shape[2]]
    outs = [
        F.scaled_dot_product_attention(
            query[:, :, a:b], key[:, :, a:b], value[:, :, a:b], dropout_p=dropout, scale=scaling, is_causal=True
        )
        for a, b in itertools.pairwise(bounds)
    ]
    out = outs[0] if len(outs) == 1 else torch.cat(outs, dim=2)
    return out.transpose(1, 2).contiguous(), None


def register_attention() -> None:
    from transformers import AttentionInterface

    AttentionInterface.register(SEGMENTED_ATTENTION, _segmented_sdpa)


def segment_bounds(position_ids: torch.Tensor) -> list[int]:
    """Start offsets of the examples in a packed row (position id 0), plus the row length."""
    starts = (position_ids[0] == 0).nonzero().flatten().tolist()
    return [*starts, position_ids.shape[1]]
