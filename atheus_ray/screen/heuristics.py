"""Japanese-aware heuristics on instruction-answer pairs.

Reads:  `instruction`, `input`, and the answer (`response` in synthesis output, `output` in other data sets).
Writes: `ja_ratio` (share of Japanese script among the letters of the answer's prose: `answer_ja_ratio`),
        `refusal` (the answer declines what was asked: atheus_ray.text.is_refusal; an apology alone is not one;
        not a reject reason here: selection drops a refusal of a safe request, `over_refusal`, and keeps a
        careful refusal of a harmful one) and, for a row that fails, the reject reason from `pair_problem`:
- `low_ja_ratio_instruction` / `low_ja_ratio_output`: too little Japanese script; neither is judged for a
  translation between Japanese and English (英訳, 英語にして, into Japanese: `bilingual`)
- `output_too_short` / `output_too_long`: answer length in characters outside the bounds; the floor is waived
  (an empty answer still fails) where the task asks for a bare answer (「数字のみで」, 「一語で」, 「説明は不要」)
  or is a short direct question (「伊勢神宮は何県？」), which a word or a number answers (`asks_short_answer`)
- `output_copies_instruction`: the answer is (nearly) the instruction and input again
- `trailing_colon`: the answer ends with a colon, or the instruction does with no input after it: announced
  content that never came
- `template_marker`: leftover chat-template or prompt markers (`<|im_start|>`, `### 応答:`, `[INST]` ...)
Screening's heuristics stage then rejects a pair that passes these but breaks an explicit constraint of its
instruction (「30字以内」, 「3項目の箇条書き」, 「ひらがなだけで」 ...: atheus_ray.constraints) as
`constraint_violated`, the constraint and what the answer has in `detail` (「30字以内」: 44字).
"""

from __future__ import annotations

import re

from atheus_ray.config import HeuristicsConfig
from atheus_ray.rows import task_text
from atheus_ray.text import ja_ratio, letters, prose, rouge_l

TEMPLATE_MARKERS = re.compile(
    r"<\|[a-z_]+\|>|\[/?INST\]|<</?SYS>>|^#{2,3} ?(指示|応答|入力|Instruction|Response|Input)\s*[:：]|"
    r"^(USER|ASSISTANT|ユーザー|アシスタント)\s*[:：]",
    re.MULTILINE,
)


BARE_ANSWER = re.compile(
    r"(数字|数値|算用数字|漢数字|記号|単語|一語|一言|名前|名称|答え|結果|番号|語句)(のみ|だけ)|"
    r"(のみ|だけ)(で|を)(答え|回答|出力|返|書|示)|説明(は|を)?(不要|なし|付けず|つけず|加えず|せず)|"
    r"はい(か|／|/|・)いいえ"
)
DIRECT_QUESTION = re.compile(r"(何|いくつ|いくら|誰|どこ|どれ|どちら|どっち|いつ)[^。？?]{0,12}[？?]\s*$")
SHORT_QUESTION_CHARS = 60  # a direct question up to this long may be answered by a word


def asks_short_answer(instruction: str) -> bool:
    """The instruction asks for a bare answer, or is a short direct question that a word or a number answers."""
    text = instruction.strip()
    return bool(BARE_ANSWER.search(text)) or (len(text) <= SHORT_QUESTION_CHARS and bool(DIRECT_QUESTION.search(text)))


JUDGED_LETTERS = 10  # an answer with fewer letters of prose (a number, a formula, code alone) has no script to judge


def answer_ja_ratio(output: str) -> float:
    """The share of Japanese script in the answer's prose (atheus_ray.text.prose: code, paths and glosses left
    out); 1.0 for an answer with fewer than JUDGED_LETTERS letters of prose."""
    text = prose(output)
    return ja_ratio(text) if letters(text) >= JUDGED_LETTERS else 1.0


# A translation between Japanese and English: its pair is bilingual by design (英訳, 英語にして, into Japanese).
BILINGUAL = re.compile(r"英訳|和訳|英語(に|へ|版)|英語[^。\n]*訳|(into|in)( \w+){0,2} Japanese", re.IGNORECASE)


def bilingual(instruction: str) -> bool:
    """The task asks for a translation between Japanese and English, so one side of the pair is English."""
    return bool(BILINGUAL.search(instruction))


def pair_problem(instruction: str, input_text: str | None, output: str, cfg: HeuristicsConfig) -> str | None:
    """The reject reason of an instruction-answer pair, or None when it passes every heuristic."""
    output = output.strip()
    if not bilingual(instruction):
        if ja_ratio(prose(instruction)) < cfg.min_ja_ratio_instruction:
            return "low_ja_ratio_instruction"
        if answer_ja_ratio(output) < cfg.min_ja_ratio_output:
            return "low_ja_ratio_output"
    if not output or (len(output) < cfg.min_output_chars and not asks_short_answer(instruction)):
        return "output_too_short"
    if len(output) > cfg.max_output_chars:
        return "output_too_long"
    if rouge_l(task_text(instruction, input_text).strip(), output) > cfg.copy_threshold:
        return "output_copies_instruction"
    if output.endswith((":", "：")) or (instruction.rstrip().endswith((":", "：")) and not (input_text or "").strip()):
        return "trailing_colon"
    if TEMPLATE_MARKERS.search(output) or TEMPLATE_MARKERS.search(instruction):
        return "template_marker"
    return None
