"""Evol-Instruct: one evolution per row per round, then elimination of the failed ones.

Operations (prompts/evol/<op>.md): in depth `add_constraints`, `deepen`, `concretize`, `increase_reasoning`,
`complicate_input`; in breadth `breadth` (a new, rarer task in the same domain). Each row's operation is
chosen by a hash of its id and the round, so reruns choose the same.

A round is two LLM passes. Pass 1 evolves every row of the pool (JSON output). Pass 2 answers each child
(and any pool row still without an answer) and asks the model whether the child differs from its parent
(a constrained choice, 「同じ」 or 「異なる」). A child is eliminated when:
- `parse_error`: pass 1 gave no usable instruction;
- a filter of atheus_ray.synth.filters fails (too short, low Japanese share, truncated, scaffolding copied,
  `missing_input`: material referred to but not given...);
- `no_change`: the judge answered 「同じ」, or the child's text equals its parent's
  (`judge_parse_error` when the judge said neither);
- `refusal_answer`: the answer to the child declines it (atheus_ray.text.is_refusal) though its parent was
  answered (the child of a declined harmful request may be declined too, and screening judges it);
- `short_answer`: the answer is shorter than `min_answer_chars`.
The parent of an eliminated child stays in the pool for the next round; a surviving child replaces it.

Reads:  rows of the contract with `instruction`, `input` (and `response` where answered).
Writes: children with origin `evol_depth:<op>` or `evol_breadth`, `round` = parent's + 1, `parent_id`,
        inherited `seed_ids`, `domain`, `perspective`, and `response`; rejected children with `reject_reason`.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from atheus_ray.config import EvolConfig, SamplingConfig
from atheus_ray.engine import error_reason, sampling_params
from atheus_ray.rows import content_id, read_prompt
from atheus_ray.synth.filters import instruction_problem
from atheus_ray.synth.respond import Answers
from atheus_ray.synth.self_instruct import task_from_json
from atheus_ray.text import is_refusal, lone_surrogate, printable

PROMPTS = Path(__file__).resolve().parent.parent / "prompts"
JUDGE_PROMPT = PROMPTS / "evol_judge.md"
SAME, DIFFERENT = "同じ", "異なる"
EVOLVED_SCHEMA = {
    "type": "object",
    "properties": {"instruction": {"type": "string", "minLength": 1}, "input": {"type": "string"}},
    "required": ["instruction", "input"],
}


def prompt_path(op: str) -> Path:
    return PROMPTS / "evol" / f"{op}.md"


def origin(op: str) -> str:
    return "evol_breadth" if op == "breadth" else f"evol_depth:{op}"


def pick_operation(row_id: str, round_: int, operations: list[str]) -> str:
    digest = hashlib.sha256(f"{row_id}/{round_}".encode()).digest()
    return operations[int.from_bytes(digest[:8], "big") % len(operations)]


def evolve_prompt(op: str, instruction: str, input_text: str | None) -> str:
    input_block = f"\n# 元の指示の素材（input）\n{input_text}\n" if input_text else ""
    return read_prompt(prompt_path(op))[0].format(instruction=instruction, input_block=input_block)


def evolve_requests(pool: list[dict], round_: int, cfg: EvolConfig) -> list[dict]:
    params = sampling_params(cfg.sampling, {"json": json.dumps(EVOLVED_SCHEMA)})
    requests = []
    for row in pool:
        op = pick_operation(row["id"], round_, cfg.operations)
        requests.append(
            {
                "key": f"evolve/{round_}/{row['id']}",
                "op": op,
                "parent": row,
                "sampling_params": params,
                "messages": [{"role": "user", "content": evolve_prompt(op, row["instruction"], row["input"])}],
            }
        )
    return requests


def parse_evolved(text: str) -> tuple[str, str | None]:
    """(instruction, input) from pass-1 output: a JSON object, else the whole text as the instruction.
    Raises ValueError when there is no text at all."""
    start, end = text.find("{"), text.rfind("}")
    if start != -1 and end > start:
        try:
            data = json.loads(text[start : end + 1])
        except json.JSONDecodeError:
            data = None
        task = task_from_json(data)
        if task is not None:
            return task
    if not text.strip() or text.lstrip().startswith("{"):
        raise ValueError("no instruction in the output")
    return text.strip(), None


def make_children(
    requests: list[dict], outputs: list[dict], round_: int, cfg: EvolConfig, generator_model: str
) -> tuple[list[dict], list[dict]]:
    """Pass-1 outputs → (children that pass the filters, rejected children)."""
    children, rejected = [], []
    for request, output in zip(requests, outputs):
        parent, op = request["parent"], request["op"]
        base = {
            "parent_id": parent["id"],
            "seed_ids": parent["seed_ids"],
            "origin": origin(op),
            "round": round_,
            "domain": parent["domain"],
            "perspective": parent["perspective"],
            "category": parent.get("category"),
            "generator_model": generator_model,
            "prompt_version": read_prompt(prompt_path(op))[1],
            "response": None,
        }
        failed = error_reason(output)
        if failed:  # no answer at all (a prompt too long for the model, an endpoint error)
            rejected.append(
                {
                    **base,
                    "id": content_id(failed[0], request["key"]),
                    "instruction": None,
                    "input": None,
                    "reject_reason": failed[0],
                    "detail": failed[1],
                }
            )
            continue
        try:
            instruction, input_text = parse_evolved(output["text"])
        except ValueError as e:
            rejected.append(
                {
                    **base,
                    "id": content_id("parse_error", request["key"]),
                    "instruction": output["text"],
                    "input": None,
                    "reject_reason": "parse_error",
                    "detail": str(e),
                }
            )
            continue
        bad = lone_surrogate(instruction) or lone_surrogate(input_text)
        if bad:  # the model's JSON escaped half a character: no text to hash, store or train on
            instruction, input_text = printable(instruction), input_text and printable(input_text)
            rejected.append(
                {
                    **base,
                    "id": content_id("invalid_text", request["key"]),
                    "instruction": instruction,
                    "input": input_text,
                    "reject_reason": "invalid_text",
                    "detail": f"lone surrogate {bad} in the model's JSON",
                }
            )
            continue
        child = {**base, "id": content_id(instruction, input_text), "instruction": instruction, "input": input_text}
        if child["id"] == parent["id"]:
            rejected.append(
                {
                    **child,
                    "id": content_id(child["id"], "unchanged", str(round_)),
                    "reject_reason": "no_change",
                    "detail": "identical to its parent",
                }
            )
            continue
        problem = instruction_problem(instruction, input_text, **cfg.filters.model_dump())
        if problem:
            rejected.append({**child, "reject_reason": problem, "detail": None})
        else:
            children.append(child)
    return children, rejected


def judge_request(parent: dict, child: dict, key: str) -> dict:
    def show(row):
        return row["instruction"] + (f"\n{row['input']}" if row["input"] else "")

    prompt = read_prompt(JUDGE_PROMPT)[0].format(parent=show(parent), child=show(child))
    params = sampling_params(SamplingConfig(max_tokens=8, temperature=0.0), {"choice": [SAME, DIFFERENT]})
    return {"key": key, "messages": [{"role": "user", "content": prompt}], "sampling_params": params}


def check_requests(
    children: list[dict], unanswered: list[dict], parents: dict[str, dict], answers: Answers
) -> list[dict]:
    """Pass 2: an answer for every child and every unanswered pool row, and a judgment per child."""
    requests = [answers.request(row) for row in unanswered + children]
    requests += [judge_request(parents[c["parent_id"]], c, f"judge/{c['id']}") for c in children]
    return requests


def eliminate(child: dict, answer: str, verdict: str, cfg: EvolConfig, parent_answer: str | None = None) -> str | None:
    """The reason a child fails, or None when it survives. A refusal fails only where its parent was answered:
    a harder version of a task that got an answer should get one too; the child of a harmful request that was
    declined (`parent_answer` a refusal) may be declined as well, and is kept."""
    if verdict.strip() == SAME:
        return "no_change"
    if verdict.strip() != DIFFERENT:
        return "judge_parse_error"
    if is_refusal(answer) and not (parent_answer and is_refusal(parent_answer)):
        return "refusal_answer"
    if len(answer.strip()) < cfg.min_answer_chars:
        return "short_answer"
    return None
