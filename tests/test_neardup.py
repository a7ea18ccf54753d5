import random

import numpy as np

from atheus_ray import neardup
from atheus_ray.neardup import NoveltyIndex, candidate_pairs, first_matches, near_pairs, signatures
from atheus_ray.text import near_duplicate_pairs, rouge_l


def test_finds_the_pairs_that_all_pairs_finds(near_copies):
    texts = near_copies(1500)
    group, pairs, scores = near_pairs(texts, 0.7)
    found = {(int(i), int(j)) for i, j in pairs}
    exact = near_duplicate_pairs(texts, 0.7)  # every pair, in C++
    missed = [
        (texts[i], texts[j], score)
        for i, j, score in exact
        if group[i] != group[j] and (min(group[i], group[j]), max(group[i], group[j])) not in found
    ]
    print(f"{len(exact)} pairs above 0.7, {len(missed)} missed")
    assert len(exact) > 300
    assert len(missed) <= 0.01 * len(exact), missed
    # and nothing else: every pair reported is above the threshold, with its exact score
    for (i, j), score in zip(pairs.tolist(), scores.tolist()):
        assert score > 0.7 and score == rouge_l(texts[i], texts[j])


def test_identical_texts_are_one_group():
    texts = ["東京の観光名所を教えてください", "大阪の名物料理は何ですか", "東京の観光名所を教えてください"]
    group, pairs, _ = near_pairs(texts, 0.7)
    assert group.tolist() == [0, 1, 0]
    assert len(pairs) == 0


def test_signatures_do_not_depend_on_the_other_texts_order(near_copies):
    texts = near_copies(300)
    order = list(range(len(texts)))
    random.Random(1).shuffle(order)
    sig, shuffled = signatures(texts), signatures([texts[i] for i in order])
    assert np.array_equal(sig[order], shuffled)


def test_short_empty_and_spaced_texts():
    texts = ["", "あ", "あ", "あい", "あい ", "  ", "ありがとう", "ありがとう。"]
    group, pairs, scores = near_pairs(texts, 0.7)
    assert group.tolist() == [0, 1, 1, 3, 4, 5, 6, 7]
    found = {(int(i), int(j)) for i, j in pairs}
    assert (3, 4) in found  # "あい" and "あい " differ only by a space: ROUGE-L 0.8
    assert (6, 7) in found
    assert (0, 5) not in found  # two texts with no characters: ROUGE-L is 0, not a match


def test_common_grams_alone_still_find_pairs():
    # only common 3-grams (in every text): each text keeps them all, and the exact pairs are still found
    texts = [f"説明してください{'。' * k}" for k in range(150)]
    group, pairs, _ = near_pairs(texts, 0.7)
    exact = {(i, j) for i, j, _ in near_duplicate_pairs(texts, 0.7)}
    assert {(int(i), int(j)) for i, j in pairs} == exact


def test_candidates_are_unique_and_ordered(near_copies):
    cand = candidate_pairs(signatures(near_copies(800)))
    assert len(cand) and (cand[:, 0] < cand[:, 1]).all()
    assert len({tuple(p) for p in cand.tolist()}) == len(cand)


def test_first_matches_decide_as_one_at_a_time(near_copies):
    texts = near_copies(1200, seed=5)
    indexed = {f"k{i:04d}": t for i, t in enumerate(texts[:900])}
    names = random.Random(2).sample(range(10_000), 300)  # key order is not the order of the texts
    new = {f"n{names[i]:05d}": t for i, t in enumerate(texts[900:])}
    new["n99999"] = texts[0]  # the same text as an indexed one
    found = first_matches(indexed, new, 0.7)

    index, expected = dict(indexed), {}  # one at a time: exact ROUGE-L against everything indexed so far
    for key in sorted(new):
        near = [(rouge_l(new[key], text), other) for other, text in index.items()]
        best = max(((score, other) for score, other in near if score > 0.7), default=None)
        expected[key] = best and (best[1], best[0])
        if best is None:
            index[key] = new[key]
    assert expected["n99999"] == ("k0000", 1.0)
    assert 30 < sum(m is not None for m in expected.values()) < 250
    assert list(found) == sorted(new)
    assert found == expected


def test_an_index_kept_across_rounds_decides_as_one_rebuilt_each_round(near_copies, monkeypatch):
    monkeypatch.setattr(neardup, "COMMON", 15)  # so the rounds push 3-grams over the cap and back under it
    texts = near_copies(1600, seed=7)
    seeds = {f"seed:{i:03d}": t for i, t in enumerate(texts[:200])}
    index, kept = NoveltyIndex(0.7), dict(seeds)
    index.add(seeds)
    for r, start in enumerate(range(200, 1600, 350), 1):
        new = {
            f"r{r}-{random.Random(start + i).randrange(10**6):06d}": t
            for i, t in enumerate(texts[start : start + 350])
        }
        new[f"r{r}-dup"] = texts[start]  # the same text twice in one round
        rng = random.Random(r)  # texts made mostly of common 3-grams: signed by the MIN_GRAMS fallback
        new |= {
            f"r{r}-short{i:02d}": f"{chr(0x4E00 + rng.randrange(5000))}を説明してください、説明してください"
            for i in range(20)
        }
        everything = list(dict.fromkeys(index.texts + [new[k] for k in sorted(new)]))
        found = index.check(new)
        place = {t: i for i, t in enumerate(everything)}
        assert np.array_equal(index.sig, signatures(everything)[[place[t] for t in index.texts]])
        assert found == first_matches(kept, new, 0.7)  # everything signed again
        assert found[f"r{r}-dup"][1] == 1.0
        kept |= {k: new[k] for k in sorted(new) if found[k] is None}
        assert len(index) == len(kept) and all(k in index for k in kept)
    assert index.resigned > 0  # the path that re-signs old texts ran
    assert 0 < sum(found[k] is not None for k in found) < 350


def test_first_matches_catch_japanese_near_duplicates_and_keep_distinct_tasks():
    new = {
        "a": "東京の観光名所を三つ教えてください",
        "b": "東京の観光名所を三つ教えて下さい",
        "c": "大阪でおすすめの郷土料理は何ですか",
        "d": "次の文章を敬語に書き換えてください：明日行きます",
    }
    found = first_matches({}, new, 0.7)
    assert found["a"] is None and found["c"] is None and found["d"] is None
    assert found["b"][0] == "a" and found["b"][1] > 0.85


def test_a_lone_surrogate_is_a_character_like_any_other():
    texts = ["東京の観光名所を三つ教えてください\ud800", "東京の観光名所を三つ教えてください"]
    _, pairs, _ = near_pairs(texts, 0.7)
    assert pairs.tolist() == [[0, 1]]
