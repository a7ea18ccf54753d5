import json
from pathlib import Path

import pytest

from atheus_ray.synth.filters import instruction_problem, lacks_material

REPO = Path(__file__).resolve().parent.parent.parent

LIMITS = {"min_chars": 8, "max_chars": 200, "min_ja_ratio": 0.6}


@pytest.mark.parametrize(
    "instruction,input_text,reason",
    [
        ("短い", None, "too_short"),
        ("次の文章を要約してください。", "あ" * 300, "too_long"),
        ("Please summarize the following text.", None, "low_ja_ratio"),
        ("この画像に写っている動物の名前を答えてください。", None, "needs_modality"),
        ("添付したファイルを読んで要点をまとめてください。", None, "needs_modality"),
        ("次のURLのページを要約してください。", None, "needs_modality"),
        ("インターネットで検索して最新の株価を教えてください。", None, "needs_modality"),
        ("日本の三大祭りについて、それぞれの特徴と、", None, "truncated"),
        ("「おもてなし」の意味を説明し、使用例を", None, "truncated"),
        ("参考例のように、新しいタスクを作ってください。", None, "template_leak"),
        ("書き換えた指示：取引先への謝罪メールを敬語で書いてください。", None, "template_leak"),
        ("次の文章を、小学生にも分かるように三文で要約してください。", None, "missing_input"),
        ("このコードを高速化してください。", "", "missing_input"),
    ],
)
def test_each_rule(instruction, input_text, reason):
    assert instruction_problem(instruction, input_text, **LIMITS) == reason


@pytest.mark.parametrize(
    "instruction",
    [
        "「ご苦労さま」と「お疲れさま」の使い分けを説明してください。",
        '次のデータを {"名前": 文字列, "年齢": 数値} の形式のJSONにしてください。',
        "Pythonでリストを逆順にする方法を二つ教えてください。",
        "２０２４年の干支は何ですか？",
    ],
)
def test_good_instructions_pass(instruction):
    assert instruction_problem(instruction, None, **LIMITS) is None


@pytest.mark.parametrize(
    "instruction,input_text",
    [
        ("次の文章を要約してください。", "梅雨の時期は湿度が高く、洗濯物が乾きにくい。部屋干しには除湿機が役に立つ。"),
        ("次の文を英訳してください：「駅はどこですか」", None),
        ("次の問題を解いてください。\n問題：ある数に3を足して2倍すると14になります。ある数はいくつですか。", None),
        ("4月の売上は120万円、5月は150万円でした。このデータから成長率を求めてください。", None),
        ("Pythonでリストを逆順にするコードを書いてください。", None),
    ],
)
def test_material_given_or_not_needed_passes(instruction, input_text):
    assert instruction_problem(instruction, input_text, **LIMITS) is None


def test_missing_input_on_the_calibration_set(calibrate):
    def judge(row: dict) -> bool:
        return not (row["input"] or "").strip() and lacks_material(row["instruction"])

    rows, precision, recall = calibrate("missing_input", judge, "missing")
    assert rows >= 100 and precision >= 0.95 and recall >= 0.95


def test_no_seed_lacks_its_material():
    seeds = [
        json.loads(line)
        for path in sorted((REPO / "seeds").glob("*.jsonl"))
        for line in path.read_text("utf-8").splitlines()
    ]
    assert len(seeds) > 400
    assert [s["id"] for s in seeds if not (s.get("input") or "").strip() and lacks_material(s["instruction"])] == []
