"""The one place that builds LLM processors for Ray Data.

`engine.kind: vllm` wraps `ray.data.llm`'s vLLM processor: one or more vLLM engine replicas as Ray actors,
fed batches of rows that carry chat `messages` and per-row `sampling_params`. On CPU each replica gets a
one-CPU placement bundle (without it, vLLM stages wait forever for a GPU); on GPU, Ray Data places
`tensor_parallel_size x pipeline_parallel_size` GPUs per replica. Structured outputs use the xgrammar
backend with `disable_any_whitespace`: JSON comes out compact, instead of the runs of spaces and newlines
a small model otherwise spends its token budget on (and gets cut off in).

`engine.kind: openai` sends the same requests to an OpenAI-compatible `/chat/completions` endpoint through
`ray.data.llm`'s HTTP processor (`concurrency` workers, `qps` cap, retries with exponential backoff on
408/429/502/503/504 and timeouts). Constrained decoding becomes `response_format` JSON schemas (a choice is
a schema with an enum), which both OpenAI and vLLM's server accept. The API key is read from the environment
variable named by `api_key_env` and only ever put in the request header.
"""

from __future__ import annotations

from typing import Callable

import json
import os

import ray
from ray.data.llm import HttpRequestProcessorConfig, Processor, build_processor, vLLMEngineProcessorConfig

from atheus_ray import models
from atheus_ray.config import EngineConfig, ModelConfig, SamplingConfig


def sampling_params(cfg: SamplingConfig, structured: dict | None = None) -> dict:
    """vLLM sampling parameters for one request; `structured` constrains decoding, e.g.
    {"json": schema_as_json_text} or {"choice": ["同じ", "異なる"]} (vLLM structured outputs)."""
    return {"max_tokens": cfg.max_tokens, "temperature": cfg.temperature, "top_p": cfg.top_p,
            "repetition_penalty": cfg.repetition_penalty, "structured_outputs": structured}  # fmt: skip


def build_llm_processor(
    model: ModelConfig,
    engine: EngineConfig,
    preprocess: Callable[[dict], dict],
    postprocess: Callable[[dict], dict],
) -> Processor:
    """A `ray.data.llm` processor: `preprocess` must return `messages` and `sampling_params`;
    `postprocess` receives them back with `generated_text` and `num_generated_tokens`."""
    extra = {}
    if engine.accelerator == "cpu":
        extra["placement_group_config"] = {"bundles": [{"CPU": 1}]}
    config = vLLMEngineProcessorConfig(
        model_source=models.resolve(model.source),
        engine_kwargs={
            "dtype": model.dtype,
            "max_model_len": model.max_model_len,
            "gpu_memory_utilization": engine.gpu_memory_utilization,
            "tensor_parallel_size": engine.tensor_parallel_size,
            "pipeline_parallel_size": engine.pipeline_parallel_size,
            "enforce_eager": engine.enforce_eager,
            "seed": engine.seed,
            "structured_outputs_config": {"backend": "xgrammar", "disable_any_whitespace": True},
        },
        batch_size=engine.batch_size,
        concurrency=engine.concurrency,
        **extra,
    )
    return build_processor(config, preprocess=preprocess, postprocess=postprocess)


def generate(requests: list[dict], model: ModelConfig, engine: EngineConfig) -> list[dict]:
    """Run chat requests through one processor (for vLLM: one engine start) and return, in request order,
    {key, text, tokens_in, tokens_out} for each. A request is {key, messages, sampling_params}; requests of
    different kinds (plain answers, JSON, choices) can share one pass."""
    if not requests:
        return []
    if engine.kind == "openai":
        processor = _openai_processor(model, engine)
    else:

        def preprocess(row: dict) -> dict:
            return {"key": row["key"], "messages": row["messages"], "sampling_params": row["sampling_params"]}

        def postprocess(row: dict) -> dict:
            return {"key": row["key"], "text": row["generated_text"], "tokens_in": int(row["num_input_tokens"]),
                    "tokens_out": int(row["num_generated_tokens"])}  # fmt: skip

        processor = build_llm_processor(model, engine, preprocess, postprocess)
    done = {row["key"]: row for row in processor(ray.data.from_items(requests)).take_all()}
    return [done[r["key"]] for r in requests]


CHOICE_KEY = "answer"


def openai_payload(request: dict, model_name: str) -> dict:
    """An OpenAI chat-completions body for a request; structured outputs become `response_format`."""
    params = dict(request["sampling_params"])
    structured = params.pop("structured_outputs", None) or {}
    params.pop("repetition_penalty", None)  # not an OpenAI parameter
    body = {"model": model_name, "messages": request["messages"], **params}
    if structured.get("json"):
        schema = json.loads(structured["json"])
        body["response_format"] = {"type": "json_schema", "json_schema": {"name": "output", "schema": schema}}
    elif structured.get("choice"):
        schema = {"type": "object", "properties": {CHOICE_KEY: {"type": "string", "enum": list(structured["choice"])}},
                  "required": [CHOICE_KEY], "additionalProperties": False}  # fmt: skip
        body["response_format"] = {"type": "json_schema", "json_schema": {"name": "choice", "schema": schema}}
    return body


def openai_text(response: dict, choice: bool) -> str:
    """The message text of a chat-completions response (a choice unwrapped from its JSON); '' if none."""
    try:
        text = response["choices"][0]["message"]["content"] or ""
    except (KeyError, IndexError, TypeError):
        return ""
    if choice:
        try:
            return str(json.loads(text)[CHOICE_KEY])
        except (ValueError, KeyError, TypeError):
            return text
    return text


def _openai_processor(model: ModelConfig, engine: EngineConfig) -> Processor:
    key = os.environ.get(engine.api_key_env)
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    config = HttpRequestProcessorConfig(
        url=engine.base_url.rstrip("/") + "/chat/completions",
        headers=headers,
        qps=engine.qps,
        max_retries=engine.max_retries,
        batch_size=engine.batch_size,
        concurrency=engine.concurrency,
    )

    def preprocess(row: dict) -> dict:
        is_choice = bool((row["sampling_params"].get("structured_outputs") or {}).get("choice"))
        return {"key": row["key"], "is_choice": is_choice, "payload": openai_payload(row, model.source)}

    def postprocess(row: dict) -> dict:
        response = row["http_response"]
        usage = response.get("usage") or {}
        return {"key": row["key"], "text": openai_text(response, row["is_choice"]),
                "tokens_in": int(usage.get("prompt_tokens") or 0), "tokens_out": int(usage.get("completion_tokens") or 0)}  # fmt: skip

    return build_processor(config, preprocess=preprocess, postprocess=postprocess)
