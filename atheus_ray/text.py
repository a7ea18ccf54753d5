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


_CODE = re.compile(r"```.*?(?:```|$)|`[^`\n]*`", re.S)  # fenced blocks (an unclosed one to the end), inline code
_IDENTIFIER = re.compile(r"[A-Za-z0-9_./{}:?=&%-]*[/{}_=][A-Za-z0-9_./{}:?=&%-]*")  # paths, URLs, snake_case, a=b
_GLOSS = re.compile(r"[（(][A-Za-z][A-Za-z .'&-]*[）)]")  # アダージョ（Adagio）: a foreign word glossed


def prose(text: str) -> str:
    """`text` without what is not prose to judge for its script: code blocks, inline code, paths, URLs and
    identifiers, and Latin glosses in brackets after a Japanese word."""
    return _GLOSS.sub(" ", _IDENTIFIER.sub(" ", _CODE.sub(" ", text)))


def letters(text: str) -> int:
    """How many letters (Unicode category L*) `text` has."""
    return sum(unicodedata.category(ch).startswith("L") for ch in text)


# ------------------------------------------------------------------------------------ refusals

# A refusal declines to do what was asked: an act of the assistant's (answer, tell, explain, help, write, ...)
# under a negative (できません, いたしかねます, しません, 控えます), an お断り, an English refusal. An apology alone is
# not one: 「申し訳ございません」 opens mails and customer replies that do the work. Neither is a negative that is
# the content (「妊娠中は服用できません」), nor a decline of one part followed by real help (「〜はお伝えできませんが、
# 安全に使うためのポイントをご説明します。…」). Calibrated on calibration/refusals.jsonl (tests/test_text.py).
_ACT = (
    r"(?:お|ご)?(?:答え|回答|伝え|案内|説明|手伝い|協力|提供|作成|教え|応え|対応|引き受け|お受け|紹介|調べ|特定|"
    r"共有|開示|手助け|力添え)"
)
_NEG = r"(?:でき(?:ません|ない|かねます)|出来(?:ません|ない)|(?:いた|致|)しかねます|(?:いた|致|)しません|られません|られない)"
DECLINE = re.compile(
    "|".join(
        [
            _ACT + r"(?:する|いたす|させていただく)?(?:こと|の)?(?:は|が|を|には|も)?" + _NEG,
            _ACT + r"(?:する|いたす)?(?:こと|の)?(?:は|を)?(?:差し)?控え(?:させていただきます|させて頂きます|ます)",
            r"お断り(?:します|いたします|致します|させていただきます)",
            r"応じ(?:られません|られない|かねます|ることはできません)",
            r"(?:は|を)(?:作成|作れ|書け|入れられ|教えられ|伝えられ|手を貸せ|引き受けられ)(?:ません|ない)",
            r"私には(?:でき|出来)(?:ません|ない)",
            r"それは(?:できない|できません|無理)",
            r"\b(?:I'm|I am) (?:sorry|afraid)\b|\bI apologi[sz]e, but\b|\bSorry, I\b|\bAs an AI\b",
            r"\bI'm (?:unable|not able) to\b",
            r"\bI (?:can(?:no|')t|cannot|won't|will not|am unable to|am not able to) "
            r"(?:help|assist|provide|do|create|write|share|give|support|comply|fulfil)",
        ]
    )
)
REFUSAL_WINDOW = 150  # a refusal declines in its first sentences (after a word of sympathy at most)
# what turns a decline into partial help: 「〜できませんが、」 or an offer of something else, then real content
_BUT = re.compile(r"\s*(?:が|けれど|けど)[、,]")
_OFFER = re.compile(
    r"代わりに|かわりに|一方|(?:ご)?紹介します|まとめます|(?:ご)?説明します|お伝えします|ご案内します|説明できます|お答えできます"
)
HELP_AFTER = 150  # characters after the decline that make it partial help rather than a refusal with a pointer


def is_refusal(text: str) -> bool:
    """Whether `text` declines what it was asked (see DECLINE): a decline in its first REFUSAL_WINDOW characters
    that is not followed by an offer and at least HELP_AFTER characters of help."""
    text = text.strip()
    found = DECLINE.search(text[:REFUSAL_WINDOW])
    if not found:
        return False
    rest = text[found.end() :]
    return not (len(rest) >= HELP_AFTER and (_BUT.match(rest) or _OFFER.search(rest[:120])))


# ------------------------------------------------------------------------------------ n-grams


def shingles(text: str, n: int = 3) -> set[str]:
    """Character n-grams of `text` with whitespace removed (the whole text if it is shorter than n)."""
    text = "".join(text.split())
    return {text[i : i + n] for i in range(len(text) - n + 1)} or {text}
