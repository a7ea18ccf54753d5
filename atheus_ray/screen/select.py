"""Selection: thresholds on the tags, quotas per perspective x domain, then a target size, best first.

Rows are ranked by `score` (response quality), then `quality` (input quality), then `id`, so the choice does
not depend on the input order. In that order a row is dropped when:
- `low_quality`: `quality` < `min_quality`;
- `low_score`: `score` < `min_score`;
- `unsafe`: the tagger called the answer unsafe (unless `keep_unsafe`);
- `over_refusal`: the answer is a refusal (`refusal`, heuristics) of a request the tagger called safe; a
  careful refusal of a harmful request (`request_safety` unsafe, answer safe) is kept, as a lesson worth
  learning;
- `over_quota`: its perspective x domain cell already holds `max_per_cell` rows;
- `over_target`: `target_size` rows are already kept.

Reads:  `id`, `quality`, `score`, `safety`, `request_safety`, `refusal`, `perspective`, `domain`.
Writes: nothing new; dropped rows get `reject_reason` and a `detail`.
"""

from __future__ import annotations

from collections import Counter

from atheus_ray.config import SelectionConfig


def rank_key(row: dict) -> tuple:
    """Best first: higher score, then higher input quality, then id."""
    return -(row.get("score") or 0), -(row.get("quality") or 0), row["id"]


def select(rows: list[dict], cfg: SelectionConfig) -> tuple[list[dict], list[dict]]:
    """(kept rows best first, dropped rows with reject_reason); see the module docstring."""
    kept, dropped, cells = [], [], Counter()
    for row in sorted(rows, key=rank_key):
        cell = (row.get("perspective"), row.get("domain"))
        if row["quality"] < cfg.min_quality:
            reason, detail = "low_quality", f"quality {row['quality']} < {cfg.min_quality}"
        elif row["score"] < cfg.min_score:
            reason, detail = "low_score", f"score {row['score']} < {cfg.min_score}"
        elif row["safety"] != "safe" and not cfg.keep_unsafe:
            reason, detail = "unsafe", row.get("safety_category")
        elif row.get("refusal") and row.get("request_safety") != "unsafe":
            reason, detail = "over_refusal", "a refusal of a request the tagger called safe"
        elif cfg.max_per_cell is not None and cells[cell] >= cfg.max_per_cell:
            reason, detail = "over_quota", f"{cell[0]} x {cell[1]} already has {cfg.max_per_cell}"
        elif len(kept) >= cfg.target_size:
            reason, detail = "over_target", f"target size {cfg.target_size} reached"
        else:
            kept.append(row)
            cells[cell] += 1
            continue
        dropped.append({**row, "reject_reason": reason, "detail": detail})
    return kept, dropped
