"""Near-duplicate pairs among many texts at once: MinHash LSH proposes, exact character ROUGE-L decides.

`near_pairs(texts, threshold)` returns the pairs whose character-level ROUGE-L (the LCS F-measure,
rapidfuzz's `Indel.normalized_similarity`) is above `threshold`, found without comparing all pairs:
1. identical texts are one group, indexed once (their ROUGE-L is 1.0);
2. each text's character 3-grams (whitespace removed) are hashed and counted over all texts; a 3-gram found
   more than `COMMON` times is set aside (「ください」, 「について」 and the like are shared by unrelated requests,
   and one with a small hash would put every text holding it in one bucket). A text with fewer than
   `MIN_GRAMS` rarer 3-grams keeps its `MIN_GRAMS` least common ones. The cap is a count, not a share: so a
   bucket never holds more than about `COMMON` texts, and the candidates grow with n, not with n squared;
3. a MinHash signature of the rest, `NUM_PERM` values (multiply-shift hashing, numba, parallel over texts);
4. LSH banding by sorting: `BANDS` bands of `ROWS` values; texts whose values agree in a whole band are
   candidates, each pair counted once, in the first band it shares;
5. a prefilter: a pair must agree on at least `MIN_AGREEMENT` of its signature values (the share estimates
   their Jaccard similarity);
6. the exact ROUGE-L of what is left, pair by pair in rapidfuzz's C++ (`process.cpdist`).
The work grows with the number of texts and of their near neighbours, not with the number of pairs.
Recall against exact ROUGE-L over all pairs, speed at 100k and 1M texts: benchmarks/dedup.py.
"""

from __future__ import annotations

import numba
import numpy as np
from rapidfuzz import process
from rapidfuzz.distance import Indel

NUM_PERM = 128
BANDS, ROWS = 64, 2  # a pair whose (rare) 3-gram Jaccard is 0.3 shares a band with p 0.998, at 0.2 with p 0.93
MIN_AGREEMENT = 0.1  # share of NUM_PERM values; near-duplicates (ROUGE-L > 0.7) agree on 0.3 or more
COMMON = 300  # a 3-gram found more often than this is set aside ...
MIN_GRAMS = 8  # ... unless a text has fewer rare ones: then its MIN_GRAMS least common 3-grams count
SEED = 1
_COUNT_BITS = 24  # 3-gram counts are kept in 2**24 slots by hash: a slot shared by chance only adds to a count


@numba.njit(inline="always")
def _gram(flat, p, end):
    """Hash of the 3-gram starting at p (shorter at the end of a text shorter than 3)."""
    h = np.uint64(0x9E3779B97F4A7C15)
    for q in range(p, min(p + 3, end)):
        h = (h ^ np.uint64(flat[q])) * np.uint64(0xBF58476D1CE4E5B9)
        h ^= h >> np.uint64(31)
    return h


@numba.njit(cache=True)
def _gram_counts(flat, offsets):
    counts = np.zeros(1 << _COUNT_BITS, dtype=np.uint32)
    shift = np.uint64(64 - _COUNT_BITS)
    for t in range(len(offsets) - 1):
        start, end = offsets[t], offsets[t + 1]
        for p in range(start, max(start + 1, end - 2)):
            counts[_gram(flat, p, end) >> shift] += 1
    return counts


@numba.njit(parallel=True, cache=True)
def _signatures(flat, offsets, counts, common, min_grams, a, b):
    n, num_perm = len(offsets) - 1, len(a)
    shift = np.uint64(64 - _COUNT_BITS)
    out = np.empty((n, num_perm), dtype=np.uint32)
    for t in numba.prange(n):
        start, end = offsets[t], offsets[t + 1]
        last = max(start + 1, end - 2)
        seen = np.empty(last - start, dtype=np.uint32)
        for p in range(start, last):
            seen[p - start] = counts[_gram(flat, p, end) >> shift]
        cap = max(common, np.sort(seen)[min(min_grams, len(seen)) - 1])
        out[t, :] = 0xFFFFFFFF
        for p in range(start, last):
            if seen[p - start] > cap:
                continue
            h = _gram(flat, p, end)
            for k in range(num_perm):
                v = np.uint32((a[k] * h + b[k]) >> np.uint64(32))
                if v < out[t, k]:
                    out[t, k] = v
    return out


def code_points(texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """The texts' code points, whitespace removed, end to end (uint32), and where each text starts (n + 1).
    A lone surrogate (JSON can carry one) is a code point like any other."""
    stripped = ["".join(t.split()) for t in texts]
    flat = np.frombuffer("".join(stripped).encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
    offsets = np.zeros(len(texts) + 1, dtype=np.int64)
    np.cumsum([len(t) for t in stripped], out=offsets[1:])
    return flat, offsets


def hash_parameters(num_perm: int = NUM_PERM, seed: int = SEED) -> tuple[np.ndarray, np.ndarray]:
    """The multiply-shift hash functions of the signatures: odd multipliers a and offsets b (uint64)."""
    rng = np.random.default_rng(seed)
    a = rng.integers(1, 2**63, size=num_perm, dtype=np.uint64) | np.uint64(1)
    b = rng.integers(0, 2**63, size=num_perm, dtype=np.uint64)
    return a, b


def signatures(texts: list[str]) -> np.ndarray:
    """MinHash signatures (n x NUM_PERM uint32) of the texts' rare character 3-grams (see the module docstring)."""
    flat, offsets = code_points(texts)
    return _signatures(flat, offsets, _gram_counts(flat, offsets), COMMON, MIN_GRAMS, *hash_parameters())


@numba.njit(parallel=True, cache=True)
def _band_keys(sig, bands, rows):
    n = sig.shape[0]
    keys = np.empty((bands, n), dtype=np.uint64)
    for t in numba.prange(n):
        for band in range(bands):
            h = np.uint64(band + 1) * np.uint64(0x9E3779B97F4A7C15)
            for r in range(band * rows, (band + 1) * rows):
                h = (h ^ np.uint64(sig[t, r])) * np.uint64(0xBF58476D1CE4E5B9)
                h ^= h >> np.uint64(29)
            keys[band, t] = h
    return keys


@numba.njit(cache=True)
def _bucket_pairs(order, sorted_keys, keys, sig, band, min_agree, out, count):
    """Append to `out` (from `count` on) the pairs that share `band` (texts in `order`, sorted by that band's
    key: `sorted_keys`), share no earlier band, and agree on at least `min_agree` signature values. Returns
    the new count, or -1 when `out` is full (the caller grows it and runs the band again)."""
    n, num_perm = len(order), sig.shape[1]
    start = 0
    while start < n:
        end = start + 1
        while end < n and sorted_keys[end] == sorted_keys[start]:
            end += 1
        for x in range(start, end - 1):  # nothing to do for a text alone in its bucket, the usual case
            i = order[x]
            for y in range(x + 1, end):
                j = order[y]
                earlier = False
                for e in range(band):
                    if keys[e, i] == keys[e, j]:
                        earlier = True
                        break
                if earlier:
                    continue
                agree = 0
                for k in range(num_perm):
                    agree += sig[i, k] == sig[j, k]
                if agree >= min_agree:
                    if count == len(out):
                        return -1
                    out[count, 0], out[count, 1] = min(i, j), max(i, j)
                    count += 1
        start = end
    return count


def band_pairs(sig: np.ndarray, keys: np.ndarray, band: int) -> np.ndarray:
    """(m x 2) index pairs i < j that share `band` of `keys` (BANDS x n) and no earlier one, and pass the
    agreement prefilter."""
    order = np.argsort(keys[band])
    sorted_keys = keys[band][order]
    min_agree = int(np.ceil(MIN_AGREEMENT * sig.shape[1]))
    out = np.empty((max(1024, len(sig) // 8), 2), dtype=np.int64)
    while (count := _bucket_pairs(order, sorted_keys, keys, sig, band, min_agree, out, 0)) < 0:
        out = np.empty((2 * len(out), 2), dtype=np.int64)  # full: twice the room, and the band again
    return out[:count]


def candidate_pairs(sig: np.ndarray) -> np.ndarray:
    """(m x 2) index pairs i < j proposed by LSH banding and the agreement prefilter, each once."""
    keys = _band_keys(sig, BANDS, ROWS)
    return np.concatenate([band_pairs(sig, keys, band) for band in range(BANDS)])


def groups(texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """(group, unique): `group[i]` is the index of the first text identical to text i; `unique` those firsts."""
    first: dict[str, int] = {}
    group = np.fromiter((first.setdefault(text, i) for i, text in enumerate(texts)), dtype=np.int64, count=len(texts))
    return group, np.fromiter(first.values(), dtype=np.int64, count=len(first))


def near_pairs(texts: list[str], threshold: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(group, pairs, scores). `group[i]` is the index of the first text identical to text i; `pairs`
    (m x 2, i < j) are such first texts whose ROUGE-L is above `threshold`, `scores` their ROUGE-L."""
    group, unique = groups(texts)
    if len(unique) < 2:
        return group, np.empty((0, 2), dtype=np.int64), np.empty(0)
    pairs = unique[candidate_pairs(signatures([texts[i] for i in unique]))]
    scores = process.cpdist(
        [texts[i] for i in pairs[:, 0]],
        [texts[j] for j in pairs[:, 1]],
        scorer=Indel.normalized_similarity,
        workers=-1,
        dtype=np.float64,
    )
    keep = scores > threshold
    return group, pairs[keep], scores[keep]


def first_matches(
    indexed: dict[str, str], new: dict[str, str], threshold: float
) -> dict[str, tuple[str, float] | None]:
    """The novelty check of a batch: each new text, in key order, against the indexed texts and the new texts
    before it that were novel themselves. Returns, for each new key, its most similar such text's (key,
    ROUGE-L) above `threshold` (ties go to the larger key), or None: novel. The same decisions as checking
    the new texts one at a time against a growing index; the pairs come from one `near_pairs` call."""
    keys = list(indexed) + sorted(new)
    texts = list(indexed.values()) + [new[k] for k in keys[len(indexed) :]]
    group, pairs, scores = near_pairs(texts, threshold)
    neighbours: dict[int, list[tuple[int, float]]] = {}
    for (i, j), score in zip(pairs.tolist(), scores.tolist()):
        neighbours.setdefault(i, []).append((j, score))
        neighbours.setdefault(j, []).append((i, score))
    members: dict[int, list[str]] = {}  # group -> its keys in the index so far
    for k in range(len(indexed)):
        members.setdefault(int(group[k]), []).append(keys[k])
    found = {}
    for k in range(len(indexed), len(keys)):
        g = int(group[k])
        near = [(1.0, key) for key in members.get(g, [])]  # the same text
        near += [(score, key) for h, score in neighbours.get(g, []) for key in members.get(h, [])]
        found[keys[k]] = max(near, default=None)
        if not near:
            members.setdefault(g, []).append(keys[k])
    return {key: best and (best[1], best[0]) for key, best in found.items()}
