"""Near-duplicate removal across the whole set, keeping the best row of each cluster.

Reads:  `id`, `instruction`, `input`, `score` and `quality` (the tagger's; missing counts as 0).
Writes: `dup_of`: None for a kept row, else the id of the kept row it near-duplicates
        (character-level ROUGE-L of instruction + input above `threshold`).

Rows are visited best first (score, then input quality, descending, then id: `select.rank_key`), and each is kept unless it near-duplicates a row
already kept, so every cluster keeps its best-scored row and the result does not depend on the input order.
Candidates come from the MinHash LSH index on character 3-grams (atheus_ray.text.NearDupIndex), checked
exactly; no all-pairs comparison, so 100k rows take seconds, not hours (benchmarks/dedup.py).
"""

from __future__ import annotations

from atheus_ray.rows import task_text
from atheus_ray.screen.select import rank_key
from atheus_ray.text import NearDupIndex


def mark_duplicates(rows: list[dict], threshold: float = 0.7) -> list[dict]:
    """The rows (same order) with `dup_of` set; see the module docstring."""
    index = NearDupIndex(threshold=threshold)
    dup_of: dict[str, str | None] = {}
    for row in sorted(rows, key=rank_key):
        match = index.add_if_novel(row["id"], task_text(row["instruction"], row.get("input")))
        dup_of[row["id"]] = match[0] if match else None
    return [{**row, "dup_of": dup_of[row["id"]]} for row in rows]
