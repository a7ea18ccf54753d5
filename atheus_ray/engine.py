"""The one place that builds LLM processors for Ray Data.

`build_llm_processor` wraps `ray.data.llm`'s vLLM processor: one or more vLLM engine replicas as Ray actors,
fed batches of rows that carry chat `messages` and per-row `sampling_params`. On CPU each replica gets a
one-CPU placement bundle (without it, vLLM stages wait forever for a GPU); on GPU, Ray Data places
`tensor_parallel_size x pipeline_parallel_size` GPUs per replica.
"""

from __future__ import annotations

from typing import Callable

from ray.data.llm import Processor, build_processor, vLLMEngineProcessorConfig

from atheus_ray import models
from atheus_ray.config import EngineConfig, ModelConfig, SamplingConfig


def sampling_params(cfg: SamplingConfig) -> dict:
    """vLLM sampling parameters for one request."""
    return {"max_tokens": cfg.max_tokens, "temperature": cfg.temperature, "top_p": cfg.top_p}


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
        },
        batch_size=engine.batch_size,
        concurrency=engine.concurrency,
        **extra,
    )
    return build_processor(config, preprocess=preprocess, postprocess=postprocess)
