import json

import pytest

from atheus_ray.config import SamplingConfig, TaggerConfig
from atheus_ray.screen.tagger import SAFETY_CATEGORIES, TagParseError, parse_tags, schema, tag_request, with_tags
from atheus_ray.seeds import load_taxonomy

CATEGORIES = ["qa", "reasoning", "advice"]
GOOD = {
    "quality_reason": "明確な指示",
    "input_quality": 4,
    "difficulty_reason": "常識で答えられる",
    "difficulty": 2,
    "task_category": "advice",
    "request_safety": "safe",
    "safety": "safe",
    "safety_category": "none",
    "score_reason": "条件を守り正確",
    "response_quality": 8,
}


def text(**changes):
    return json.dumps({**GOOD, **changes}, ensure_ascii=False)


def test_clean_json():
    assert parse_tags(text(), CATEGORIES) == {
        "quality": 4,
        "quality_reason": "明確な指示",
        "difficulty": 2,
        "difficulty_reason": "常識で答えられる",
        "task_category": "advice",
        "request_safety": "safe",
        "safety": "safe",
        "safety_category": "none",
        "score": 8,
        "score_reason": "条件を守り正確",
    }
    no_reasons = {k: v for k, v in GOOD.items() if not k.endswith("_reason")}
    assert parse_tags(json.dumps(no_reasons), CATEGORIES)["score_reason"] == ""  # the scores are what counts


@pytest.mark.parametrize(
    "messy",
    [
        "```json\n" + text() + "\n```",  # code fence
        "評価は次のとおりです。\n" + text() + "\n以上です。",  # prose around it
        text(input_quality="４", response_quality="8/10"),  # full-width digit, "x/10"
        text(input_quality="4点", difficulty=2.0),  # "点", a float that is an integer
        text(task_category=" Advice "),  # case and spaces in a choice
    ],
)
def test_messy_but_readable_json(messy):
    tags = parse_tags(messy, CATEGORIES)
    assert (tags["quality"], tags["difficulty"], tags["task_category"], tags["score"]) == (4, 2, "advice", 8)


@pytest.mark.parametrize(
    "bad,message",
    [
        ("", "no JSON object"),
        ("評価できません", "no JSON object"),
        ('{"input_quality": 4, "quality_reason": "途中で', "invalid JSON"),  # cut off at max_tokens
        ("[1, 2, 3] {", "invalid JSON"),
        ('["not", "an object"]', "no JSON object"),
        (text(input_quality=6), "input_quality: expected an integer 1-5"),
        (text(response_quality=0), "response_quality: expected an integer 1-10"),
        (text(difficulty="とても難しい"), "difficulty: not a number"),
        (text(difficulty=True), "difficulty: not a number"),
        (text(task_category="poetry"), "task_category: 'poetry' is not one of"),
        (text(safety="maybe"), "safety: 'maybe' is not one of"),
        (json.dumps({k: v for k, v in GOOD.items() if k != "response_quality"}), "response_quality: missing"),
    ],
)
def test_unreadable_output_says_why(bad, message):
    with pytest.raises(TagParseError, match=message):
        parse_tags(bad, CATEGORIES)


def test_safe_rows_have_no_safety_category_and_unsafe_keep_theirs():
    assert parse_tags(text(safety="safe", safety_category="crime"), CATEGORIES)["safety_category"] == "none"
    assert parse_tags(text(safety="unsafe", safety_category="crime"), CATEGORIES)["safety_category"] == "crime"
    # a harmful request carefully refused: the answer is safe, the request's category stays
    tags = parse_tags(text(request_safety="unsafe", safety="safe", safety_category="crime"), CATEGORIES)
    assert (tags["request_safety"], tags["safety"], tags["safety_category"]) == ("unsafe", "safe", "crime")


def test_request_carries_the_schema_the_pair_and_what_each_choice_means():
    taxonomy = load_taxonomy()
    row = {
        "id": "r1",
        "instruction": "梅雨の洗濯のコツは？",
        "input": "部屋干し",
        "response": "除湿機を使います。",
        "perspective": "helpfulness",
    }
    cfg = TaggerConfig(sampling=SamplingConfig(max_tokens=200, temperature=0), reason_chars=30)
    request = tag_request(row, taxonomy, cfg)
    assert request["key"] == "tag/r1"
    content = request["messages"][0]["content"]
    assert "梅雨の洗濯のコツは？" in content and "部屋干し" in content and "除湿機を使います。" in content
    assert taxonomy.perspectives["helpfulness"]["definition"] in content  # the score is judged against it
    assert "- summarization: 要約" in content and "- dangerous_goods: 危険物" in content
    assert "（指定なし" in tag_request({**row, "perspective": None}, taxonomy, cfg)["messages"][0]["content"]
    sent = json.loads(request["sampling_params"]["structured_outputs"]["json"])
    assert sent == schema(list(taxonomy.categories), 30) and sent["properties"]["score_reason"]["maxLength"] == 30
    keys = list(sent["properties"])  # each reason before its score
    assert keys.index("quality_reason") < keys.index("input_quality") and keys[-2:] == [
        "score_reason",
        "response_quality",
    ]
    assert schema(CATEGORIES)["properties"]["safety_category"]["enum"] == list(SAFETY_CATEGORIES)


def test_with_tags_counts_parse_errors_without_losing_rows():
    rows = [{"id": f"r{i}", "instruction": "x", "input": None, "response": "y"} for i in range(4)]
    outputs = [
        {"text": text()},
        {"text": "壊れた出力"},
        {"text": text(response_quality=3)},
        {"text": "", "error": "prompt_too_long: 5000 prompt tokens, model.max_model_len 4096"},
    ]
    tagged, rejected = with_tags(rows, outputs, CATEGORIES, "judge")
    assert [r["id"] for r in tagged] == ["r0", "r2"] and [r["score"] for r in tagged] == [8, 3]
    assert tagged[0]["tagger_model"] == "judge" and tagged[0]["tagger_prompt_version"]
    assert [(r["id"], r["reject_reason"]) for r in rejected] == [("r1", "tag_parse_error"), ("r3", "prompt_too_long")]
    assert "no JSON object" in rejected[0]["detail"]


def test_a_lone_surrogate_in_the_tags_is_a_parse_error():
    with pytest.raises(TagParseError, match="lone surrogate"):
        parse_tags(text().replace("明確な指示", "明確\\udc00な指示"), CATEGORIES)
