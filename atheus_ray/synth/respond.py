"""Responses: the generator model answers an instruction (prompts/respond.md is the system prompt).

Reads:  `instruction` and `input` (None or text) of a row.
Writes: `response` (the answer, stripped), `response_model`, `response_prompt_version` (hash of
        prompts/respond.md), `response_tokens` (tokens generated) and `response_truncated` (hit max_tokens).
A row whose answer is empty is rejected with `reject_reason = "empty_response"`.
"""

from __future__ import annotations

from pathlib import Path

from atheus_ray.config import SamplingConfig
from atheus_ray.engine import sampling_params
from atheus_ray.rows import read_prompt, user_message

PROMPT = Path(__file__).resolve().parent.parent / "prompts" / "respond.md"


def answer_request(row: dict, key: str, sampling: SamplingConfig) -> dict:
    """A chat request {key, messages, sampling_params} that asks for the answer to `row`."""
    messages = [
        {"role": "system", "content": read_prompt(PROMPT)[0].strip()},
        {"role": "user", "content": user_message(row["instruction"], row["input"])},
    ]
    return {"key": key, "messages": messages, "sampling_params": sampling_params(sampling)}


def with_answer(row: dict, output: dict, model_name: str, sampling: SamplingConfig) -> dict:
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
        "response_truncated": output["tokens_out"] >= sampling.max_tokens,
    }
