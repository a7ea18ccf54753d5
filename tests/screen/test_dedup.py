import random

from atheus_ray.screen.dedup import mark_duplicates


def rows():
    return [
        {"id": "a", "instruction": "東京の観光名所を三つ教えてください", "input": None, "score": 5},
        {"id": "b", "instruction": "東京の観光名所を三つ教えて下さい", "input": None, "score": 9},
        {"id": "c", "instruction": "東京の観光名所を３つ教えてください。", "input": None, "score": 7},
        {"id": "d", "instruction": "次の文章を要約してください", "input": "梅雨の時期は湿度が高く、洗濯物が乾きにくい。", "score": 4},
        {"id": "e", "instruction": "次の文章を要約してください", "input": "新しい図書館が駅前に開館し、多くの市民が訪れた。", "score": 4},
        {"id": "f", "instruction": "敬語の使い方を説明してください", "input": None},
    ]


def test_keeps_the_best_scored_row_of_each_cluster():
    marked = {r["id"]: r["dup_of"] for r in mark_duplicates(rows())}
    assert marked["b"] is None  # the best of the 東京 cluster
    assert marked["a"] == "b" and marked["c"] == "b"
    assert marked["d"] is None and marked["e"] is None  # same instruction, different input: distinct tasks
    assert marked["f"] is None  # no score counts as 0


def test_is_independent_of_input_order():
    expected = {r["id"]: r["dup_of"] for r in mark_duplicates(rows())}
    for seed in range(5):
        shuffled = rows()
        random.Random(seed).shuffle(shuffled)
        result = mark_duplicates(shuffled)
        assert [r["id"] for r in result] == [r["id"] for r in shuffled]  # order of the output = order of the input
        assert {r["id"]: r["dup_of"] for r in result} == expected


def test_ties_in_score_break_by_id():
    tied = [{"id": "z", "instruction": "大阪のおすすめの食べ物は何ですか", "input": None, "score": 3},
            {"id": "y", "instruction": "大阪のおすすめの食べ物は何ですか？", "input": None, "score": 3}]  # fmt: skip
    assert {r["id"]: r["dup_of"] for r in mark_duplicates(tied)} == {"y": None, "z": "y"}
