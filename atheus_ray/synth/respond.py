"""Responses: the generator model answers an instruction, shown hand-written seed pairs as examples.

The system prompt is prompts/respond.md: the answering policy, then (after its `---` line) the heading of the
examples, which follow as 【指示】/【回答】 pairs. `Answers` picks the examples of a row (`respond.examples`
seed pairs of its perspective, of its category too where enough seeds have it, never its own seeds or
parent; chosen by a hash of the row's id and the run's seed, so a rerun shows the same ones), builds its
request and fills its answer.

Reads:  `id`, `instruction`, `input` (None or text), `perspective`, `category`, `seed_ids`, `parent_id`.
Writes: `response` (the answer, stripped), `response_model`, `response_prompt_version` (hash of
        prompts/respond.md), `response_tokens` (tokens generated), `response_truncated` (hit max_tokens) and
        `response_examples` (ids of the seeds shown as examples).
A row whose answer is empty is rejected with `reject_reason = "empty_response"`, one cut at max_tokens with
`truncated` (unless `respond.drop_truncated` is off).
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Sequence

from atheus_ray.config import RespondConfig
from atheus_ray.engine import sampling_params
from atheus_ray.rows import content_id, read_prompt, user_message
from atheus_ray.seeds import Seed

PROMPT = Path(__file__).resolve().parent.parent / "prompts" / "respond.md"


def system_prompt(examples: Sequence[Seed] = ()) -> str:
    """The answering policy, and the examples under their heading when there are any."""
    policy, _, heading = read_prompt(PROMPT)[0].partition("\n---\n")
    if not examples:
        return policy.strip()
    shown = "\n\n".join(f"【指示】\n{user_message(e.instruction, e.input)}\n【回答】\n{e.output}" for e in examples)
    return f"{policy.strip()}\n\n{heading.strip()}\n\n{shown}"


def answer_request(row: dict, key: str, cfg: RespondConfig, examples: Sequence[Seed] = ()) -> dict:
    """A chat request {key, messages, sampling_params} that asks for the answer to `row`."""
    messages = [
        {"role": "system", "content": system_prompt(examples)},
        {"role": "user", "content": user_message(row["instruction"], row["input"])},
    ]
    return {"key": key, "messages": messages, "sampling_params": sampling_params(cfg.sampling)}


def with_answer(row: dict, output: dict, model_name: str, cfg: RespondConfig, examples: Sequence[Seed] = ()) -> dict:
    """`row` with the response columns filled from a generate() output; one that got no answer (its `error`)
    leaves `response` None, so a later pass asks again and rejects it with that reason."""
    if output.get("error"):
        return {**row, "response": None}
    return {
        **row,
        "response": output["text"].strip(),
        "response_model": model_name,
        "response_prompt_version": read_prompt(PROMPT)[1],
        "response_tokens": output["tokens_out"],
        "response_truncated": output["tokens_out"] >= cfg.sampling.max_tokens,
        "response_examples": [e.id for e in examples],
    }


def answer_problem(row: dict, cfg: RespondConfig) -> tuple[str, str | None] | None:
    """(reject_reason, detail) of an answered row whose answer is not kept, else None."""
    if not row.get("response"):
        return "empty_response", None
    if cfg.drop_truncated and row.get("response_truncated"):
        return "truncated", f"cut at respond.sampling.max_tokens ({cfg.sampling.max_tokens})"
    return None


class Answers:
    """The answering examples of each row, and its requests and answers with them (see module docstring)."""

    def __init__(self, seeds: Sequence[Seed], cfg: RespondConfig, seed: int):
        self.cfg, self.seed = cfg, seed
        self.by_perspective: dict[str, list[Seed]] = {}
        for s in seeds:
            if len(user_message(s.instruction, s.input)) + len(s.output) <= cfg.example_chars:
                self.by_perspective.setdefault(s.perspective, []).append(s)

    def examples(self, row: dict) -> list[Seed]:
        if not self.cfg.examples:
            return []
        own = {*(row.get("seed_ids") or ()), row.get("parent_id"), row["id"]}
        same = [s for s in self.by_perspective.get(row.get("perspective"), []) if s.id not in own]
        category = [s for s in same if s.category == row.get("category")]
        pool = category if len(category) >= self.cfg.examples else same
        rng = random.Random(content_id("respond", row["id"], str(self.seed)))
        return rng.sample(pool, min(self.cfg.examples, len(pool)))

    def request(self, row: dict) -> dict:
        return answer_request(row, f"answer/{row['id']}", self.cfg, self.examples(row))

    def fill(self, row: dict, output: dict, model_name: str) -> dict:
        return with_answer(row, output, model_name, self.cfg, self.examples(row))
