"""One train/validation split for every service, decided by the examples' content, the seed and the fraction.

The dataset service's `SplitVersion` and the trainer's `validation_split` both call `split_examples`, so the same
examples with the same seed and fraction land on the same side wherever they are split, and the same file uploaded
twice (new example ids each time) splits the same way. Pure Python, no I/O: the dataset service has no torch.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["content_hash", "split_by_hash", "split_examples", "validation_count"]


def _squash(text: str) -> str:
    """Strip and collapse whitespace runs; returns ``text`` itself when already clean."""
    # isprintable() is False for every whitespace character except " ".
    if text.isprintable() and "  " not in text and text[:1] != " " and text[-1:] != " ":
        return text  # the common case, several times cheaper than split + join
    return " ".join(text.split())


def _canonical(value: Any) -> Any:
    """Normalise a JSON value so trivially reformatted copies compare equal."""
    if isinstance(value, str):
        return _squash(value)
    if isinstance(value, dict):
        return {str(k): _canonical(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_canonical(v) for v in value]
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        # ``"weight": 1`` and ``"weight": 1.0`` mean the same thing.
        return int(value)
    return value


def content_hash(data: Mapping[str, Any]) -> str:
    """SHA-256 hex digest of the example's canonical JSON form.

    Canonical form: keys sorted, no insignificant whitespace, every string stripped with internal whitespace runs
    collapsed to one space, integral floats written as ints. Copies that differ only in formatting therefore hash
    equal (exact duplicates), while any difference in content, roles or ``weight`` keys (which change what is
    trained) keeps them distinct.
    """
    canonical = json.dumps(
        _canonical(data), sort_keys=True, separators=(",", ":"), ensure_ascii=False, check_circular=False
    )
    return hashlib.sha256(canonical.encode("utf-8", "surrogatepass")).hexdigest()


def validation_count(n: int, validation_fraction: float) -> int:
    """How many of `n` examples go to validation: ``round(n * fraction)``, at least 1, at most ``n - 1``."""
    if not 0.0 < validation_fraction < 1.0:
        raise ValueError(f"validation_fraction must be strictly between 0 and 1, got {validation_fraction!r}")
    if n < 2:
        raise ValueError(f"need at least 2 examples to split into training and validation, got {n}")
    return min(max(1, round(n * validation_fraction)), n - 1)


def split_by_hash(hashes: Sequence[str], validation_fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """(train indices, validation indices) of examples given by their `content_hash`, both in input order.

    Each example is ranked by ``sha256(f"{seed}:{hash}:{k}")``, where ``k`` counts the earlier examples with the same
    content (so exact copies are told apart, and in the same way every time), and the lowest-ranked
    `validation_count` go to validation. Ranking by a per-example hash instead of a shuffle keeps the split identical
    across Python versions and stable when examples are added: an example only changes side if the cut-off moves
    past it.
    """
    n_val = validation_count(len(hashes), validation_fraction)
    seen: dict[str, int] = {}
    keys: list[tuple[bytes, int]] = []
    for i, h in enumerate(hashes):
        k = seen.get(h, 0)
        seen[h] = k + 1
        keys.append((hashlib.sha256(f"{seed}:{h}:{k}".encode()).digest(), i))
    in_val = {i for _, i in sorted(keys)[:n_val]}
    n = len(hashes)
    return [i for i in range(n) if i not in in_val], [i for i in range(n) if i in in_val]


def split_examples(
    examples: Sequence[Mapping[str, Any]], validation_fraction: float, seed: int
) -> tuple[list[int], list[int]]:
    """`split_by_hash` over parsed examples (OpenAI chat, prompt/completion or preference objects)."""
    return split_by_hash([content_hash(e) for e in examples], validation_fraction, seed)
