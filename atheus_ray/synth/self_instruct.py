"""Self-Instruct: new tasks in a target domain and quality perspective, from a few example seeds.

Each request picks a perspective and a task category (both in turn), a domain (at random from the taxonomy)
and `examples` seeds, all but one from that perspective, spread evenly over the seeds (`build_requests`);
from round 2 on it also shows `generated_examples` rows from the pool made so far (6 + 2 by default, as the
original's 6 human + 2 generated). The model answers with JSON (constrained by vLLM structured outputs); a
numbered list is accepted too.

Reads:  seeds (atheus_ray.seeds.Seed), the taxonomy, and the rows kept by earlier rounds.
Writes: rows of the contract with origin `self_instruct`, round 0, parent_id None, `seed_ids` = the seeds
        shown, `domain`, `perspective`, `category` (the category asked for), `generator_model`,
        `prompt_version`, `instruction`, `input`.
Rejects (`reject_reason`): `prompt_too_long` or `http_<status>` (no answer: atheus_ray.engine.Engine.generate),
        `parse_error`, `invalid_text` (a lone surrogate escaped in the JSON), `duplicate_text` (the same text
        again; its id is derived from the first's), the filters of atheus_ray.synth.filters, and `not_novel`
        (character ROUGE-L above `novelty_threshold` with a seed or an already kept row; `detail` names which).
"""

from __future__ import annotations

import itertools
import json
import random
import re
from pathlib import Path

from atheus_ray.config import SelfInstructConfig
from atheus_ray.engine import error_reason, sampling_params
from atheus_ray.neardup import NoveltyIndex
from atheus_ray.rows import content_id, read_prompt, task_text
from atheus_ray.seeds import Seed, Taxonomy
from atheus_ray.synth.filters import instruction_problem
from atheus_ray.text import lone_surrogate, printable

PROMPT = Path(__file__).resolve().parent.parent / "prompts" / "self_instruct.md"
TASKS_SCHEMA = {
    "type": "object",
    "properties": {
        "tasks": {
            "type": "array",
            "minItems": 1,  # without it, compact JSON lets a small model answer {"tasks":[]}
            "items": {
                "type": "object",
                "properties": {"instruction": {"type": "string", "minLength": 1}, "input": {"type": "string"}},
                "required": ["instruction", "input"],
            },
        }
    },
    "required": ["tasks"],
}
NUMBERED = re.compile(r"^\s*(?:\d+|[０-９]+)\s*[.)．、）:：]\s*(.+)$")


def _example(instruction: str, input_text: str | None, input_chars: int) -> str:
    """An example task as the JSON the model answers in; an input over `input_chars` is cut, the cut marked."""
    text = input_text or ""
    if len(text) > input_chars:
        text = f"{text[:input_chars]}…（以下略、全{len(text):,}字）"
    return json.dumps({"instruction": instruction, "input": text}, ensure_ascii=False)


def build_requests(
    seeds: list[Seed], taxonomy: Taxonomy, cfg: SelfInstructConfig, round_: int, pool: list[dict], seed: int
) -> list[dict]:
    """The prompts of one round: each a request {key, messages, sampling_params} plus what it was built from.

    Request i targets perspective i mod P and task category (i + round) mod C of the taxonomy, so a round
    covers every category evenly whatever the seeds lean to. Its seeds come from a cycle through each
    perspective's seeds in an order shuffled once per round (`examples - 1` of them; every seed is shown once
    before any is shown twice), and one from a cycle through all seeds of other perspectives."""
    template = read_prompt(PROMPT)[0]
    by_perspective: dict[str, list[Seed]] = {}
    for s in seeds:
        by_perspective.setdefault(s.perspective, []).append(s)
    perspectives = [p for p in taxonomy.perspectives if p in by_perspective]
    categories = list(taxonomy.categories)
    order = random.Random(f"{seed}/self_instruct/{round_}/order")
    cycles = {p: itertools.cycle(order.sample(own, len(own))) for p, own in by_perspective.items()}
    mixed = itertools.cycle(order.sample(seeds, len(seeds)))
    params = sampling_params(cfg.sampling, {"json": json.dumps(TASKS_SCHEMA)})
    requests = []
    for i in range(cfg.requests):
        rng = random.Random(f"{seed}/self_instruct/{round_}/{i}")
        perspective = perspectives[i % len(perspectives)]
        category = categories[(i + round_) % len(categories)]
        domain = rng.choice(sorted(taxonomy.domains))
        own = min(len(by_perspective[perspective]), max(cfg.examples - 1, 1))
        shown = [next(cycles[perspective]) for _ in range(own)]
        if cfg.examples > 1 and len(by_perspective) > 1:
            shown.append(next(s for s in mixed if s.perspective != perspective))
        generated = rng.sample(pool, min(len(pool), cfg.generated_examples)) if round_ > 1 else []
        examples = [_example(s.instruction, s.input, cfg.example_input_chars) for s in shown]
        examples += [_example(r["instruction"], r["input"], cfg.example_input_chars) for r in generated]
        prompt = template.format(
            num_tasks=cfg.tasks_per_request,
            perspective_name=taxonomy.perspectives[perspective]["name"],
            perspective_definition=taxonomy.perspectives[perspective]["definition"],
            category_name=taxonomy.categories[category],
            domain_name=taxonomy.domains[domain],
            examples="\n".join(examples),
        )
        requests.append(
            {
                "key": f"si/{round_}/{i}",
                "messages": [{"role": "user", "content": prompt}],
                "sampling_params": params,
                "perspective": perspective,
                "category": category,
                "domain": domain,
                "seed_ids": [s.id for s in shown] + [sid for r in generated for sid in r["seed_ids"]],
            }
        )
    return requests


def parse_tasks(text: str) -> list[tuple[str, str | None]]:
    """(instruction, input) pairs from model output: a JSON object with `tasks` (possibly inside a code
    fence, after chatter, or cut off by max_tokens: every complete task object is kept), else a numbered
    list. Raises ValueError when neither is found."""
    tasks = [task_from_json(item) for item in _json_objects(text)]
    tasks = [t for t in tasks if t is not None]
    if tasks:
        return tasks
    numbered = [m.group(1).strip() for m in map(NUMBERED.match, text.splitlines()) if m]
    if numbered:
        return [(t, None) for t in numbered]
    raise ValueError("no tasks found (neither JSON with 'tasks' nor a numbered list)")


def _json_objects(text: str) -> list:
    """The task objects in `text`: the `tasks` list of a complete JSON object, else every complete
    {...} that decodes on its own (what is left of a truncated list)."""
    decoder = json.JSONDecoder()
    start = text.find("{")
    if start != -1:
        try:
            data, _ = decoder.raw_decode(text, start)
            if isinstance(data, dict) and isinstance(data.get("tasks"), list):
                return data["tasks"]
        except json.JSONDecodeError:
            pass
    found, i = [], text.find("{", start + 1) if start != -1 else -1
    while i != -1:
        try:
            data, end = decoder.raw_decode(text, i)
            found.append(data)
            i = text.find("{", end)
        except json.JSONDecodeError:
            i = text.find("{", i + 1)
    return found


def task_from_json(item) -> tuple[str, str | None] | None:
    """(instruction, input) from a decoded {"instruction", "input"} object, or None when it has no instruction."""
    if not isinstance(item, dict) or not isinstance(item.get("instruction"), str) or not item["instruction"].strip():
        return None
    extra = item.get("input")
    return item["instruction"].strip(), extra.strip() if isinstance(extra, str) and extra.strip() else None


def select(
    requests: list[dict],
    outputs: list[dict],
    cfg: SelfInstructConfig,
    seeds: list[Seed],
    kept: list[dict],
    generator_model: str,
    round_: int,
    index: NoveltyIndex | None = None,
) -> tuple[list[dict], list[dict]]:
    """Parse, filter and novelty-check one round's outputs. Returns (new kept rows, rejected rows).
    Candidates are checked in id order, so the result does not depend on the order outputs arrive in.
    `index` is the novelty index the run keeps from round to round (seeds and kept rows not in it yet are
    added first; the novel candidates join it); a fresh one when None."""
    version = read_prompt(PROMPT)[1]
    candidates, rejected, seen = {}, [], {r["id"] for r in kept}
    for request, output in zip(requests, outputs):
        base = {
            "parent_id": None,
            "seed_ids": request["seed_ids"],
            "origin": "self_instruct",
            "round": 0,
            "domain": request["domain"],
            "perspective": request["perspective"],
            "generator_model": generator_model,
            "prompt_version": version,
            "category": request["category"],
        }
        failed = error_reason(output)
        if failed:  # no answer at all (a prompt too long for the model, an endpoint error)
            rejected.append(
                {
                    **base,
                    "id": content_id(failed[0], request["key"], str(round_)),
                    "instruction": None,
                    "input": None,
                    "reject_reason": failed[0],
                    "detail": failed[1],
                }
            )
            continue
        try:
            tasks = parse_tasks(output["text"])
        except ValueError as e:
            rejected.append(
                {
                    **base,
                    "id": content_id("parse_error", request["key"], str(round_)),
                    "instruction": output["text"][:2000],
                    "input": None,
                    "reject_reason": "parse_error",
                    "detail": str(e),
                }
            )
            continue
        for instruction, input_text in tasks:
            bad = lone_surrogate(instruction) or lone_surrogate(input_text)
            if bad:  # the model's JSON escaped half a character: no text to hash, store or train on
                instruction, input_text = printable(instruction), input_text and printable(input_text)
                rejected.append(
                    {
                        **base,
                        "id": content_id("invalid_text", instruction, input_text, str(round_)),
                        "instruction": instruction,
                        "input": input_text,
                        "reject_reason": "invalid_text",
                        "detail": f"lone surrogate {bad} in the model's JSON",
                    }
                )
                continue
            row = {**base, "id": content_id(instruction, input_text), "instruction": instruction, "input": input_text}
            if row["id"] in seen:  # the same text again: its own id would collide with the first
                rejected.append(
                    {
                        **row,
                        "id": content_id(row["id"], "duplicate", str(len(rejected))),
                        "reject_reason": "duplicate_text",
                        "detail": f"same text as {row['id']}",
                    }
                )
                continue
            seen.add(row["id"])
            problem = instruction_problem(instruction, input_text, **cfg.filters.model_dump())
            if problem:
                rejected.append({**row, "reject_reason": problem, "detail": None})
            else:
                candidates[row["id"]] = row

    if index is None:
        index = NoveltyIndex(cfg.novelty_threshold)
    index.add({f"seed:{s.id}": task_text(s.instruction, s.input) for s in seeds if f"seed:{s.id}" not in index})
    index.add({row["id"]: task_text(row["instruction"], row["input"]) for row in kept if row["id"] not in index})
    matches = index.check({k: task_text(r["instruction"], r["input"]) for k, r in candidates.items()})
    new = []
    for row_id in sorted(candidates):
        row, match = candidates[row_id], matches[row_id]
        if match:
            rejected.append({**row, "reject_reason": "not_novel", "detail": f"ROUGE-L {match[1]:.2f} with {match[0]}"})
        else:
            new.append(row)
    return new, rejected
