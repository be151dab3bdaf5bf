"""OpenAI-format examples to training tensors, shared by every backend so they all train on the same tokens.

Which tokens an example has and which of them are trained is `tunery.chatformat`'s (the same module serves the
gateway's prompts and the dataset service's token counts); here: truncation, the batches and their tensors.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from itertools import chain
from typing import Any

import torch

from tunery.chatformat import IGNORE_INDEX, Tokenized, encode_examples, template_input


@dataclass(slots=True)
class EncodedDataset:
    examples: list[Tokenized] = field(default_factory=list)
    truncated: int = 0  # examples cut to max_seq_length
    dropped: int = 0  # examples with no trained token (all weights 0, or everything trained was cut off)

    @property
    def tokens(self) -> int:
        return sum(len(e.input_ids) for e in self.examples)

    @property
    def trained_tokens(self) -> int:
        return sum(e.n_trained for e in self.examples)


def encode_sft(tokenizer: Any, examples: Iterable[dict[str, Any]], max_seq_length: int) -> EncodedDataset:
    """Encode, truncate to `max_seq_length` (keeping the start) and drop examples left with nothing to train."""
    out = EncodedDataset()
    for tok in encode_examples(tokenizer, examples):
        if len(tok.input_ids) > max_seq_length:
            out.truncated += 1
            tok = Tokenized(tok.input_ids[:max_seq_length], tok.labels[:max_seq_length])
        if tok.n_trained == 0:
            out.dropped += 1
            continue
        out.examples.append(tok)
    return out


def preference_rows(examples: Iterable[dict[str, Any]], tokenizer: Any | None = None) -> list[dict[str, Any]]:
    """OpenAI preference examples as TRL's conversational prompt/chosen/rejected rows (+ tools).

    With a tokenizer, messages are first made template-ready (`tunery.chatformat.template_input`).
    """
    rows = []
    for ex in examples:
        prompt, tools = list(ex["input"]["messages"]), ex["input"].get("tools")
        chosen, rejected = list(ex["preferred_output"]), list(ex["non_preferred_output"])
        if tokenizer is not None:
            prompt, tools = template_input(tokenizer, prompt, tools)
            chosen = template_input(tokenizer, chosen)[0]
            rejected = template_input(tokenizer, rejected)[0]
        row: dict[str, Any] = {"prompt": prompt, "chosen": chosen, "rejected": rejected}
        if tools:
            row["tools"] = tools
        rows.append(row)
    return rows


# ---- batching ----


def collate_padding_free(batch: Sequence[Tokenized]) -> dict[str, torch.Tensor]:
    """One row, no padding: examples end to end with `position_ids` restarting at 0 for each.

    With `attention_mask=None`, transformers detects the restarts and masks attention block-diagonally, so no token
    attends across examples (checked by a test against separate forwards). The first label of every example is
    ignored, so no example is trained to predict its successor's first token.
    """
    ids = torch.tensor(list(chain.from_iterable(e.input_ids for e in batch)), dtype=torch.long)
    labels = torch.tensor(list(chain.from_iterable(e.labels for e in batch)), dtype=torch.long)
    pos = torch.cat([torch.arange(len(e.input_ids), dtype=torch.long) for e in batch])
    labels[pos == 0] = IGNORE_INDEX
    return {"input_ids": ids[None], "labels": labels[None], "position_ids": pos[None]}


def collate_padded(
    batch: Sequence[Tokenized], pad_token_id: int, pad_to_multiple_of: int = 1
) -> dict[str, torch.Tensor]:
    """Right-padded rows with an attention mask (the classic layout, for attention kernels without packing)."""
    width = max(len(e.input_ids) for e in batch)
    width = -(-width // pad_to_multiple_of) * pad_to_multiple_of
    ids = torch.full((len(batch), width), pad_token_id, dtype=torch.long)
    labels = torch.full((len(batch), width), IGNORE_INDEX, dtype=torch.long)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    for r, e in enumerate(batch):
        n = len(e.input_ids)
        ids[r, :n] = torch.tensor(e.input_ids)
        labels[r, :n] = torch.tensor(e.labels)
        mask[r, :n] = 1
    return {"input_ids": ids, "labels": labels, "attention_mask": mask}


def shuffled_batches(
    lengths: Sequence[int], batch_size: int, seed: int, group_by_length: bool = False, mega: int = 50
) -> list[list[int]]:
    """A deterministic shuffle of example indices into batches, a function of `seed` alone (so resume can replay it).

    `group_by_length` sorts each window of `mega` batches by length before cutting it, so padded batches hold
    similar lengths (less padding), then shuffles the batch order so lengths don't trend through the epoch.
    """
    g = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(lengths), generator=g).tolist()
    if not group_by_length:
        return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    window = batch_size * mega
    batches: list[list[int]] = []
    for w in range(0, len(order), window):
        chunk = sorted(order[w : w + window], key=lambda i: -lengths[i])
        batches.extend(chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size))
    perm = torch.randperm(len(batches), generator=g).tolist()
    return [batches[i] for i in perm]
