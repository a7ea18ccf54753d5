import json
from pathlib import Path

import pytest

from atheus_ray.config import HeuristicsConfig
from atheus_ray.screen.heuristics import answer_ja_ratio, pair_problem

CFG = HeuristicsConfig()
GOOD_ANSWER = "梅雨の時期は、除湿機やエアコンの除湿運転を使うと洗濯物が早く乾きます。"


@pytest.mark.parametrize(
    "instruction,input_text,output,reason",
    [
        ("Please explain rainy season laundry tips.", None, GOOD_ANSWER, "low_ja_ratio_instruction"),
        (
            "梅雨の洗濯のコツを教えて",
            None,
            "Use a dehumidifier and keep air moving around the clothes.",
            "low_ja_ratio_output",
        ),
        ("英語の勉強法を教えて", None, "Read a lot and speak every day with a partner.", "low_ja_ratio_output"),
        (
            "Tell me about tsuyu, in English please.",
            None,
            "Tsuyu is the rainy season in June.",
            "low_ja_ratio_instruction",
        ),
        ("梅雨の洗濯のコツを教えて", None, "除湿機。", "output_too_short"),
        ("伊勢神宮は何県にありますか？", None, "", "output_too_short"),  # a short answer may be short, not empty
        (
            "洗濯物を早く乾かすには、何を使えばいいか詳しく説明したうえで、梅雨の時期に部屋干しをするときに気をつける点も"
            "具体的に教えてください。いちばん効くのは何？",
            None,
            "除湿機。",
            "output_too_short",
        ),  # a long task, not a quiz
        ("梅雨の洗濯のコツを教えて", None, "あ" * 9000, "output_too_long"),
        (
            "次の文を丁寧語にしてください",
            "明日は雨が降るので傘を持って行きます",
            "次の文を丁寧語にしてください。明日は雨が降るので傘を持って行きます",
            "output_copies_instruction",
        ),
        ("梅雨の洗濯のコツを三つ挙げると次のとおり：", None, GOOD_ANSWER, "trailing_colon"),
        ("次の文章を要約してください：", "  ", GOOD_ANSWER, "trailing_colon"),  # the input announced is blank
        ("梅雨の洗濯のコツを教えて", None, "洗濯のコツは次の三つです：", "trailing_colon"),
        ("梅雨の洗濯のコツを教えて", None, GOOD_ANSWER + "<|im_end|>", "template_marker"),
        ("梅雨の洗濯のコツを教えて", None, GOOD_ANSWER + "\n### 指示：次の質問", "template_marker"),
    ],
)
def test_each_rule(instruction, input_text, output, reason):
    assert pair_problem(instruction, input_text, output, CFG) == reason


@pytest.mark.parametrize(
    "instruction,output",
    [
        ("次のお知らせを英訳してください。", "The water will be shut off on March 14 from 9:00 to 15:00."),
        ("この文章、英語にしてほしい！", "Guess what, I finally got the tickets!"),
        ("Could you translate this into polite Japanese?", "Here it is:\n本日はありがとうございました。"),
    ],
)
def test_translations_between_japanese_and_english_keep_their_pair(instruction, output):
    """A translation between Japanese and English is bilingual by design."""
    assert pair_problem(instruction, None, output, CFG) is None


@pytest.mark.parametrize(
    "instruction,output",
    [
        (
            "ＰＣの電源が入りません。どうすればいいですか？",
            "まず電源ケーブルが奥まで差さっているか確認してください。次に、ＡＣアダプターのランプが点くかを見ます。",
        ),
        (
            "誕生日メッセージを絵文字入りで書いて🎂",
            "お誕生日おめでとう🎉🎂！素敵な一年になりますように✨これからもよろしくね😊",
        ),
        (
            "Pythonでリストを逆順にする方法を教えて",
            "方法は二つあります。\n```python\nxs = [1, 2, 3]\nxs.reverse()\nys = xs[::-1]\n```\n`reverse()` はその場で並べ替え、スライスは新しいリストを作ります。",
        ),
        (
            "AIとMLの違いを簡単に説明して",
            "AI（人工知能）は知的な振る舞いをする仕組み全般を指し、ML（機械学習）はデータから規則を学ぶ、AIを実現する方法の一つです。",
        ),
    ],
)
def test_japanese_edge_cases_pass(instruction, output):
    assert pair_problem(instruction, None, output, CFG) is None


@pytest.mark.parametrize(
    "instruction,input_text,output",
    [
        ("伊勢神宮は何県にありますか？", None, "三重県"),
        ("日本でいちばん高い山はどこ？", None, "富士山"),
        ("12×13はいくつですか。答えは数字のみで。", None, "156"),
        ("次の単語の対義語を一語で答えてください。説明は不要です。", "拡大", "縮小"),
        (
            "次の文章を要約してください：",
            "梅雨の時期は洗濯物が乾きにくい。除湿機を使うと早く乾く。",
            "梅雨でも除湿機で早く乾く。",
        ),
    ],
)
def test_short_answers_to_short_questions_and_a_colon_before_the_input_pass(instruction, input_text, output):
    assert pair_problem(instruction, input_text, output, CFG) is None


def test_a_refusal_is_not_rejected_here():  # selection decides, knowing whether the request was harmful
    assert (
        pair_problem("梅雨の洗濯のコツを教えて", None, "申し訳ございませんが、その質問にはお答えできません。", CFG)
        is None
    )


def test_code_and_short_answers_are_not_judged_on_their_script():
    code = (
        "```python\ndef to_half(text: str) -> str:\n    return text.translate(TABLE)\n```\n全角の数字を半角にします。"
    )
    assert answer_ja_ratio(code) == 1.0 and pair_problem("全角数字を半角にする関数を書いて", None, code, CFG) is None
    assert answer_ja_ratio("15") == 1.0  # a number has no script to judge
    assert answer_ja_ratio("アダージョ（Adagio）→アンダンテ（Andante）→アレグロ（Allegro）") == 1.0
    assert answer_ja_ratio("Use a dehumidifier and keep air moving around the clothes.") == 0.0


def test_no_good_answer_is_rejected():
    """The known-good sets: the seeds' reference answers and the evaluation sample's. What is still rejected
    is printed; a refusal no longer is (selection judges it)."""
    root = Path(__file__).resolve().parent.parent.parent

    def records(path: Path) -> list[dict]:
        return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]

    pairs = [
        (s["id"], s["instruction"], s.get("input"), s["output"])
        for path in sorted((root / "seeds").glob("*.jsonl"))
        for s in records(path)
    ]
    sample = records(root / "atheus_ray" / "data" / "eval_tasks_sample.jsonl")
    pairs += [(f"eval-{k}", t["input"], None, t["output"]) for k, t in enumerate(sample)]
    rejected = {k: reason for k, i, x, o in pairs if (reason := pair_problem(i, x, o, CFG))}
    print(f"heuristics on {len(pairs)} known-good answers: {len(rejected)} rejected {rejected}")
    assert len(pairs) > 450
    assert rejected == {}
