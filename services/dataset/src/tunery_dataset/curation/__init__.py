"""Dataset curation: duplicate detection and token statistics.

Everything here is a pure function over already-parsed examples (no I/O, no torch), so the dataset service runs it
on its stored examples with the same results anywhere. The seams: `text` (what of an example is compared),
`minhash` (vectorised MinHash signatures), `dedup` (exact and near-duplicate groups), `stats` (token counts and
epochs). The train/validation split is not here: it is `tunery.split`, shared with the trainer.
"""

from __future__ import annotations

from tunery_dataset.curation.dedup import DuplicateGroup, find_duplicates
from tunery_dataset.curation.minhash import NUM_PERM
from tunery_dataset.curation.stats import (
    MAX_TARGET_EXAMPLES,
    MIN_TARGET_EXAMPLES,
    TokenStats,
    auto_epochs,
    token_stats,
)
from tunery_dataset.curation.text import example_text

__all__ = [
    "MAX_TARGET_EXAMPLES",
    "MIN_TARGET_EXAMPLES",
    "NUM_PERM",
    "DuplicateGroup",
    "TokenStats",
    "auto_epochs",
    "example_text",
    "find_duplicates",
    "token_stats",
]
