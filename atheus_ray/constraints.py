"""The explicit constraints a Japanese task sets on its answer, read from the instruction, and whether an answer
keeps them (screening rejects one that does not: `constraint_violated`, with the note below in `detail`).

The forms read (N in Arabic, full-width or kanji numerals):
- characters, counted without whitespace: 「N字以内」「N文字以下」「N字未満」 (at most), 「N字以上」 (at least),
  「N〜M字」「N字以上M字以内」 (a range), 「N字程度」「約N字」「N字くらい」 (0.6 to 1.4 times N)
- list items, the answer's top-level bullets or numbers: 「N項目の箇条書き」「箇条書きでN点」「案をNつ」
  「アイデアをN個」; an answer with no list where a 箇条書き or リスト is asked for breaks it too
- lines 「N行で」「N行以内」, and sentences 「N文で」「一文で」「Nつの文で」「N文以内」「N〜M文で」
- script: 「ひらがなだけで」 (no kanji, katakana or Latin letter), 「漢字を使わずに」, 「カタカナ語を使わずに」
  (no run of two katakana), outside note paragraphs (「音数：…」「※…」: `body`)
- words: 「「X」を使わずに」「「X」という言葉は使わないで」 (X nowhere), 「「X」をちょうどN回使って」,
  「「X」を必ず入れて」, 「「X」で始めて」「「X」で始まる、…」「「X」で始まるメール」 (the answer's start)
- bare answers: 「答えは算用数字のみで」 (digits only), 「「はい」か「いいえ」の一語だけで」 (one of them),
  「JSONのみ」「JSON以外は書かないで」 (one JSON value, a ```json fence around it allowed)
- per item: 「各項目は20字以内」「それぞれ30字以内」「各ステップは一文で」 bound each top-level list item

Only what reads without doubt is checked. A constraint is skipped when its sentence (the text before it since
the last 「。」) scopes it to a part or (but for the per-item limits above) to each item
(「各」「それぞれ」「ずつ」「Qは」「見出しは」「には」 ...), character limits are skipped when the task names two of them or excludes a
part (「件名を除く」), and everything else (style, meter, content) is left to the tagger.
"""

from __future__ import annotations

import json
import re
import unicodedata
from dataclasses import dataclass, replace

NUM = r"([0-9０-９]+|[一二三四五六七八九十百]+)"
KANJI_DIGITS = {c: i for i, c in enumerate("〇一二三四五六七八九")}
# words that scope a constraint to a part or to each item: such a constraint is not checked on the whole answer
SCOPED = re.compile(
    r"各|それぞれ|ずつ|ごと|につき|一つ一つ|[QＱAＡ][.．]?は|見出し|タイトル|件名|本文|署名|"
    r"1行目以外|[0-9０-９一二三四五]+[文行句番]目|最初の|最後の|には|では|文が|項目は|ステップは|下は"
)
EACH = re.compile(r"各|それぞれ")  # within a few characters before a limit of characters or sentences: per item
SENTENCE_END = re.compile(r"[。！？!?\n]")

ITEM = re.compile(
    r"^(?:[-*+・•●○◦▪■□◆◇▶︎★☆]|[0-9０-９]{1,2}\s*[.)．、）:：]|[①-⑳]|[（(][0-9０-９]{1,2}[)）]|"
    r"#{1,4}\s*[0-9０-９]{1,2}[.)．]?)\s*\S"
)
ITEM_MARK = re.compile(ITEM.pattern.removesuffix(r"\s*\S") + r"\s*")
TRAILING_NOTE = re.compile(r"\s*[（(][^（()）]*[）)]\s*$")  # 「…（19字）」: an item's note on itself
KATAKANA_RUN = re.compile(r"[ァ-ヺ][ァ-ヺー]+")
LATIN = re.compile(r"[A-Za-zＡ-Ｚａ-ｚ]")
KANJI = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff々〆]")
QUOTED = re.compile(r"[「『]([^」』]*)[」』]")


def number(text: str) -> int:
    """An Arabic, full-width or kanji numeral (up to 999) as an int."""
    text = unicodedata.normalize("NFKC", text)
    if text.isdigit():
        return int(text)
    total, current = 0, 0
    for char in text:
        if char in KANJI_DIGITS:
            current = KANJI_DIGITS[char]
        elif char in "十百":
            total += (current or 1) * (10 if char == "十" else 100)
            current = 0
    return total + current


@dataclass(frozen=True)
class Constraint:
    kind: str
    phrase: str  # the words of the task that set it
    low: int | None = None  # counts: the least allowed; words: the word is in `word`
    high: int | None = None
    word: str | None = None
    per_item: bool = False  # bounds each top-level list item (「各項目は20字以内」「それぞれ一文で」)

    def broken_by(self, answer: str) -> str | None:
        """A short note saying how the answer breaks this constraint, or None when it keeps it."""
        measured = self.measure(answer)
        if self.kind in KEPT:
            return None if measured else f"「{self.phrase}」"
        if measured is None or _within(measured, self.low, self.high):
            return None
        unit = {"chars": "字", "items": "項目", "lines": "行", "sentences": "文", "count": "回"}[self.kind]
        return f"「{self.phrase}」: {'an item of ' if self.per_item else ''}{measured}{unit}"

    def measure(self, answer: str) -> int | None:
        """The count this constraint bounds (None: the answer has no such thing to count), or for a yes/no
        constraint 1 when kept and 0 when broken."""
        text = answer.strip()
        if self.per_item:
            items = [
                TRAILING_NOTE.sub("", ITEM_MARK.sub("", line, count=1))
                for line in text.splitlines()
                if ITEM.match(line)
            ]
            counts = [len(re.sub(r"\s", "", i)) if self.kind == "chars" else sentences(i) for i in items]
            if len(counts) < 2:
                return None
            return next((c for c in counts if not _within(c, self.low, self.high)), counts[0])  # the first breach
        if self.kind == "chars":
            return len(re.sub(r"\s", "", text))
        if self.kind == "items":
            items = sum(bool(ITEM.match(line)) for line in text.splitlines())
            return items if items >= 2 or self.word == "list" else None
        if self.kind == "lines":
            return len([line for line in text.splitlines() if line.strip() and not line.startswith("```")])
        if self.kind == "sentences":
            return sentences(text)
        if self.kind == "count":
            return text.count(self.word)
        return int(KEPT[self.kind](text, self.word))


def _within(value: int, low: int | None, high: int | None) -> bool:
    return (low is None or value >= low) and (high is None or value <= high)


def sentences(text: str) -> int:
    """Sentences: quoted speech taken as part of its sentence, then runs ended by 。！？!? or a line's end."""
    text = QUOTED.sub("「」", text)
    parts = re.split(r"[。！？!?]+[」』）)]*|\n+", text)
    return sum(bool(re.search(r"\w", part)) for part in parts)


def _json_only(text: str, _) -> bool:
    fenced = re.fullmatch(r"```(?:json)?\s*\n(.*?)\n?```", text, re.DOTALL)
    try:
        json.loads(fenced.group(1) if fenced else text)
    except ValueError:
        return False
    return True


NOTE_BLOCK = re.compile(r"^(?:[※＊*]|注|【[^】]{1,12}】|\S{1,6}[:：])")


def body(text: str) -> str:
    """The answer without its note blocks (a paragraph opening with 「音数：」「解説：」「※」 ...): what a script
    constraint binds. A note on the answer (which mora were counted, what a word means) is not the answer."""
    return "\n\n".join(b for b in re.split(r"\n\s*\n", text) if not NOTE_BLOCK.match(b.strip()))


KEPT = {
    "hiragana": lambda t, _: not re.search(f"{KANJI.pattern}|[ァ-ヺ]|{LATIN.pattern}", body(t)),
    "no_kanji": lambda t, _: not KANJI.search(body(t)),
    "no_katakana_words": lambda t, _: not KATAKANA_RUN.search(body(t)),
    "forbidden": lambda t, w: w not in t,
    "include": lambda t, w: w in t,
    "starts_with": lambda t, w: t.lstrip("*# ").startswith(w),
    "choice": lambda t, w: t.strip().strip("。.「」『』") in w.split("\x1f"),
    "digits": lambda t, _: bool(re.fullmatch(r"[0-9０-９][0-9０-９,，.．]*", t)),
    "json": _json_only,
}

DOCUMENTS = r"(?:メール|手紙|挨拶状|文章|文面|案内|返信|回答|記事|お知らせ|投稿|スピーチ|原稿)"
LIST_WORDS = r"(?:箇条書き|番号付き(?:の)?リスト|リスト)"
COUNTERS = r"(?:つ|個|点|項目|案|ステップ|パターン|種類)"
PATTERNS: list[tuple[str, re.Pattern]] = [
    ("chars_range", re.compile(NUM + r"\s*(?:字|文字)以上\s*[、,]?\s*" + NUM + r"\s*(?:字|文字)(?:以内|以下)")),
    ("chars_range", re.compile(NUM + r"\s*(?:字|文字)?\s*[〜~～\-－]\s*" + NUM + r"\s*(?:字|文字)")),
    ("chars_max", re.compile(NUM + r"\s*(?:字|文字)(以内|以下|まで|未満)")),
    ("chars_min", re.compile(NUM + r"\s*(?:字|文字)以上")),
    (
        "chars_about",
        re.compile(r"約\s*" + NUM + r"\s*(?:字|文字)|" + NUM + r"\s*(?:字|文字)(?:程度|前後|くらい|ぐらい|ほど)"),
    ),
    ("items_list", re.compile(r"(?:ちょうど)?" + NUM + r"\s*" + COUNTERS + r"\s*の?" + LIST_WORDS)),
    ("items_list", re.compile(LIST_WORDS + r"(?:で|に|にして)?[、,]?\s*(?:ちょうど)?" + NUM + r"\s*" + COUNTERS)),
    (
        "items",
        re.compile(r"を\s*(?:ちょうど)?" + NUM + r"\s*(?:つ|個|案|点|パターン)(?!の|ずつ|以上|以内|程度|ほど|くらい)"),
    ),
    ("items", re.compile(NUM + r"\s*(?:つ|点)の(?:ポイント|要点)に")),
    ("lines", re.compile(NUM + r"\s*行(以内|以下|で|に収め|におさめ)")),
    ("sentences", re.compile(NUM + r"\s*[〜~～\-－]\s*" + NUM + r"\s*(?:つの)?文(?:で|に|以内)")),
    ("sentences", re.compile(NUM + r"\s*(?:つの)?文(以内|以下|で|に(?:まとめ|収め|分け))")),
    ("hiragana", re.compile(r"(?<!と)ひらがな(?:だけ|のみ)(?:で|を使)")),
    ("no_kanji", re.compile(r"漢字(?:を|は)(?:一切|いっさい|一つも|ひとつも)?使わ(?:ず|ない)")),
    ("no_kanji", re.compile(r"ひらがなとカタカナ(?:だけ|のみ)")),
    ("no_katakana_words", re.compile(r"カタカナ語?(?:を|は)(?:一切|いっさい|一つも|ひとつも)?使わ(?:ず|ない)")),
    (
        "forbidden",
        re.compile(
            r"((?:[「『][^」』]{1,20}[」』]、?)+)(?:という(?:言葉|語|単語|表現|文字|字)|の(?:文字|字))?"
            r"(?:は|を|も)(?:一度も|一切|いっさい|絶対に)?使わ(?:ず|ない|ないで)"
        ),
    ),
    (
        "count",
        re.compile(r"[「『]([^」』]{1,20})[」』](?:という(?:言葉|語|単語|表現))?を\s*(ちょうど)?" + NUM + r"\s*回"),
    ),
    (
        "include",
        re.compile(r"[「『]([^」』]{1,20})[」』](?:という(?:言葉|語|単語|表現|文字|字))?を必ず(?:入れ|含め|使)"),
    ),
    ("starts_with", re.compile(r"[「『]([^」』]{1,30})[」』]で始め(?=て|る(?!と|場合|の)|ること|なさい|、)")),
    ("starts_with", re.compile(r"[「『]([^」』]{1,30})[」』]で始まる(?=、|" + DOCUMENTS + ")")),
    (
        "choice",
        re.compile(
            r"((?:[「『][^」』]{1,20}[」』](?:か|または|、|・|と)?){2,})の?(?:一語|一つ|ひとつ|いずれか|どちらか|どれか)"
            r"(?:だけ|のみ)で?(?:答え|回答|出力|返)"
        ),
    ),
    (
        "digits",
        re.compile(r"(?:答え|回答|出力)は?(?:算用)?数字(?:のみ|だけ)|(?:算用)?数字(?:のみ|だけ)で(?:答え|回答|出力)"),
    ),
    ("json", re.compile(r"JSON(?:形式)?(?:の)?(?:のみ|だけ)(?:を|で|に)|JSON以外(?:は|の)?(?:何も|文章は|文字は)?")),
]


def find(instruction: str) -> list[Constraint]:
    """The constraints the instruction sets on the whole answer, in the order they are stated."""
    found: list[tuple[int, Constraint]] = []
    taken: list[range] = []
    for kind, pattern in PATTERNS:
        for m in pattern.finditer(instruction):
            span = range(m.start(), m.end())
            if any(span.start < t.stop and t.start < span.stop for t in taken):
                continue  # a longer form read this phrase already (a range before its bounds)
            taken.append(span)
            sentence = QUOTED.sub(
                "「」", SENTENCE_END.split(instruction[: m.start()])[-1]
            )  # quoted words scope nothing
            each = kind in ("chars_max", "sentences") and EACH.search(sentence[-15:])
            if (SCOPED.search(sentence) and not each) or SCOPED.search(QUOTED.sub("「」", m.group(0))):
                continue
            found.extend((m.start(), replace(c, per_item=bool(each))) for c in _constraints(kind, m))
    chars = [c for _, c in found if c.kind == "chars" and not c.per_item]
    if len(chars) > 1 or (chars and re.search(r"除く|除いて|を除き", instruction)):
        found = [(p, c) for p, c in found if c.kind != "chars" or c.per_item]
    return [c for _, c in sorted(found, key=lambda pc: pc[0])]


def _constraints(kind: str, m: re.Match) -> list[Constraint]:
    phrase = m.group(0)
    nums = [number(g) for g in m.groups() if g and re.fullmatch(NUM, g)]
    if kind == "chars_range":
        return [Constraint("chars", phrase, low=min(nums), high=max(nums))]
    if kind == "chars_max":
        return [Constraint("chars", phrase, high=nums[0] - (m.group(2) == "未満"))]
    if kind == "chars_min":
        return [Constraint("chars", phrase, low=nums[0])]
    if kind == "chars_about":
        return [Constraint("chars", phrase, low=int(nums[0] * 0.6), high=int(nums[0] * 1.4 + 0.5))]
    if kind == "items" and nums[0] < 2:
        return []  # 「方法を一つ示して」 asks for one thing, which may come in steps
    if kind in ("items", "items_list"):
        return [Constraint("items", phrase, low=nums[0], high=nums[0], word="list" if kind == "items_list" else None)]
    if kind in ("lines", "sentences"):
        if len(nums) == 2:
            return [Constraint(kind, phrase, low=min(nums), high=max(nums))]
        at_most = bool(re.search(r"以内|以下", phrase))
        return [Constraint(kind, phrase, low=None if at_most else nums[0], high=nums[0])]
    if kind == "forbidden":
        return [Constraint("forbidden", phrase, word=w) for w in QUOTED.findall(m.group(1)) if w]
    if kind == "count":
        return [Constraint("count", phrase, low=nums[0], high=nums[0], word=m.group(1))]
    if kind == "choice":
        return [Constraint("choice", phrase, word="\x1f".join(QUOTED.findall(m.group(1))))]
    if kind in ("include", "starts_with"):
        return [Constraint(kind, phrase, word=m.group(1))]
    return [Constraint(kind, phrase)]


def violation(instruction: str, answer: str) -> str | None:
    """How the answer breaks the first constraint of the instruction it does not keep (see module docstring),
    or None."""
    for constraint in find(instruction):
        note = constraint.broken_by(answer)
        if note:
            return note
    return None
