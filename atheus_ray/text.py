"""Japanese text utilities shared by seeds, synthesis and screening: character-level ROUGE-L, the share of
Japanese script, refusal patterns, and character n-grams. Near-duplicate search at scale: atheus_ray.neardup.

Character-level ROUGE-L: Japanese has no spaces, so word-level ROUGE (`rouge_score`) sees no tokens at all.
On characters, ROUGE-L's F-measure is 2·LCS/(len a + len b), which is exactly rapidfuzz's normalized Indel
similarity, computed in C++.
"""

from __future__ import annotations

import re
import unicodedata

import numpy as np
from rapidfuzz import process
from rapidfuzz.distance import Indel


LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def lone_surrogate(text: str | None) -> str | None:
    """The first lone UTF-16 surrogate in `text` (as `\\udXXX`), or None. JSON from a model may escape one
    (`"\\udd0f"`), which json.loads accepts but no UTF-8 encoder, Parquet writer or hash can take."""
    found = LONE_SURROGATE.search(text or "")
    return found.group().encode("unicode_escape").decode() if found else None


def printable(text: str) -> str:
    """`text` with lone surrogates replaced by U+FFFD, so that a rejected row can still be written."""
    return LONE_SURROGATE.sub("\ufffd", text)


def rouge_l(a: str, b: str) -> float:
    """Character-level ROUGE-L F-measure of two strings (0 when either is empty)."""
    if not a or not b:
        return 0.0
    return Indel.normalized_similarity(a, b)


def near_duplicate_pairs(texts: list[str], threshold: float) -> list[tuple[int, int, float]]:
    """All pairs (i, j, score), i < j, whose character-level ROUGE-L exceeds `threshold`.

    All pairs, in C++ on every core: right for seed sets (thousands of rows); the synthetic data set uses
    atheus_ray.neardup instead, which never compares all pairs.
    """
    if len(texts) < 2:
        return []
    scores = process.cdist(texts, texts, scorer=Indel.normalized_similarity, score_cutoff=threshold, workers=-1)
    i, j = np.nonzero(np.triu(scores, k=1) > threshold)
    return [(int(a), int(b), float(scores[a, b])) for a, b in zip(i, j)]


# ------------------------------------------------------------------------------------ Japanese script share


def _is_japanese(ch: str) -> bool:
    o = ord(ch)
    return (
        0x3040 <= o <= 0x30FF  # hiragana, katakana
        or 0x3400 <= o <= 0x4DBF  # CJK extension A
        or 0x4E00 <= o <= 0x9FFF  # CJK unified ideographs
        or 0xF900 <= o <= 0xFAFF  # CJK compatibility ideographs
        or 0xFF66 <= o <= 0xFF9F  # half-width katakana
        or o == 0x3005  # 々
    )


def ja_ratio(text: str) -> float:
    """Share of Japanese script (kana, kanji) among the letters of `text`.

    Only letters count (Unicode category L*): digits, punctuation, symbols, emoji and spaces are ignored,
    so 「２０２４年に３件」 is all Japanese and a code block lowers the share only by its identifiers.
    Text with no letters at all gives 0.
    """
    letters = [ch for ch in text if unicodedata.category(ch).startswith("L")]
    if not letters:
        return 0.0
    return sum(map(_is_japanese, letters)) / len(letters)


# ------------------------------------------------------------------------------------ refusals

# Phrases that open a refusal in Japanese (and the English ones small models fall back to). Matched in the
# first REFUSAL_WINDOW characters only: a helpful answer may say 「お答えできません」 about something later on.
REFUSAL_PATTERNS = re.compile(
    "|".join([
        r"申し訳(あり|ござい)ません(が|。)",
        r"(お答え|回答|お手伝い|対応|協力|提供)(することは|は)?(でき|致し|いたし)(ません|かねます)",
        r"(お答え|回答|ご案内|ご協力|ご提供)(でき|し)かねます",
        r"(お答え|回答)を(控え|差し控え)",
        r"(AI|ＡＩ|人工知能)(アシスタント|言語モデル)?として(、)?(私は|お答え|回答|そのような)",
        r"(その|この|そのような|こうした)(ご)?(質問|依頼|要求|リクエスト)(に|には)(は)?(お答え|応じ|回答|対応)(でき|いたしかね|しかね)",
        r"(I'm|I am) sorry|I can(no|')t (help|assist|provide)|As an AI",
    ])  # fmt: skip
)
REFUSAL_WINDOW = 120


def is_refusal(text: str) -> bool:
    """Whether `text` opens with a refusal (Japanese or English patterns in its first characters)."""
    return bool(REFUSAL_PATTERNS.search(text[:REFUSAL_WINDOW]))


# ------------------------------------------------------------------------------------ n-grams


def shingles(text: str, n: int = 3) -> set[str]:
    """Character n-grams of `text` with whitespace removed (the whole text if it is shorter than n)."""
    text = "".join(text.split())
    return {text[i : i + n] for i in range(len(text) - n + 1)} or {text}
