"""Japanese-aware checks on generated instructions, shared by Self-Instruct and Evol-Instruct.

`instruction_problem` returns the reject reason of an instruction (+ input), or None when it passes:
- `too_short` / `too_long`: length in characters outside [min_chars, max_chars]
- `low_ja_ratio`: share of Japanese script among the instruction's letters under min_ja_ratio
- `needs_modality`: asks for what a text LLM cannot do (images, audio, files, web browsing)
- `truncated`: ends mid-sentence (読点, an opening bracket, a particle such as を) or leaves 「」（） unbalanced
- `template_leak`: copies the prompt's scaffolding (section headers, JSON keys, 「元の指示」...)
- `missing_input`: points to material it does not carry (「次の文章を要約して」 with no text, 「このコードを直して」
  with nothing before it): no input, and nothing after a forward reference or before a backward one.
  Calibrated on calibration/missing_input.jsonl (tests/synth/test_filters.py).
"""

from __future__ import annotations

import re

from atheus_ray.text import ja_ratio

NEEDS_MODALITY = re.compile(
    r"(画像|写真|イラスト|動画|音声|録音|添付|(この|次の|以下の)図|ファイルを(開|読|見|アップ)|URL|https?://|"
    r"ウェブ(サイト|ページ)を(見|閲覧|開)|リンク先|(ネット|インターネット|ウェブ)で(検索|調べ))"
)
SCAFFOLD_MARKERS = (
    "参考例",
    "# 条件",
    "品質評価の観点",
    '"instruction"',
    '"input"',
    '"tasks"',
    "元の指示",
    "書き換えた指示",
    "新しい指示",
    "一つ目の指示",
    "二つ目の指示",
)
# A sentence cut off mid-way: it ends on a comma, an opening bracket, or a case particle that needs more.
# A reference to material: 次の文章, 以下のコード, 下記のメール (forward), この表, 上記の内容 (backward).
_MATERIAL = (
    r"(?:文章|文|記事|コード|プログラム|関数|スクリプト|データ|表|一覧|リスト|メール|会話|対話|議事録|歌詞|詩|"
    r"レビュー|問題|英文|和文|箇条書き|手順|資料|グラフ|引用|文面|段落|メモ|例文|内容|原稿|日記|投稿|文書|"
    r"テキスト|ログ|SQL|クエリ|式|数列|単語|語句|作品|物語|小説|レシピ|質問|アンケート|結果|数値|数字|記録|条件)"
)
FORWARD_REFERENCE = re.compile(r"(?:次|以下|下記|つぎ)の" + _MATERIAL)
BACKWARD_REFERENCE = re.compile(
    r"(?:この|上の|上記の|以上の|先ほどの|さっきの|前述の|その|(?:先ほど|さっき|前に)(?:貼った|送った|渡した|書いた|挙げた)|"
    r"(?:与えられた|入力された|提示された|示された|渡された|貼り付けた|添えた))" + _MATERIAL
)
MATERIAL_CHARS = 15  # material: this many characters before a backward reference or after a colon / line break
OPEN_AT_END = ("、", "（", "(", "「", "『", "：", ":", "・", "を", "に", "が", "と", "で", "へ", "や")


def instruction_problem(
    instruction: str, input_text: str | None, min_chars: int, max_chars: int, min_ja_ratio: float
) -> str | None:
    """The reject reason for a generated instruction, or None when it passes every check."""
    text = instruction.strip()
    if len(text) < min_chars:
        return "too_short"
    if len(text) + len(input_text or "") > max_chars:
        return "too_long"
    if ja_ratio(text) < min_ja_ratio:
        return "low_ja_ratio"
    if NEEDS_MODALITY.search(text):
        return "needs_modality"
    if text.endswith(OPEN_AT_END) or text.count("「") != text.count("」") or text.count("（") != text.count("）"):
        return "truncated"
    if any(marker in text for marker in SCAFFOLD_MARKERS):
        return "template_leak"
    if not (input_text or "").strip() and lacks_material(text):
        return "missing_input"
    return None


def lacks_material(instruction: str) -> bool:
    """Whether `instruction` (with no input) refers to material it does not carry: a forward reference with
    nothing after its sentence but the request, or a backward reference with nothing before it."""
    forward = FORWARD_REFERENCE.search(instruction)
    if forward:
        after = instruction[forward.end() :]
        # material follows in quotes, or after a colon or a line break; else the sentence is all request
        quoted = re.search(r"[「『]([^」』]+)[」』]", after)
        carried = re.search(r"[：:\n]", after)
        if not quoted and (not carried or len(after[carried.end() :].strip()) < MATERIAL_CHARS):
            return True
    backward = BACKWARD_REFERENCE.search(instruction)
    return bool(backward) and len(instruction[: backward.start()].strip()) < MATERIAL_CHARS
