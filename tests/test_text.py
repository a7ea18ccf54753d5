import json
from pathlib import Path

from atheus_ray.text import is_refusal, ja_ratio, near_duplicate_pairs, rouge_l, shingles


def test_rouge_l_is_character_level_f_measure():
    assert rouge_l("abcd", "abcd") == 1.0
    assert rouge_l("", "abc") == 0.0
    # LCS("日本の首都は", "日本の首都を教えて") = 5 → 2*5/(6+9)
    assert abs(rouge_l("日本の首都は", "日本の首都を教えて") - 10 / 15) < 1e-9


def test_ja_ratio_counts_letters_only():
    assert ja_ratio("２０２４年に３件。") == 1.0  # full-width digits and punctuation are not letters
    assert ja_ratio("😀🎉!!") == 0.0
    assert ja_ratio("ｶﾀｶﾅ") == 1.0  # half-width katakana
    assert 0.2 < ja_ratio("Pythonでprint()を使う") < 0.35
    code = "次のコードを説明して\n```python\nfor i in range(3): print(i)\n```"
    assert ja_ratio(code) < ja_ratio("次のコードを説明して")
    assert ja_ratio("々") == 1.0


def test_refusals_in_japanese_and_english():
    refusals = [
        "申し訳ありませんが、その質問にはお答えできません。",
        "申し訳ございませんが、対応いたしかねます。",
        "そのご依頼には対応できかねます。",
        "AIアシスタントとして、私はそのような情報を提供できません。",
        "回答を差し控えます。",
        "I'm sorry, but I can't help with that.",
    ]
    for text in refusals:
        assert is_refusal(text), text
    helpful = [
        "はい、以下の手順で申請できます。",
        "結論から言うと、可能です。" + "詳しく説明します。" * 20 + "なお、電話ではお答えできません。",
        "この表現は「申し訳ない」より丁寧です。",
    ]
    for text in helpful:
        assert not is_refusal(text), text


CALIBRATION = Path(__file__).resolve().parent.parent / "calibration"


def test_refusal_detector_on_the_calibration_set(calibrate):
    rows, precision, recall = calibrate("refusals", lambda r: is_refusal(r["answer"]), "refusal")
    assert rows >= 150 and precision >= 0.95 and recall >= 0.95


def test_refusal_detector_leaves_the_seeds_business_apologies_alone():
    seeds = {}
    for path in sorted((CALIBRATION.parent / "seeds").glob("*.jsonl")):
        for line in path.read_text(encoding="utf-8").splitlines():
            seed = json.loads(line)
            seeds[seed["id"]] = seed["output"]
    flagged = {k for k, output in seeds.items() if is_refusal(output)}
    print(f"{len(flagged)} of {len(seeds)} seed answers read as refusals: {sorted(flagged)}")
    assert not flagged & {"fluency-028", "robustness-016"}  # a phone reply and a mail that apologize
    # only the perspectives where declining is the right answer hold refusals
    assert {k.rsplit("-", 1)[0] for k in flagged} <= {"safety", "privacy", "security", "fairness", "copyright"}
    assert sum(k.startswith("safety") for k in flagged) >= 15


def test_shingles_strip_whitespace_and_keep_short_texts():
    assert shingles("あい うえ") == {"あいう", "いうえ"}
    assert shingles("あ") == {"あ"}


def test_near_duplicate_pairs_all_pairs():
    texts = ["東京の観光名所を三つ教えてください", "東京の観光名所を三つ教えて下さい", "全く別の話題です"]
    pairs = near_duplicate_pairs(texts, 0.7)
    assert [(i, j) for i, j, _ in pairs] == [(0, 1)]
