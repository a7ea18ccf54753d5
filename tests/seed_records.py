"""Seed records for the tests of seed loading and of bad seed files (tests/test_seeds.py,
tests/chaos/test_bad_input.py): importable because pytest's `pythonpath` holds tests/."""

import json


def row(**changes) -> dict:
    """A valid seed record with `changes`; a change to None drops the field."""
    data = {
        "id": "x-1",
        "perspective": "fluency",
        "category": "qa",
        "domain": "it",
        "instruction": "質問です",
        "output": "答えです",
    }
    data.update(changes)
    return {k: v for k, v in data.items() if v is not None}


def good_rows(n: int = 1) -> list[dict]:
    return [row(id=f"ok-{i}", instruction=f"{i}番目の質問はこれです") for i in range(n)]


def jsonl(*records) -> bytes:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records).encode("utf-8")
