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
def _add_grams(flat, offsets, counts, step):
    """Add `step` (1 or -1) to the count of every 3-gram of the texts, in place."""
    shift = np.uint64(64 - _COUNT_BITS)
    for t in range(len(offsets) - 1):
        start, end = offsets[t], offsets[t + 1]
        for p in range(start, max(start + 1, end - 2)):
            slot = _gram(flat, p, end) >> shift
            counts[slot] = counts[slot] + step


def _gram_counts(flat: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    counts = np.zeros(1 << _COUNT_BITS, dtype=np.uint32)
    _add_grams(flat, offsets, counts, 1)
    return counts


@numba.njit(parallel=True, cache=True)
def _stale(flat, offsets, before, after, common, min_grams):
    """Texts whose signature under 3-gram counts `after` differs from the one under `before` (see
    _signatures): those holding a 3-gram whose count crossed `common`, and those signed by the `MIN_GRAMS`
    fallback under either (fewer than min_grams 3-grams at or below `common`) holding a 3-gram above `common`
    whose count changed. Any other change leaves a text's kept 3-grams as they were."""
    n = len(offsets) - 1
    shift = np.uint64(64 - _COUNT_BITS)
    out = np.zeros(n, dtype=np.bool_)
    for t in numba.prange(n):
        start, end = offsets[t], offsets[t + 1]
        last = max(start + 1, end - 2)
        crossed, moved_common, rare_before, rare_after = False, False, 0, 0
        for p in range(start, last):
            slot = _gram(flat, p, end) >> shift
            rare_before += before[slot] <= common
            rare_after += after[slot] <= common
            if before[slot] != after[slot]:
                crossed |= (before[slot] <= common) != (after[slot] <= common)
                moved_common |= max(before[slot], after[slot]) > common
        k = min(min_grams, last - start)
        out[t] = crossed or (moved_common and min(rare_before, rare_after) < k)
    return out


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


def _subset(flat: np.ndarray, offsets: np.ndarray, which: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The code points and offsets of the texts `which` alone."""
    lengths = offsets[which + 1] - offsets[which]
    sub = np.zeros(len(which) + 1, dtype=np.int64)
    np.cumsum(lengths, out=sub[1:])
    return flat[np.repeat(offsets[which] - sub[:-1], lengths) + np.arange(sub[-1])], sub


class NoveltyIndex:
    """Self-Instruct's novelty index: the texts kept so far with their signatures, kept from round to round.

    `add(texts)` indexes texts unchecked (the seeds, the rows a resumed run starts from). `check(new)` decides
    a round's candidates in key order, each against the index and the candidates before it that were novel
    themselves, and indexes the novel ones. A round signs its new texts, and only those indexed texts whose
    signature its texts changed (by making one of their 3-grams common, or no longer common): the signatures,
    pairs and decisions are those of signing everything again (tested against `signatures` and a sequential
    exact reference). Held in memory: the texts' code points, NUM_PERM x 4 bytes a text, and three
    2**_COUNT_BITS count tables (64 MB each) while a round is checked.
    """

    def __init__(self, threshold: float):
        self.threshold = threshold
        self.texts: list[str] = []  # distinct texts, in the order they joined
        self.keys: list[list[str]] = []  # the keys of each
        self.position: dict[str, int] = {}  # text -> its place in self.texts
        self.indexed: set[str] = set()
        self.flat, self.offsets = code_points([])
        self.counts = np.zeros(1 << _COUNT_BITS, dtype=np.uint32)  # the 3-grams of self.texts
        self.sig = np.empty((0, NUM_PERM), dtype=np.uint32)  # of self.texts[: len(self.sig)], under self.signed
        self.signed = self.counts.copy()
        self.resigned = 0  # indexed texts signed again (how much keeping the index saved: benchmarks/dedup.py)

    def __contains__(self, key: str) -> bool:
        return key in self.indexed

    def __len__(self) -> int:
        return len(self.indexed)

    def add(self, texts: dict[str, str]) -> None:
        """Index `texts` as they are, unchecked; keys already indexed are skipped. Signed at the next check."""
        fresh = []
        for key, text in texts.items():
            if key in self.indexed:
                continue
            self.indexed.add(key)
            if text in self.position:
                self.keys[self.position[text]].append(key)
            else:
                self.position[text] = len(self.texts)
                self.texts.append(text)
                self.keys.append([key])
                fresh.append(text)
        self._append(*code_points(fresh))

    def _append(self, flat: np.ndarray, offsets: np.ndarray) -> None:
        _add_grams(flat, offsets, self.counts, 1)
        self.flat = np.concatenate([self.flat, flat])
        self.offsets = np.concatenate([self.offsets, offsets[1:] + self.offsets[-1]])

    def check(self, new: dict[str, str]) -> dict[str, tuple[str, float] | None]:
        """For each new key, in key order: its most similar (key, ROUGE-L) above the threshold among the
        indexed texts and the novel new texts before it (ties go to the larger key), or None: novel."""
        order = sorted(new)
        fresh = list(dict.fromkeys(new[k] for k in order if new[k] not in self.position))  # distinct, unindexed
        flat, offsets = code_points(fresh)
        counts = self.counts.copy()  # the 3-gram counts of everything, as one `signatures` call would count
        _add_grams(flat, offsets, counts, 1)
        n, params = len(self.texts), (COMMON, MIN_GRAMS, *hash_parameters())
        stale = _stale(self.flat, self.offsets, self.signed, counts, COMMON, MIN_GRAMS)[: len(self.sig)]
        stale = np.flatnonzero(stale)
        self.resigned += len(stale)
        sign = np.concatenate([stale, np.arange(len(self.sig), n)])
        sig = np.concatenate([self.sig, np.empty((n - len(self.sig), NUM_PERM), dtype=np.uint32)])
        if len(sign):
            sig[sign] = _signatures(*_subset(self.flat, self.offsets, sign), counts, *params)
        sig = np.concatenate([sig, _signatures(flat, offsets, counts, *params)])

        pairs = candidate_pairs(sig) if fresh and len(sig) > 1 else np.empty((0, 2), dtype=np.int64)
        pairs = pairs[pairs[:, 1] >= n]  # i < j: a pair of indexed texts decides nothing
        texts = self.texts + fresh
        scores = process.cpdist(
            [texts[i] for i in pairs[:, 0]],
            [texts[j] for j in pairs[:, 1]],
            scorer=Indel.normalized_similarity,
            workers=-1,
            dtype=np.float64,
        )
        neighbours: dict[int, list[tuple[int, float]]] = {}
        for (i, j), score in zip(pairs.tolist(), scores.tolist()):
            if score > self.threshold:
                neighbours.setdefault(i, []).append((j, score))
                neighbours.setdefault(j, []).append((i, score))
        place = {text: n + u for u, text in enumerate(fresh)} | self.position
        novel: dict[int, list[str]] = {}  # place of a new text -> its keys, when it was novel

        def members(g: int) -> list[str]:
            return self.keys[g] if g < n else novel.get(g, [])

        found = {}
        for key in order:
            g = place[new[key]]
            near = [(1.0, other) for other in members(g)]  # the same text
            near += [(score, other) for h, score in neighbours.get(g, []) for other in members(h)]
            best = max(near, default=None)
            found[key] = best and (best[1], best[0])
            if not near:
                novel.setdefault(g, []).append(key)

        joined = np.array(sorted(novel), dtype=np.int64)
        for g in joined.tolist():
            self.position[texts[g]] = len(self.texts)
            self.texts.append(texts[g])
            self.keys.append(novel[g])
            self.indexed.update(novel[g])
        self._append(*_subset(flat, offsets, joined - n))
        self.sig, self.signed = np.concatenate([sig[:n], sig[joined]]), counts
        return found


def first_matches(
    indexed: dict[str, str], new: dict[str, str], threshold: float
) -> dict[str, tuple[str, float] | None]:
    """The novelty check of one batch on a fresh index (see NoveltyIndex.check)."""
    index = NoveltyIndex(threshold)
    index.add(indexed)
    return index.check(new)
