"""MinHash signatures of many texts at once, exactly as ``datasketch.MinHash`` computes them, but vectorised.

Words are hashed from prefix sums over the texts' code points, shingles from the word hashes, and signatures in
cache-sized blocks, so 100k examples take seconds instead of minutes, with no Python loop per word or per
example. Shingles that a large part of the dataset shares (a system prompt, an instruction template) are left out,
since they say nothing about which examples are copies of each other.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from functools import lru_cache

import numpy as np

__all__ = ["MINHASH_SEED", "MIX_MUL", "NUM_PERM", "fmix64", "minhash"]

#: MinHash permutations. 128 gives a Jaccard estimate with a standard error of
#: about 0.03 around 0.85, enough to separate one-word edits from rewrites.
NUM_PERM = 128
#: Fixed seed for the MinHash permutations, so results never vary between runs.
MINHASH_SEED = 1
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
MIX_MUL = _U64(0x9E3779B97F4A7C15)
_POLY_BASE = _U64(0x100000001B3)  # odd, hence invertible mod 2**64
_ASCII_WORD = np.array([chr(c).isalnum() or chr(c) == "_" for c in range(128)], dtype=bool)
_FMIX64 = (_U64(33), _U64(0xFF51AFD7ED558CCD), _U64(0xC4CEB9FE1A85EC53))
_FMIX32 = (np.uint32(16), np.uint32(0x85EBCA6B), np.uint32(13), np.uint32(0xC2B2AE35))


def fmix64(h: np.ndarray) -> np.ndarray:
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
    hashes = fmix64((prefix[ends] - prefix[starts]) * inverse[starts])
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
            rolling = rolling * MIX_MUL + padded[k - 1 : n + k - 1]
        np.copyto(out, rolling, where=level == k)
    out = fmix64(out[starts])
    return (out >> _U64(32)).astype(np.uint32), counts


@lru_cache(maxsize=1)
def _permutations() -> tuple[np.ndarray, np.ndarray]:
    """datasketch's seeded affine32 permutation parameters (a odd, b)."""
    from datasketch import MinHash  # lazily: datasketch (and the scipy it loads) costs ~1 s at import

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


def minhash(texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
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
