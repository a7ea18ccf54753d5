import json
from pathlib import Path

import pytest

from atheus_ray.constraints import find, number, sentences, violation

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize(
    "instruction,answer,note",
    [
        (
            "光合成とは何か、30字以内で説明してください。",
            "植物が光のエネルギーを使って、水と二酸化炭素から糖を作り、酸素を出す働きのことです。",
            "「30字以内」: 42字",
        ),
        (
            "新商品の紹介文を100字以上150字以内で書いてください。",
            "甘さ控えめの抹茶プリンです。",
            "「100字以上150字以内」: 14字",
        ),
        ("防災の日の由来を200字程度で説明して。", "関東大震災の日です。", "「200字程度」: 10字"),
        (
            "在宅勤務の利点をちょうど3項目の箇条書きで挙げてください。",
            "・通勤がない\n・集中できる\n・家事と両立できる\n・服装が自由",
            "「ちょうど3項目の箇条書き」: 4項目",
        ),
        (
            "在宅勤務の利点を3項目の箇条書きで挙げてください。",
            "通勤がなく、集中でき、家事とも両立できます。",
            "「3項目の箇条書き」: 0項目",
        ),
        ("商品名の案を5つください。", "1. 豆乳ぷりん\n2. とうふわっふる\n3. まめまめタルト", "「を5つ」: 3項目"),
        ("今日の天気を一文で伝えて。", "今日は晴れです。午後から雨が降ります。", "「一文で」: 2文"),
        ("次の文章を3行以内で要約してください。", "一行目\n二行目\n三行目\n四行目", "「3行以内」: 4行"),
        ("ひらがなだけで自己紹介を書いて。", "わたしはタナカです。", "「ひらがなだけで」"),
        ("漢字を使わずに、にじのでき方を説明して。", "にじは太陽の光が雨つぶで分かれてできるよ。", "「漢字を使わず」"),
        (
            "カタカナ語を一切使わずに、クラウドを説明して。",
            "インターネットの向こうの倉庫に写真を預けることです。",
            "「カタカナ語を一切使わず」",
        ),
        (
            "「夏」という言葉は使わないで俳句を作って。",
            "夏の夜　風鈴の音　ひびきけり",
            "「「夏」という言葉は使わない」",
        ),
        (
            "「持続可能」という語をちょうど2回使って記事を書いて。",
            "持続可能な社会のために、食品ロスを減らそう。",
            "「「持続可能」という語をちょうど2回」: 1回",
        ),
        (
            "回答は必ず「結論：」で始めてください。",
            "確定申告が必要なのは、副業の所得が20万円を超えるときです。",
            "「「結論：」で始め」",
        ),
        ("答えは算用数字のみで出力してください。", "15個です。", "「答えは算用数字のみ」"),
        ("分類結果はJSONのみを出力してください。", '分類結果は次のとおりです。{"1": "解約"}', "「JSONのみを」"),
        (
            "キャッチコピーを5案、それぞれ20字以内で。",
            "1. 乗れば町が近くなる、ふるさとの路線バスにみんなで乗ろう\n2. バス\n3. 乗る\n4. 走る\n5. 町",
            "「20字以内」: an item of 27字",
        ),
        (
            "手順を番号付きリストで3ステップに。各ステップは一文で。",
            "1. 起動します。\n2. 言語を選びます。地域も選びます。\n3. 終わりです。",
            "「一文で」: an item of 2文",
        ),
        (
            "感想を「好き」か「嫌い」の一語だけで答えて。",
            "好きです。理由は色です。",
            "「「好き」か「嫌い」の一語だけで答え」",
        ),
        (
            "「拝啓」で始まる、取引先への挨拶状を書いてください。",
            "新年度のご挨拶を申し上げます。\n拝啓　春暖の候",
            "「「拝啓」で始まる」",
        ),
    ],
)
def test_each_form_is_read_and_its_breach_named(instruction, answer, note):
    assert violation(instruction, answer) == note


@pytest.mark.parametrize(
    "instruction,answer",
    [
        ("光合成とは何か、30字以内で説明してください。", "植物が光で水と二酸化炭素から糖を作る働き。"),
        (
            "在宅勤務の利点を3項目の箇条書きで挙げてください。",
            "利点は次の3つです。\n・通勤がない\n・集中できる\n  - 会議が減る\n・家事と両立できる\n以上です。",
        ),
        (
            "商品名の案を5つください。",
            "1. 豆乳ぷりん\n2. とうふわっふる\n3. まめまめタルト\n4. おからクッキー\n5. ゆばゆばパフェ",
        ),
        (
            "キャッチコピーを5案、それぞれ20字以内で。",
            "1. 乗れば町が近くなる。（10字）\n2. バスで行こう\n3. 乗る\n4. 走る\n5. 町",
        ),
        (
            "本文は300字以内（件名・署名を除く）で書いてください。",
            "件名：日程変更のお願い\n" + "あ" * 290 + "\n佐藤",
        ),  # a part excluded
        (
            "5つの文が固定観念を含むか判定し、理由を一言で書いてください。",
            "1. 含む\n2. 含まない\n3. 含む",
        ),  # not a list count
        ("各項目は20字以内で、3点にまとめて。", "・" + "あ" * 40),  # scoped to each item
        ("方法を一つ示してください。", "1. 年代を広げる\n2. 居住区をまとめる"),  # one thing, in steps
        (
            "母は「早く寝なさい。」と言った、という文を一文で言い換えて。",
            "母は「早く寝なさい。もう遅いよ。」と私に言った。",
        ),  # quoted speech
        ("分類結果はJSONのみを出力してください。", '```json\n{"1": "解約"}\n```'),
        ("答えは算用数字のみで出力してください。", "１５"),
        ("次の文章を200字程度で要約して。", "あ" * 250),  # 程度: 0.6 to 1.4 times
    ],
)
def test_what_is_kept_or_not_read_passes(instruction, answer):
    assert violation(instruction, answer) is None


def test_numbers_and_sentences():
    assert [number(n) for n in ("3", "１２", "三", "十", "二十五", "百二十")] == [3, 12, 3, 10, 25, 120]
    assert sentences("晴れです。雨です！\n曇り") == 3 and sentences("「行こう。」と言った。") == 1


def test_every_seed_answer_keeps_its_own_constraints():
    """The seeds' reference answers (written by hand) against the constraints read from their instructions."""
    seeds = [
        json.loads(line)
        for path in sorted((ROOT / "seeds").glob("*.jsonl"))
        for line in path.read_text(encoding="utf-8").splitlines()
    ]
    read = {s["id"]: find(s["instruction"]) for s in seeds}
    broken = {s["id"]: note for s in seeds if (note := violation(s["instruction"], s["output"]))}
    kinds = sorted({c.kind for cs in read.values() for c in cs})
    print(
        f"constraints: {sum(bool(cs) for cs in read.values())} of {len(seeds)} seeds state one "
        f"({sum(len(cs) for cs in read.values())} read, kinds {kinds}); broken by their reference answers: {broken}"
    )
    assert sum(bool(cs) for cs in read.values()) >= 50
    assert broken == {}


def test_precision_and_recall_on_the_labeled_set(calibrate):
    """calibration/constraints.jsonl: answers labeled by whether they break an explicit constraint of the task."""
    rows, precision, recall = calibrate("constraints", lambda r: violation(r["instruction"], r["output"]), "violated")
    assert rows >= 150 and precision >= 0.95 and recall >= 0.95
