import pytest

from atheus_ray.synth.filters import instruction_problem

LIMITS = {"min_chars": 8, "max_chars": 200, "min_ja_ratio": 0.6}


@pytest.mark.parametrize("instruction,input_text,reason", [
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
])  # fmt: skip
def test_each_rule(instruction, input_text, reason):
    assert instruction_problem(instruction, input_text, **LIMITS) == reason


@pytest.mark.parametrize("instruction", [
    "「ご苦労さま」と「お疲れさま」の使い分けを説明してください。",
    "次のデータを {\"名前\": 文字列, \"年齢\": 数値} の形式のJSONにしてください。",
    "Pythonでリストを逆順にする方法を二つ教えてください。",
    "２０２４年の干支は何ですか？",
])  # fmt: skip
def test_good_instructions_pass(instruction):
    assert instruction_problem(instruction, None, **LIMITS) is None
