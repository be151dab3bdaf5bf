"""Token counts with a base model's own tokenizer and chat template: the tokens the trainer will actually see.

An example's tokens and trained tokens come from `tunery.chatformat`, the module the trainer trains with and the
gateway serves with, so a count here is exactly what a job trains (before `max_seq_length` cuts it).
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator
from functools import lru_cache
from pathlib import Path
from typing import Any

from tunery.chatformat import Tokenized, encode_examples
from tunery.errors import FailedPrecondition
from tunery.models import BaseModelSpec, tokenizer_source

BATCH = 256
_lock = threading.Lock()


@lru_cache(maxsize=4)
def _load(source: str) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(source)


def load_tokenizer(spec: BaseModelSpec, data_dir: Path) -> Any:
    with _lock:  # one conversion/load at a time; later calls hit the cache
        try:
            return _load(tokenizer_source(spec, data_dir))
        except OSError as err:
            raise FailedPrecondition(
                f"cannot load the tokenizer of {spec.name}: {err}", code="tokenizer_unavailable", field="base_model"
            ) from err


def encode(tok: Any, examples: Iterable[dict[str, Any]]) -> Iterator[Tokenized]:
    """Each example's token ids and labels, as the trainer encodes it; tokenized in batches by the fast tokenizer."""
    return encode_examples(tok, examples, BATCH)


def count(tok: Any, examples: Iterable[dict[str, Any]]) -> Iterator[tuple[int, int]]:
    """(tokens in the example, trained tokens) per example."""
    for t in encode(tok, examples):
        yield len(t.input_ids), t.n_trained
