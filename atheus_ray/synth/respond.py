"""Responses: the generator model answers every instruction.

Reads:  every column of the row contract, plus `instruction` and `input` (None or text).
Writes: the same columns, plus
        `response` (the answer), `response_model` (model source), `response_prompt_version` (hash of
        prompts/respond.md), `response_tokens` (tokens generated) and `response_truncated` (hit max_tokens).
Rows whose answer is empty are split off by `split_rejected` with `reject_reason = "empty_response"`.
"""

from __future__ import annotations

from pathlib import Path

from atheus_ray.config import EngineConfig, ModelConfig, SamplingConfig
from atheus_ray.engine import build_llm_processor, sampling_params
from atheus_ray.rows import prompt_version

PROMPT = Path(__file__).resolve().parent.parent / "prompts" / "respond.md"


def user_message(instruction: str, input_text: str | None) -> str:
    """The user turn: the instruction, then its input (if any) after a blank line."""
    return instruction if not input_text else f"{instruction}\n\n{input_text}"


def respond(ds, columns: list[str], model: ModelConfig, engine: EngineConfig, sampling: SamplingConfig):
    """Add an answer to every row of `ds` (whose columns are `columns`); returns a lazy Dataset."""
    system = PROMPT.read_text(encoding="utf-8").strip()
    version = prompt_version(PROMPT)
    params = sampling_params(sampling)
    max_tokens = sampling.max_tokens

    def preprocess(row: dict) -> dict:
        messages = [
            {"role": "system", "content": system},
            {"role": "user", "content": user_message(row["instruction"], row.get("input"))},
        ]
        return {**row, "messages": messages, "sampling_params": params}

    def postprocess(row: dict) -> dict:
        tokens = int(row["num_generated_tokens"])
        return {
            **{c: row[c] for c in columns},
            "response": row["generated_text"].strip(),
            "response_model": model.source,
            "response_prompt_version": version,
            "response_tokens": tokens,
            "response_truncated": tokens >= max_tokens,
        }

    return build_llm_processor(model, engine, preprocess, postprocess)(ds)


def split_rejected(ds):
    """(kept, rejected): rows with an empty answer go to `rejected` with a `reject_reason`."""
    ds = ds.materialize()
    kept = ds.filter(lambda r: bool(r["response"]))
    rejected = ds.filter(lambda r: not r["response"]).map(lambda r: {**r, "reject_reason": "empty_response"})
    return kept, rejected
