"""Near-duplicate removal across the whole set, keeping the best row of each cluster.

Reads:  `id`, `instruction`, `input`, `score` and `quality` (the tagger's; missing counts as 0).
Writes: `dup_of`: None for a kept row, else the id of the kept row it near-duplicates
        (character-level ROUGE-L of instruction + input above `threshold`).

Rows are visited best first (score, then input quality, descending, then id: `select.rank_key`), and each is
kept unless it near-duplicates a row already kept (then `dup_of` is the most similar kept row, the larger id on
a tie), so every cluster keeps its best-ranked row and the result does not depend on the input order.
The near-duplicate pairs are found all at once by atheus_ray.neardup (MinHash LSH on character 3-grams,
checked with the exact ROUGE-L): no all-pairs comparison, so a million rows take about 25 s on 2 cores
(benchmarks/dedup.py); above `on_ray_above` rows the same search runs on the cluster (atheus_ray.neardup_ray).
"""

from __future__ import annotations

from collections import defaultdict

from atheus_ray.neardup import near_pairs
from atheus_ray.neardup_ray import near_pairs_on_ray
from atheus_ray.rows import task_text
from atheus_ray.screen.select import rank_key


def mark_duplicates(rows: list[dict], threshold: float = 0.7, on_ray_blocks: int | None = None) -> list[dict]:
    """The rows (same order) with `dup_of` set; see the module docstring. With `on_ray_blocks`, the pairs are
    found by Ray Data tasks in that many blocks (atheus_ray.neardup_ray: the same pairs; Ray must be up)."""
    texts = [task_text(r["instruction"], r.get("input")) for r in rows]
    if on_ray_blocks:
        group, pairs, scores = near_pairs_on_ray(texts, threshold, on_ray_blocks)
    else:
        group, pairs, scores = near_pairs(texts, threshold)
    neighbours = defaultdict(list)  # group -> [(neighbouring group, ROUGE-L)]
    for (i, j), score in zip(pairs.tolist(), scores.tolist()):
        neighbours[i].append((j, score))
        neighbours[j].append((i, score))
    kept: dict[int, int] = {}  # group -> its kept row (one at most: identical texts are one group)
    dup_of: list[str | None] = [None] * len(rows)
    for k in sorted(range(len(rows)), key=lambda k: rank_key(rows[k])):
        g = int(group[k])
        if g in kept:  # an identical text is kept: ROUGE-L 1.0, the most similar there can be
            dup_of[k] = rows[kept[g]]["id"]
            continue
        best = max(((score, rows[kept[h]]["id"]) for h, score in neighbours[g] if h in kept), default=None)
        if best is None:
            kept[g] = k
        else:
            dup_of[k] = best[1]
    return [{**row, "dup_of": dup} for row, dup in zip(rows, dup_of)]
