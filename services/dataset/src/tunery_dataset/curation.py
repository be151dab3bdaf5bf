"""Dataset curation: duplicate detection, train/validation split, token statistics.

Everything here is a pure function over already-parsed examples (no I/O, no
torch) so the dataset service can run it on upload and the CLI can run it
locally with identical results.

Supported example shapes (OpenAI fine-tuning formats):

* chat: ``{"messages": [{"role": ..., "content": ...}, ...]}``
* legacy completion: ``{"prompt": ..., "completion": ...}``
* preference (DPO): ``{"input": {"messages": [...]}, "preferred_output": [...],
  "non_preferred_output": [...]}``

Message ``content`` may be a string, ``None`` (an assistant turn that only
carries ``tool_calls``) or a list of content parts such as
``{"type": "text", "text": ...}``.
"""

from __future__ import annotations

import hashlib
import json
import math
from array import array
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Literal

import numpy as np
from datasketch import MinHash, MinHashLSH

from tunery.hyperparams import MAX_TARGET_EXAMPLES, MIN_TARGET_EXAMPLES, auto_epochs

__all__ = [
    "MAX_TARGET_EXAMPLES",
    "MIN_TARGET_EXAMPLES",
    "NUM_PERM",
    "DuplicateGroup",
    "TokenStats",
    "auto_epochs",
    "content_hash",
    "example_text",
    "find_duplicates",
    "split_ids",
    "token_stats",
]

# --------------------------------------------------------------------------
# Example text and canonical hashing
# --------------------------------------------------------------------------


def _content_text(content: Any) -> str:
    """Text of a message ``content``: a string, None, or a list of parts.

    Only parts that carry text (``{"type": "text", "text": ...}`` and friends
    such as ``input_text``/``refusal``) contribute; images and audio have no
    text to compare, so they are skipped.
    """
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        pieces: list[str] = []
        for part in content:
            if isinstance(part, str):
                pieces.append(part)
            elif isinstance(part, dict):
                for key in ("text", "refusal"):
                    value = part.get(key)
                    if isinstance(value, str):
                        pieces.append(value)
                        break
        return " ".join(pieces)
    return str(content)


def _call_text(function: Any) -> str:
    """``name(arguments)`` for a tool call / legacy function call."""
    if not isinstance(function, dict):
        return ""
    name = function.get("name") or ""
    arguments = function.get("arguments")
    if arguments is None:
        arguments = ""
    elif not isinstance(arguments, str):
        arguments = json.dumps(arguments, sort_keys=True, ensure_ascii=False)
    return f"{name}({arguments})"


def _message_line(message: Any, prefix: str = "") -> str | None:
    if not isinstance(message, dict):
        return None
    role = str(message.get("role") or "")
    pieces: list[str] = []
    text = _content_text(message.get("content"))
    if text:
        pieces.append(text)
    for call in message.get("tool_calls") or []:
        if isinstance(call, dict):
            call_text = _call_text(call.get("function"))
            if call_text:
                pieces.append(call_text)
    if message.get("function_call"):
        call_text = _call_text(message["function_call"])
        if call_text:
            pieces.append(call_text)
    return f"{prefix}{role}: {' '.join(pieces)}"


def example_text(data: dict[str, Any]) -> str:
    """All text of one example in order, one ``role: text`` line per message.

    Used for near-duplicate detection, so it includes everything that makes
    two examples different to a model: roles, message text and tool calls
    (rendered as ``name(arguments)``). Legacy prompt/completion pairs are
    rendered as ``user``/``assistant`` turns; preference examples render the
    input messages followed by the outputs, prefixed ``preferred `` and
    ``non_preferred ``. Top-level ``tools``/``functions`` definitions are left
    out: they are usually identical across a dataset and would make unrelated
    examples look alike. Unrecognised shapes yield ``""``.
    """
    lines: list[str | None] = []
    if isinstance(data.get("messages"), list):
        lines.extend(_message_line(m) for m in data["messages"])
    elif "prompt" in data or "completion" in data:
        lines.append(f"user: {_content_text(data.get('prompt'))}")
        lines.append(f"assistant: {_content_text(data.get('completion'))}")
    elif isinstance(data.get("input"), dict) or "preferred_output" in data:
        source = data.get("input")
        if isinstance(source, dict) and isinstance(source.get("messages"), list):
            lines.extend(_message_line(m) for m in source["messages"])
        for key in ("preferred_output", "non_preferred_output"):
            outputs = data.get(key)
            if isinstance(outputs, list):
                lines.extend(_message_line(m, prefix=f"{key.removesuffix('_output')} ") for m in outputs)
    return "\n".join(line for line in lines if line is not None)


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


def content_hash(data: dict[str, Any]) -> str:
    """SHA-256 hex digest of the example's canonical JSON form.

    Canonical form: keys sorted, no insignificant whitespace, every string
    stripped with internal whitespace runs collapsed to one space, integral
    floats written as ints. Copies that differ only in formatting therefore
    hash equal (exact duplicates), while any difference in content, roles or
    ``weight`` keys (which change what is trained) keeps them distinct.
    """
    canonical = json.dumps(
        _canonical(data), sort_keys=True, separators=(",", ":"), ensure_ascii=False, check_circular=False
    )
    return hashlib.sha256(canonical.encode("utf-8", "surrogatepass")).hexdigest()


# --------------------------------------------------------------------------
# Duplicate detection
# --------------------------------------------------------------------------

#: MinHash permutations. 128 gives a Jaccard estimate with a standard error of
#: about 0.03 around 0.85, enough to separate one-word edits from rewrites.
NUM_PERM = 128
#: Fixed seed for the MinHash permutations, so results never vary between runs.
MINHASH_SEED = 1
#: (false positive, false negative) weights for choosing the LSH banding.
LSH_WEIGHTS = (0.1, 0.9)
#: Texts with fewer words than this are shingled with ``SHORT_SHINGLE`` words
#: instead of ``LONG_SHINGLE``: 5-shingles of a short text are too few and
#: too fragile to compare.
SHORT_TEXT_WORDS = 30
LONG_SHINGLE = 5
SHORT_SHINGLE = 3
#: Shingles found in at least this share of the texts (system prompts,
#: instruction templates) are ignored when comparing examples...
BOILERPLATE_FRACTION = 0.1
#: ...provided they are also in at least this many texts, so small datasets
#: and small clusters of near-duplicates keep their shared text.
BOILERPLATE_MIN_TEXTS = 50
#: Shingle frequencies are counted on at most this many evenly spaced texts.
BOILERPLATE_SAMPLE = 10_000
# Shingle hashes are MinHashed in blocks of this many shingles (x NUM_PERM
# uint32 values = 4 MiB, which stays in cache).
_BLOCK_SHINGLES = 1 << 13
# Texts are tokenised in chunks of about this many characters (~40 bytes of
# working memory each).
_CHUNK_CHARS = 1 << 19

_U64 = np.uint64
_MIX_MUL = _U64(0x9E3779B97F4A7C15)
_POLY_BASE = _U64(0x100000001B3)  # odd, hence invertible mod 2**64
_ASCII_WORD = np.array([chr(c).isalnum() or chr(c) == "_" for c in range(128)], dtype=bool)
_FMIX64 = (_U64(33), _U64(0xFF51AFD7ED558CCD), _U64(0xC4CEB9FE1A85EC53))
_FMIX32 = (np.uint32(16), np.uint32(0x85EBCA6B), np.uint32(13), np.uint32(0xC2B2AE35))


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


def _fmix64(h: np.ndarray) -> np.ndarray:
    """MurmurHash3 64-bit finalizer (a bijection that avalanches all bits).

    Returns a new array; works in place on it with one scratch buffer because
    these arrays hold one value per word of the whole dataset.
    """
    shift, m1, m2 = _FMIX64
    h = h.copy()
    tmp = np.empty_like(h)
    for mul in (m1, m2):
        h ^= np.right_shift(h, shift, out=tmp)
        h *= mul
    h ^= np.right_shift(h, shift, out=tmp)
    return h


def _fmix32(h: np.ndarray) -> np.ndarray:
    """MurmurHash3 32-bit finalizer, as datasketch applies it before permuting."""
    s1, m1, s2, m2 = _FMIX32
    h = h ^ (h >> s1)
    h = h * m1
    h = h ^ (h >> s2)
    h = h * m2
    return h ^ (h >> s1)


def _word_chars(cps: np.ndarray) -> np.ndarray:
    """Mask of code points that ``re``'s ``\\w`` matches (``isalnum()`` or ``_``)."""
    is_word = _ASCII_WORD[np.minimum(cps, 127)]
    high = cps >= 128
    if high.any():
        uniq, inverse = np.unique(cps[high], return_inverse=True)
        flags = np.fromiter((chr(c).isalnum() for c in uniq.tolist()), dtype=bool, count=len(uniq))
        is_word[high] = flags[inverse]
    return is_word


def _compute_powers(n: int) -> tuple[np.ndarray, np.ndarray]:
    """``B**i`` and ``B**-i`` mod 2**64 for i < n (B odd, so invertible)."""
    base = np.full(n, _POLY_BASE, dtype=_U64)
    base[0] = 1
    inv = np.full(n, pow(int(_POLY_BASE), -1, 1 << 64), dtype=_U64)
    inv[0] = 1
    return np.cumprod(base), np.cumprod(inv)


@lru_cache(maxsize=1)
def _chunk_powers() -> tuple[np.ndarray, np.ndarray]:
    """Powers for any normal chunk, computed once (8 MiB) and reused."""
    return _compute_powers(_CHUNK_CHARS + 1)


def _powers(n: int) -> tuple[np.ndarray, np.ndarray]:
    """At least ``n`` powers; only an oversized single text needs fresh ones."""
    return _chunk_powers() if n <= _CHUNK_CHARS + 1 else _compute_powers(n)


def _chunks(texts: Sequence[str]) -> Iterator[tuple[int, int]]:
    """``(lo, hi)`` ranges of texts with about ``_CHUNK_CHARS`` characters each.

    Hashing chunk by chunk bounds memory (arrays are per word and per
    shingle) and keeps the working set in cache. A longer text gets its own.
    """
    lo = 0
    while lo < len(texts):
        hi, chars = lo + 1, len(texts[lo])
        while hi < len(texts) and chars + len(texts[hi]) < _CHUNK_CHARS:
            chars += len(texts[hi]) + 1
            hi += 1
        yield lo, hi
        lo = hi


def _word_hashes(texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """64-bit hashes of the lower-cased ``\\w+`` words of each text, concatenated.

    Returns ``(hashes, word_counts)``. Words are hashed without a Python loop
    per word: the texts become one array of code points, words are found
    from the ``\\w`` mask, and each word's polynomial hash is read off prefix
    sums (rescaled by ``B**-start`` so it doesn't depend on where the word
    sits). The result equals hashing each ``re.findall(r"\\w+", text.lower())``
    word on its own, and does not depend on PYTHONHASHSEED.
    """
    lowered = [t.lower() for t in texts]
    # "\n" between texts is not a word character, so no word spans two texts.
    joined = "\n".join(lowered) + "\n"
    # surrogatepass: JSON may carry lone surrogates (\ud800); they are not words.
    cps = np.frombuffer(joined.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
    word = np.concatenate([[False], _word_chars(cps), [False]])
    edges = np.flatnonzero(word[1:] != word[:-1])
    starts, ends = edges[0::2], edges[1::2]
    forward, inverse = _powers(len(cps) + 1)
    prefix = np.zeros(len(cps) + 1, dtype=_U64)
    np.cumsum(cps.astype(_U64) * forward[: len(cps)], out=prefix[1:])
    hashes = _fmix64((prefix[ends] - prefix[starts]) * inverse[starts])
    char_owner = np.repeat(np.arange(len(texts)), [len(t) + 1 for t in lowered])
    return hashes, np.bincount(char_owner[starts], minlength=len(texts))


def _shingle_hashes(texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """32-bit hashes of the word shingles of every text, concatenated.

    Returns ``(hashes, counts)``: ``counts[d]`` shingles of text ``d`` follow
    those of text ``d - 1``. A text of ``SHORT_TEXT_WORDS`` words or more
    uses 5-shingles, a shorter one 3-shingles, and a text shorter than its
    shingle size is a single shingle. Shingle hashes are mixed from word
    hashes, vectorised over all texts.
    """
    tokens, lengths = _word_hashes(texts)
    size = np.where(lengths >= SHORT_TEXT_WORDS, LONG_SHINGLE, SHORT_SHINGLE)
    size = np.minimum(size, lengths)  # texts shorter than the shingle: one shingle
    counts = np.where(lengths > 0, lengths - size + 1, 0)
    # Per word position: does a shingle start here, and of how many words?
    owner = np.repeat(np.arange(len(texts)), lengths)
    offset = np.arange(len(tokens)) - (np.cumsum(lengths) - lengths)[owner]
    starts = offset < counts[owner]
    level = size[owner]
    # Polynomial in the word hashes, extended one word at a time over all
    # positions at once (contiguous slices, no gathers).
    padded = np.concatenate([tokens, np.zeros(LONG_SHINGLE, dtype=_U64)])
    n = len(tokens)
    out = np.zeros(n, dtype=_U64)
    rolling = tokens
    for k in range(1, LONG_SHINGLE + 1):
        if k > 1:
            rolling = rolling * _MIX_MUL + padded[k - 1 : n + k - 1]
        np.copyto(out, rolling, where=level == k)
    out = _fmix64(out[starts])
    return (out >> _U64(32)).astype(np.uint32), counts


@lru_cache(maxsize=1)
def _permutations() -> tuple[np.ndarray, np.ndarray]:
    """datasketch's seeded affine32 permutation parameters (a odd, b)."""
    a, b = MinHash(num_perm=NUM_PERM, seed=MINHASH_SEED).permutations
    return a.astype(np.uint32), b.astype(np.uint32)


def _signatures(hashes: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """MinHash signatures, one row per text, identical to datasketch's.

    Equivalent to ``MinHash(NUM_PERM, seed=MINHASH_SEED).update_batch`` fed
    the shingle hashes of each text (affine32 scheme), but computed for all
    texts at once in fixed-size blocks, which is ~50x faster than one MinHash
    object per example. Texts without shingles keep the all-max sentinel.
    """
    a, b = _permutations()
    sig = np.full((len(counts), NUM_PERM), np.iinfo(np.uint32).max, dtype=np.uint32)
    doc = np.repeat(np.arange(len(counts)), counts)
    mixed = _fmix32(hashes)
    for lo in range(0, len(hashes), _BLOCK_SHINGLES):
        hi = min(lo + _BLOCK_SHINGLES, len(hashes))
        block_doc = doc[lo:hi]
        seg = np.concatenate([[0], np.flatnonzero(np.diff(block_doc)) + 1])
        # (perm, shingle) layout: reducing along contiguous rows is ~5x faster.
        permuted = np.multiply(a[:, None], mixed[None, lo:hi])
        permuted += b[:, None]
        mins = np.minimum.reduceat(permuted, seg, axis=1)
        docs = block_doc[seg]
        sig[docs] = np.minimum(sig[docs], mins.T)
    return sig


def _boilerplate(sampled: np.ndarray, n_sampled: int, n_texts: int) -> np.ndarray:
    """Sorted shingle hashes that occur in too many texts to tell any apart.

    A shingle in at least ``BOILERPLATE_FRACTION`` of the texts (and at least
    ``BOILERPLATE_MIN_TEXTS`` of them) comes from a shared system prompt or
    instruction template. Left in, it makes unrelated examples look alike
    (a 150-word system prompt puts every pair of short examples near 0.7)
    and makes LSH verify a quadratic number of candidate pairs. Frequencies
    are counted on an evenly spaced sample of ``n_sampled`` of the
    ``n_texts`` texts (all of them up to ``BOILERPLATE_SAMPLE``);
    ``sampled`` holds each sampled text's distinct shingle hashes.
    """
    if not n_sampled or n_texts < BOILERPLATE_MIN_TEXTS:
        return np.zeros(0, dtype=np.uint32)
    limit = max(BOILERPLATE_FRACTION * n_sampled, BOILERPLATE_MIN_TEXTS * n_sampled / n_texts)
    values, frequency = np.unique(sampled, return_counts=True)
    return values[frequency >= limit - 1e-9]


def _minhash(texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """``(signatures, shingle_counts)`` of the informative shingles of each text.

    Two passes over chunks of texts: hash the shingles (counting, on a
    sample, how many texts each occurs in), then drop boilerplate shingles
    (see :func:`_boilerplate`) unless that would leave a text with none, and
    MinHash the rest.
    """
    stride = max(1, math.ceil(len(texts) / BOILERPLATE_SAMPLE))
    chunks: list[tuple[int, int, np.ndarray]] = []
    sampled: list[np.ndarray] = []
    counts = np.zeros(len(texts), dtype=np.int64)
    for lo, hi in _chunks(texts):
        hashes, counts[lo:hi] = _shingle_hashes(texts[lo:hi])
        chunks.append((lo, hi, hashes))
        in_sample = np.arange(lo, hi) % stride == 0
        owner = np.repeat(np.arange(hi - lo, dtype=_U64)[in_sample], counts[lo:hi][in_sample])
        keys = (owner << _U64(32)) | hashes[np.repeat(in_sample, counts[lo:hi])]
        keys.sort()
        distinct = np.concatenate([keys[:1], keys[1:][keys[1:] != keys[:-1]]])  # per (text, shingle)
        sampled.append(distinct.astype(np.uint32))  # the low 32 bits: the shingle hash
    has_text = counts > 0
    boiler = _boilerplate(
        np.concatenate(sampled) if sampled else np.zeros(0, dtype=np.uint32),
        int(np.count_nonzero(has_text[::stride])),
        int(np.count_nonzero(has_text)),
    )
    sig = np.empty((len(texts), NUM_PERM), dtype=np.uint32)
    for lo, hi, hashes in chunks:
        chunk_counts = counts[lo:hi]
        if len(boiler):
            owner = np.repeat(np.arange(hi - lo), chunk_counts)
            keep = boiler[np.minimum(np.searchsorted(boiler, hashes), len(boiler) - 1)] != hashes
            kept = np.bincount(owner[keep], minlength=hi - lo)
            keep |= (kept == 0)[owner]  # nothing but boilerplate: compare it all
            hashes = hashes[keep]
            counts[lo:hi] = chunk_counts = np.where(kept == 0, chunk_counts, kept)
        sig[lo:hi] = _signatures(hashes, chunk_counts)
    return sig, counts


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
            h = _fmix64(h * _MIX_MUL + sig[:, col].astype(_U64))
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
        sig, counts = _minhash(texts)
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


# --------------------------------------------------------------------------
# Train / validation split
# --------------------------------------------------------------------------


def split_ids(ids: Sequence[str], validation_fraction: float, seed: int) -> tuple[list[str], list[str]]:
    """Split ids into (train, validation), seeded and reproducible anywhere.

    Each id is ranked by ``sha256(f"{seed}:{id}")`` and the lowest-ranked
    ``round(n * validation_fraction)`` (Python rounding, at least 1, at most
    ``n - 1`` so training is never empty) go to validation. Ranking by a
    per-id hash instead of ``random.shuffle`` keeps the split identical
    across Python/numpy versions and stable when examples are added: an id
    only changes side if the cut-off moves past it. Both lists keep the
    input order.
    """
    if not 0.0 < validation_fraction < 1.0:
        raise ValueError(f"validation_fraction must be strictly between 0 and 1, got {validation_fraction!r}")
    n = len(ids)
    if n < 2:
        raise ValueError(f"need at least 2 examples to split into training and validation, got {n}")
    n_val = min(max(1, round(n * validation_fraction)), n - 1)
    ranked = sorted(
        range(n),
        key=lambda i: (hashlib.sha256(f"{seed}:{ids[i]}".encode()).digest(), i),
    )
    in_val = set(ranked[:n_val])
    train = [ids[i] for i in range(n) if i not in in_val]
    validation = [ids[i] for i in range(n) if i in in_val]
    return train, validation


# --------------------------------------------------------------------------
# Token statistics and epochs
# --------------------------------------------------------------------------


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
