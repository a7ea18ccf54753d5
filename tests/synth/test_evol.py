import json
from collections import Counter

import pytest

from atheus_ray.config import EvolConfig, RespondConfig
from atheus_ray.rows import content_id
from atheus_ray.synth import evol
from atheus_ray.synth.respond import Answers

PARENT = {
    "id": "p1",
    "parent_id": None,
    "seed_ids": ["fluency-001"],
    "origin": "self_instruct",
    "round": 0,
    "domain": "business_manners",
    "perspective": "fluency",
    "category": None,
    "generator_model": "m",
    "prompt_version": "v",
    "instruction": "取引先へのお礼のメールを書いてください。",
    "input": None,
    "response": None,
}
OP_WORDS = {
    "add_constraints": "条件や制約",
    "deepen": "深さと広さ",
    "concretize": "具体的な",
    "increase_reasoning": "複数の段階",
    "complicate_input": "素材",
    "breadth": "珍しく",
}


@pytest.mark.parametrize("op", list(OP_WORDS))
def test_each_operation_prompt(op):
    prompt = evol.evolve_prompt(op, PARENT["instruction"], "素材のテキスト")
    assert PARENT["instruction"] in prompt and "素材のテキスト" in prompt
    assert OP_WORDS[op] in prompt
    assert "JSON" in prompt and "{" not in prompt.replace('{"instruction"', "")  # template fully formatted
    assert evol.origin(op) == ("evol_breadth" if op == "breadth" else f"evol_depth:{op}")


def test_operation_choice_is_stable_and_spread():
    ops = EvolConfig().operations
    assert evol.pick_operation("abc", 1, ops) == evol.pick_operation("abc", 1, ops)
    counts = Counter(evol.pick_operation(f"row{i}", 1, ops) for i in range(600))
    assert set(counts) == set(ops) and min(counts.values()) > 60


def test_parse_evolved():
    assert evol.parse_evolved('{"instruction": "三つの条件で書いて", "input": ""}') == ("三つの条件で書いて", None)
    assert evol.parse_evolved('書き換えました。{"instruction": "x", "input": "y"}') == ("x", "y")
    assert evol.parse_evolved("平文の指示です") == ("平文の指示です", None)
    for bad in ("", "   ", '{"instruction": ""}', "{broken"):
        with pytest.raises(ValueError):
            evol.parse_evolved(bad)


def out(text):
    return {"text": text, "tokens_in": 1, "tokens_out": 1}


def test_make_children_lineage_and_rejections():
    cfg = EvolConfig()
    pool = [PARENT, {**PARENT, "id": "p2"}, {**PARENT, "id": "p3"}, {**PARENT, "id": "p4"}, {**PARENT, "id": "p5"}]
    requests = evol.evolve_requests(pool, 1, cfg)
    evolved = "取引先へのお礼のメールを、200字以内で、次回の打ち合わせ日程の提案を含めて書いてください。"
    outputs = [
        out(json.dumps({"instruction": evolved, "input": ""}, ensure_ascii=False)),
        out(""),
        out(json.dumps({"instruction": "Write it", "input": ""})),
        out(json.dumps({"instruction": PARENT["instruction"], "input": ""}, ensure_ascii=False)),
        {**out(""), "error": "http_400: Unrecognized request argument"},
    ]
    pool[3]["id"] = content_id(PARENT["instruction"], None)  # the 4th parent's child is identical to it
    requests[3]["parent"] = pool[3]
    children, rejected = evol.make_children(requests, outputs, 1, cfg, "m")
    assert len(children) == 1
    child = children[0]
    assert child["id"] == content_id(evolved, None)
    assert (child["parent_id"], child["round"], child["seed_ids"]) == ("p1", 1, ["fluency-001"])
    assert child["origin"] == evol.origin(requests[0]["op"])
    assert child["perspective"] == "fluency" and child["domain"] == "business_manners"
    assert sorted(r["reject_reason"] for r in rejected) == ["http_400", "low_ja_ratio", "no_change", "parse_error"]


@pytest.mark.parametrize(
    "answer,verdict,reason",
    [
        ("丁寧なお礼のメール本文です。", "異なる", None),
        ("丁寧なお礼のメール本文です。", "同じ", "no_change"),
        ("丁寧なお礼のメール本文です。", "たぶん", "judge_parse_error"),
        ("申し訳ありませんが、そのご依頼にはお応えできません。", "異なる", "refusal_answer"),
        ("はい", "異なる", "short_answer"),
    ],
)
def test_each_elimination_rule(answer, verdict, reason):
    assert evol.eliminate({}, answer, verdict, EvolConfig(min_answer_chars=5)) == reason


def test_a_refusal_survives_where_its_parent_was_declined_too():
    refusal, cfg = (
        "申し訳ありませんが、その方法はお伝えできません。住居侵入にあたります。",
        EvolConfig(min_answer_chars=5),
    )
    assert (
        evol.eliminate({}, refusal, "異なる", cfg, parent_answer="玄関の鍵は、まず管理会社に連絡しましょう。")
        == "refusal_answer"
    )
    assert evol.eliminate({}, refusal, "異なる", cfg, parent_answer="他人の家の鍵の開け方はお伝えできません。") is None


def test_check_requests_answer_and_judge():
    child = {**PARENT, "id": "c1", "parent_id": "p1", "instruction": "新しい指示です"}
    requests = evol.check_requests([child], [PARENT], {"p1": PARENT}, Answers([], RespondConfig(), seed=0))
    assert [r["key"] for r in requests] == ["answer/p1", "answer/c1", "judge/c1"]
    judge = requests[-1]
    assert judge["sampling_params"]["structured_outputs"] == {"choice": ["同じ", "異なる"]}
    assert (
        PARENT["instruction"] in judge["messages"][0]["content"]
        and "新しい指示です" in judge["messages"][0]["content"]
    )
    assert "structured_outputs" not in requests[0]["sampling_params"]


def test_a_lone_surrogate_in_an_evolution_is_rejected():
    cfg = EvolConfig()
    requests = evol.evolve_requests([PARENT], 1, cfg)
    children, rejected = evol.make_children(
        requests, [out('{"instruction": "お礼の\\ud800メールを書いて", "input": ""}')], 1, cfg, "m"
    )
    assert children == [] and [r["reject_reason"] for r in rejected] == ["invalid_text"]
