"""Japanese-aware checks on generated instructions, shared by Self-Instruct and Evol-Instruct.

`instruction_problem` returns the reject reason of an instruction (+ input), or None when it passes:
- `too_short` / `too_long`: length in characters outside [min_chars, max_chars]
- `low_ja_ratio`: share of Japanese script among the instruction's letters under min_ja_ratio
- `needs_modality`: asks for what a text LLM cannot do (images, audio, files, web browsing)
- `truncated`: ends mid-sentence (読点, an opening bracket, a particle such as を) or leaves 「」（） unbalanced
- `template_leak`: copies the prompt's scaffolding (section headers, JSON keys, 「元の指示」...)
"""

from __future__ import annotations

import re

from atheus_ray.text import ja_ratio

NEEDS_MODALITY = re.compile(
    r"(画像|写真|イラスト|動画|音声|録音|添付|(この|次の|以下の)図|ファイルを(開|読|見|アップ)|URL|https?://|"
    r"ウェブ(サイト|ページ)を(見|閲覧|開)|リンク先|(ネット|インターネット|ウェブ)で(検索|調べ))"
)
SCAFFOLD_MARKERS = (
    "参考例", "# 条件", "品質評価の観点", '"instruction"', '"input"', '"tasks"', "元の指示", "書き換えた指示",
    "新しい指示", "一つ目の指示", "二つ目の指示",
)  # fmt: skip
# A sentence cut off mid-way: it ends on a comma, an opening bracket, or a case particle that needs more.
OPEN_AT_END = ("、", "（", "(", "「", "『", "：", ":", "・", "を", "に", "が", "と", "で", "へ", "や")


def instruction_problem(instruction: str, input_text: str | None, min_chars: int, max_chars: int,
                        min_ja_ratio: float) -> str | None:  # fmt: skip
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
    return None
