"""Exact and near-duplicate examples: content hashes, then MinHash signatures grouped by LSH banding."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Literal

import numpy as np

from tunery.split import content_hash
from tunery_dataset.curation.minhash import MIX_MUL, NUM_PERM, fmix64, minhash
from tunery_dataset.curation.text import example_text

__all__ = ["DuplicateGroup", "find_duplicates"]

_U64 = np.uint64
#: (false positive, false negative) weights for choosing the LSH banding.
LSH_WEIGHTS = (0.1, 0.9)


@dataclass(frozen=True, slots=True)
class DuplicateGroup:
    """Examples that are (near-)copies of each other.

    ``ids[0]`` is kept (earliest in input order); the other ids would be
    removed. ``similarity`` is 1.0 for exact groups and, for near groups, the
    smallest estimated Jaccard similarity between a removed member and the
    kept one.
    """

    kind: Literal["exact", "near"]
    ids: tuple[str, ...]
    similarity: float


@lru_cache(maxsize=32)
def _lsh_params(threshold: float) -> tuple[int, int]:
    """(bands, rows) for LSH at ``threshold``, from datasketch's optimiser.

    Weighted towards recall (``LSH_WEIGHTS``): every candidate is verified
    against its signature anyway, so a false positive only costs a
    comparison while a false negative is a missed duplicate. At 0.85 this
    gives 11 bands of 11 rows: a pair at J = 0.85 becomes a candidate with
    probability ~0.87, at 0.9 ~0.98, at 0.5 ~0.005. Above ~0.99 datasketch
    wants a single band, which it refuses; two halves still find every pair
    whose signatures (nearly) all match.
    """
    try:
        from datasketch import MinHashLSH  # lazily: datasketch (and the scipy it loads) costs ~1 s at import

        lsh = MinHashLSH(threshold=threshold, num_perm=NUM_PERM, weights=LSH_WEIGHTS)
    except ValueError:
        return 2, NUM_PERM // 2
    return lsh.b, lsh.r


def _band_buckets(sig: np.ndarray, bands: int, rows: int) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Per band: (bucket of each row, rows sorted by bucket, bucket offsets).

    Rows inside a bucket are in ascending (input) order thanks to the stable
    sort, which keeps the clustering deterministic.
    """
    out = []
    for band in range(bands):
        h = np.zeros(len(sig), dtype=_U64)
        for col in range(band * rows, (band + 1) * rows):
            h = fmix64(h * MIX_MUL + sig[:, col].astype(_U64))
        _, bucket, sizes = np.unique(h, return_inverse=True, return_counts=True)
        order = np.argsort(bucket, kind="stable")
        offsets = np.concatenate([[0], np.cumsum(sizes)])
        out.append((bucket, order, offsets))
    return out


def _near_clusters(sig: np.ndarray, threshold: float) -> list[tuple[int, list[tuple[int, float]]]]:
    """Star clusters of rows whose estimated Jaccard to the cluster head >= threshold.

    Rows are visited in order; an unassigned row becomes a head and claims
    every later unassigned LSH candidate that verifies against it. Stars (not
    transitive chains) guarantee every removed example really is similar to
    the one kept.
    """
    bands, rows = _lsh_params(threshold)
    buckets = _band_buckets(sig, bands, rows)
    shared = np.zeros(len(sig), dtype=bool)
    for bucket, _, offsets in buckets:
        shared |= np.diff(offsets)[bucket] > 1
    assigned = np.zeros(len(sig), dtype=bool)
    need = math.ceil(threshold * NUM_PERM - 1e-9)  # matching permutations
    clusters: list[tuple[int, list[tuple[int, float]]]] = []
    for head in np.flatnonzero(shared).tolist():
        if assigned[head]:
            continue
        head_sig = sig[head]
        found: list[tuple[np.ndarray, np.ndarray]] = []
        for bucket, order, offsets in buckets:
            lo, hi = offsets[bucket[head]], offsets[bucket[head] + 1]
            if hi - lo < 2:
                continue
            members = order[lo:hi]
            later = members[np.searchsorted(members, head, side="right") :]
            later = later[~assigned[later]]
            if not len(later):
                continue
            # Verified per band: a pair sharing several bands is matched in the
            # first and then skipped as assigned (cheaper than a union).
            matches = np.count_nonzero(sig[later] == head_sig, axis=1)
            ok = matches >= need
            if ok.any():
                assigned[later[ok]] = True
                found.append((later[ok], matches[ok]))
        if found:
            assigned[head] = True
            rows_found = np.concatenate([f[0] for f in found])
            sims = np.concatenate([f[1] for f in found]) / NUM_PERM
            by_row = np.argsort(rows_found)
            pairs = zip(rows_found[by_row].tolist(), sims[by_row].tolist(), strict=True)
            clusters.append((head, list(pairs)))
    return clusters


def find_duplicates(
    items: Iterable[tuple[str, dict[str, Any]]],
    *,
    near: bool = True,
    threshold: float = 0.85,
) -> list[DuplicateGroup]:
    """Group exact and near-duplicate examples; the first of each group is kept.

    1. Exact: examples with equal :func:`content_hash` (so reformatted copies
       count as exact).
    2. Near (if ``near``): among one representative per exact group, MinHash
       (``NUM_PERM`` permutations, fixed seed, computed exactly as
       ``datasketch.MinHash`` would) over lower-cased word 5-shingles of
       :func:`example_text` (3-shingles under ``SHORT_TEXT_WORDS`` words).
       Shingles shared by a large part of the dataset (``BOILERPLATE_*``:
       a common system prompt or template) are left out, so ``similarity``
       is the estimated Jaccard of what distinguishes the examples.
       Candidates come from LSH banding (datasketch's parameters for
       ``threshold``, tilted towards recall) and are verified: a member's
       estimated Jaccard to the group's kept example is >= ``threshold``.
       Groups are stars around the kept example, never chains.

    An example belongs to at most one group: when a representative joins a
    near group, its exact copies come along (the group is then ``"near"``).
    Groups are ordered by their kept example; ids inside a group by input
    order. The result depends only on the input (no set/dict order, hash
    seed or platform dependence). Cost is linear in the total text, plus
    one signature comparison per LSH candidate pair.

    Raises ValueError for duplicate ids or a threshold outside (0, 1].
    """
    if not 0.0 < threshold <= 1.0:
        raise ValueError(f"threshold must be in (0, 1], got {threshold!r}")
    ids: list[str] = []
    by_hash: dict[str, list[int]] = {}
    reps: list[int] = []
    texts: list[str] = []
    seen: set[str] = set()
    for index, (item_id, data) in enumerate(items):
        if item_id in seen:
            raise ValueError(f"duplicate example id {item_id!r}: ids must be unique")
        seen.add(item_id)
        ids.append(item_id)
        digest = content_hash(data)
        members = by_hash.setdefault(digest, [])
        members.append(index)
        if len(members) == 1:
            reps.append(index)
            if near:
                texts.append(example_text(data))

    exact_of = {members[0]: members for members in by_hash.values()}
    near_of: dict[int, list[tuple[int, float]]] = {}
    absorbed: set[int] = set()
    if near and len(reps) > 1:
        sig, counts = minhash(texts)
        has_text = np.flatnonzero(counts > 0)
        sig = sig[has_text]
        for head, verified in _near_clusters(sig, threshold):
            rep_members = [(reps[has_text[row]], sim) for row, sim in verified]
            near_of[reps[has_text[head]]] = rep_members
            absorbed.update(rep for rep, _ in rep_members)

    groups: list[DuplicateGroup] = []
    for rep in reps:
        if rep in absorbed:
            continue
        if rep in near_of:
            indices = list(exact_of[rep])
            similarity = 1.0
            for member, sim in near_of[rep]:
                indices.extend(exact_of[member])
                similarity = min(similarity, sim)
            indices.sort()
            groups.append(DuplicateGroup("near", tuple(ids[i] for i in indices), similarity))
        elif len(exact_of[rep]) > 1:
            groups.append(DuplicateGroup("exact", tuple(ids[i] for i in exact_of[rep]), 1.0))
    return groups
