import random

from atheus_ray.config import SelectionConfig
from atheus_ray.screen.select import select


def row(i, score, quality=4, safety="safe", perspective="fluency", domain="cooking"):
    return {
        "id": f"r{i:02d}",
        "score": score,
        "quality": quality,
        "safety": safety,
        "safety_category": "none",
        "perspective": perspective,
        "domain": domain,
    }


def reasons(dropped):
    return {r["id"]: r["reject_reason"] for r in dropped}


def test_thresholds():
    rows = [row(1, 9), row(2, 5), row(3, 9, quality=2), row(4, 9, safety="unsafe")]
    kept, dropped = select(rows, SelectionConfig(min_quality=3, min_score=6))
    assert [r["id"] for r in kept] == ["r01"]
    assert reasons(dropped) == {"r02": "low_score", "r03": "low_quality", "r04": "unsafe"}
    kept, _ = select(rows, SelectionConfig(min_quality=3, min_score=6, keep_unsafe=True))
    assert [r["id"] for r in kept] == ["r01", "r04"]


def test_quota_per_perspective_and_domain_keeps_the_best_of_each_cell():
    rows = [row(i, score=10 - i, domain="cooking") for i in range(5)] + [row(9, score=2, domain="law")]
    kept, dropped = select(rows, SelectionConfig(min_quality=1, min_score=1, max_per_cell=2))
    assert [r["id"] for r in kept] == ["r00", "r01", "r09"]  # two of the cooking cell, best first; law untouched
    assert set(reasons(dropped).values()) == {"over_quota"} and len(dropped) == 3


def test_target_size_keeps_the_best_scores_and_ignores_input_order():
    rows = [row(i, score=i % 10 + 1, quality=i % 5 + 1) for i in range(40)]
    cfg = SelectionConfig(min_quality=1, min_score=1, target_size=7)
    kept, dropped = select(rows, cfg)
    assert len(kept) == 7 and len(dropped) == 33 and set(reasons(dropped).values()) == {"over_target"}
    assert min(r["score"] for r in kept) >= max(r["score"] for r in dropped)
    for seed in range(3):
        shuffled = rows[:]
        random.Random(seed).shuffle(shuffled)
        assert [r["id"] for r in select(shuffled, cfg)[0]] == [r["id"] for r in kept]


def test_a_refusal_is_kept_only_when_the_request_was_harmful():
    rows = [
        {**row(1, 8), "refusal": True, "request_safety": "safe"},  # an over-refusal
        {**row(2, 8), "refusal": True, "request_safety": "unsafe"},  # a careful refusal of a harmful request
        {**row(3, 8), "refusal": False, "request_safety": "unsafe"},  # safe help around a harmful request
        {**row(4, 8, safety="unsafe"), "refusal": False, "request_safety": "unsafe"},
    ]  # harm done
    kept, dropped = select(rows, SelectionConfig(min_quality=1, min_score=1))
    assert [r["id"] for r in kept] == ["r02", "r03"]
    assert reasons(dropped) == {"r01": "over_refusal", "r04": "unsafe"}
