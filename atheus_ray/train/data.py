"""Training examples: read each condition's sources, normalize to chat messages, check, subsample, split dev.

Accepted records (one per row of a JSONL/Parquet/CSV source or a hf: data set):
- chat: `messages` (or `conversation`), a list of {role, content} with roles `system` (optional, first),
  `user`, `assistant`;
- Alpaca: `instruction`, optional `input`, `output`;
- screening output (`final/`): `instruction`, `input`, `response`.
A record in none of these shapes is an error naming its file and line or row (SourceError). A record in a
known shape that cannot train is dropped and counted, never a crash:
- `missing_roles`: no user turn, no assistant turn, an unknown role, or a turn that is not {role, content} text;
- `empty_assistant`: an assistant turn with no text.
(Examples longer than `max_length` tokens are skipped while subsampling, and the next one taken:
`subsample_and_split`.)

Every condition is subsampled to the same number of examples (`examples`, or the smallest condition's count)
before a `dev_fraction` share is held out, so conditions differ in their data only.
"""

from __future__ import annotations

import random
from collections import Counter

from atheus_ray.config import ConditionConfig
from atheus_ray.rows import content_id, user_message
from atheus_ray.sources import SourceError, read_records

ROLES = ("system", "user", "assistant")


def to_messages(record: dict, where: str) -> list[dict] | str:
    """The chat messages of a record, or the reason it cannot train; raise SourceError for an unknown shape."""
    chat_field = next((f for f in ("messages", "conversation") if f in record), None)
    if chat_field:
        messages = record[chat_field]
        if not isinstance(messages, list) or not all(
            isinstance(m, dict) and m.get("role") in ROLES and isinstance(m.get("content"), str) for m in messages
        ):
            return "missing_roles"
        messages = [{"role": m["role"], "content": m["content"]} for m in messages]
    elif "instruction" in record:
        answer = record["output"] if "output" in record else record.get("response")
        if not isinstance(record["instruction"], str) or not isinstance(answer, str):
            return "missing_roles"
        input_text = record.get("input") if isinstance(record.get("input"), str) else None
        messages = [
            {"role": "user", "content": user_message(record["instruction"], input_text or None)},
            {"role": "assistant", "content": answer},
        ]
    else:
        raise SourceError([f"{where}: messages: missing (expected `messages`, or `instruction` and `output`)"])
    roles = [m["role"] for m in messages]
    if "user" not in roles or "assistant" not in roles or "system" in roles[1:] or not messages[0]["content"].strip():
        return "missing_roles"
    if any(m["role"] == "assistant" and not m["content"].strip() for m in messages):
        return "empty_assistant"
    return messages


def load_condition(condition: ConditionConfig) -> tuple[list[dict], Counter]:
    """({id, messages} examples of a condition, Counter of dropped reasons)."""
    examples, dropped, problems = [], Counter(), []
    for where, record in read_records(condition.paths):
        try:
            messages = to_messages(record, where)
        except SourceError as e:
            problems += e.problems
            continue
        if isinstance(messages, str):
            dropped[messages] += 1
            continue
        key = str(record["id"]) if record.get("id") is not None else content_id(*(m["content"] for m in messages))
        examples.append({"id": key, "messages": messages})
    if problems:
        raise SourceError(problems)
    return examples, dropped


def subsample_and_split(
    examples: list[dict], n: int, dev_fraction: float, seed: int, prepare=lambda e: e
) -> tuple[list, list, int]:
    """`n` examples taken in a fixed seeded order (by id, so input order does not matter), each passed through
    `prepare`; one it turns into None (e.g. too long for `max_length`) is skipped and the next one taken, so
    every condition trains on as many usable examples. Returns (train, dev, number skipped)."""
    ordered = sorted(examples, key=lambda e: e["id"])
    random.Random(seed).shuffle(ordered)
    picked, skipped = [], 0
    for example in ordered:
        if len(picked) == n:
            break
        prepared = prepare(example)
        if prepared is None:
            skipped += 1
        else:
            picked.append(prepared)
    n_dev = round(len(picked) * dev_fraction)
    if dev_fraction > 0 and len(picked) > 1:
        n_dev = max(1, n_dev)
    return picked[n_dev:], picked[:n_dev], skipped
