"""Decontamination: drop rows that contain an evaluation prompt, even reworded.

A row is contaminated when its instruction + input contains more than `threshold` of the character n-grams
of some evaluation prompt (ELYZA-tasks-100's `input`, or any file of prompts). Measured against the
evaluation prompt's n-grams, so a long training row that quotes a short prompt is caught, and a paraphrase
that keeps most of the wording (a changed particle, numeral or ending) still shares most of its n-grams.
An inverted index from n-gram to prompts makes the cost linear in the rows' length, never rows x prompts.

Reads:  `instruction`, `input`.
Writes: `reject_reason = "contaminated"` with `detail` naming the evaluation prompt (source:line) and the
        share of its n-grams found in the row.
"""

from __future__ import annotations

import unicodedata
from collections import Counter, defaultdict

from atheus_ray.rows import task_text
from atheus_ray.sources import SourceError, read_records
from atheus_ray.text import shingles

PROMPT_FIELDS = ("input", "input_text", "instruction", "prompt")


def ngrams(text: str, n: int) -> set[str]:
    """Character n-grams of `text` after NFKC (full-width → half-width) with whitespace removed."""
    return shingles(unicodedata.normalize("NFKC", text), n) - {""}  # an empty text has no n-grams


def load_prompts(paths: list[str]) -> list[tuple[str, str]]:
    """(where, prompt) for every evaluation prompt in the sources; a record without a prompt field is an error."""
    prompts, problems = [], []
    for where, record in read_records(paths):
        field = next((f for f in PROMPT_FIELDS if isinstance(record.get(f), str) and record[f].strip()), None)
        if field is None:
            problems.append(f"{where}: input: missing (expected one of {', '.join(PROMPT_FIELDS)})")
        else:
            prompts.append((where, record[field]))
    if problems:
        raise SourceError(problems)
    return prompts


class Decontaminator:
    """Finds, for a text, the evaluation prompt it overlaps most, if the overlap exceeds the threshold."""

    def __init__(self, prompts: list[tuple[str, str]], n: int = 3, threshold: float = 0.45):
        self.n, self.threshold = n, threshold
        self.names = [where for where, _ in prompts]
        self.sizes = []
        self.index: dict[str, list[int]] = defaultdict(list)
        for k, (_, prompt) in enumerate(prompts):
            grams = ngrams(prompt, n)
            self.sizes.append(len(grams))
            for g in grams:
                self.index[g].append(k)

    def match(self, text: str) -> tuple[str, float] | None:
        """(evaluation prompt's source:line, share of its n-grams in `text`) above the threshold, or None."""
        shared = Counter(k for g in ngrams(text, self.n) for k in self.index.get(g, ()))
        best = max(((count / self.sizes[k], k) for k, count in shared.items()), default=None)
        if best is None or best[0] <= self.threshold:
            return None
        return self.names[best[1]], best[0]


def contaminated(rows: list[dict], decon: Decontaminator) -> tuple[list[dict], list[dict]]:
    """(clean rows, contaminated rows with reject_reason and detail)."""
    clean, dropped = [], []
    for row in rows:
        hit = decon.match(task_text(row["instruction"], row.get("input")))
        if hit is None:
            clean.append(row)
        else:
            dropped.append({**row, "reject_reason": "contaminated", "detail": f"{hit[1]:.2f} of {hit[0]}"})
    return clean, dropped
