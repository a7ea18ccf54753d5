"""Japanese text utilities shared by seeds, synthesis and screening.

Character-level ROUGE-L: Japanese has no spaces, so word-level ROUGE (`rouge_score`) sees no tokens at all.
On characters, ROUGE-L's F-measure is 2·LCS/(len a + len b), which is exactly rapidfuzz's normalized Indel
similarity, computed in C++.
"""

from __future__ import annotations

import numpy as np
from rapidfuzz import process
from rapidfuzz.distance import Indel


def rouge_l(a: str, b: str) -> float:
    """Character-level ROUGE-L F-measure of two strings (0 when either is empty)."""
    if not a or not b:
        return 0.0
    return Indel.normalized_similarity(a, b)


def near_duplicate_pairs(texts: list[str], threshold: float) -> list[tuple[int, int, float]]:
    """All pairs (i, j, score), i < j, whose character-level ROUGE-L exceeds `threshold`.

    All pairs, in C++ on every core: right for seed sets (thousands of rows); the synthetic data set uses the
    n-gram index instead, which never compares all pairs.
    """
    if len(texts) < 2:
        return []
    scores = process.cdist(texts, texts, scorer=Indel.normalized_similarity, score_cutoff=threshold, workers=-1)
    i, j = np.nonzero(np.triu(scores, k=1) > threshold)
    return [(int(a), int(b), float(scores[a, b])) for a, b in zip(i, j)]
