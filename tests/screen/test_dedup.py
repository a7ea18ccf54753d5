import random

from atheus_ray.rows import task_text
from atheus_ray.screen.dedup import mark_duplicates
from atheus_ray.screen.select import rank_key
from atheus_ray.text import near_duplicate_pairs


def rows():
    return [
        {"id": "a", "instruction": "東京の観光名所を三つ教えてください", "input": None, "score": 5},
        {"id": "b", "instruction": "東京の観光名所を三つ教えて下さい", "input": None, "score": 9},
        {"id": "c", "instruction": "東京の観光名所を３つ教えてください。", "input": None, "score": 7},
        {
            "id": "d",
            "instruction": "次の文章を要約してください",
            "input": "梅雨の時期は湿度が高く、洗濯物が乾きにくい。",
            "score": 4,
        },
        {
            "id": "e",
            "instruction": "次の文章を要約してください",
            "input": "新しい図書館が駅前に開館し、多くの市民が訪れた。",
            "score": 4,
        },
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
    tied = [
        {"id": "z", "instruction": "大阪のおすすめの食べ物は何ですか", "input": None, "score": 3},
        {"id": "y", "instruction": "大阪のおすすめの食べ物は何ですか？", "input": None, "score": 3},
    ]
    assert {r["id"]: r["dup_of"] for r in mark_duplicates(tied)} == {"y": None, "z": "y"}


def reference(rows: list[dict], threshold: float = 0.7) -> dict[str, str | None]:
    """The stage's rule the slow way: exact ROUGE-L of every pair, then each row, best first, is kept unless it
    near-duplicates a kept row (the most similar one, the larger id on a tie)."""
    texts = [task_text(r["instruction"], r.get("input")) for r in rows]
    similar = {}
    for i, j, score in near_duplicate_pairs(texts, threshold):
        similar[i, j] = similar[j, i] = score
    kept, dup_of = [], {}
    for k in sorted(range(len(rows)), key=lambda k: rank_key(rows[k])):
        best = max(((similar[k, h], rows[h]["id"]) for h in kept if (k, h) in similar), default=None)
        dup_of[rows[k]["id"]] = best and best[1]
        if best is None:
            kept.append(k)
    return dup_of


def test_decides_as_the_all_pairs_reference(near_copies):
    rng = random.Random(3)
    rows = [
        {
            "id": f"r{k:04d}",
            "instruction": text,
            "input": None,
            "score": rng.randint(1, 5),
            "quality": rng.randint(1, 3),
        }
        for k, text in enumerate(near_copies(1200, seed=2))
    ]
    expected = reference(rows)
    assert 100 < sum(d is not None for d in expected.values()) < 600
    marked = mark_duplicates(rows)
    assert {r["id"]: r["dup_of"] for r in marked} == expected
    rng.shuffle(rows)
    assert {r["id"]: r["dup_of"] for r in mark_duplicates(rows)} == expected
