"""Shared fixtures: one local Ray cluster per test session, the embedded model, and an offline environment.

Tests marked `slow` start real vLLM engines (tens of seconds each on a 2-core CPU).
"""

import os

import pytest

# No hub, no telemetry: these machines reach package registries only.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("VLLM_NO_USAGE_STATS", "1")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")


@pytest.fixture(scope="session")
def ray_local():
    """A real local Ray cluster (4 logical CPUs, 1 GiB object store), shut down after the session."""
    import ray

    from atheus_ray.config import RayConfig
    from atheus_ray.ray_init import init_ray

    if "RAY_ADDRESS" in os.environ:  # tests must not join a real cluster by accident
        pytest.fail("unset RAY_ADDRESS to run the tests")
    info = init_ray(RayConfig(num_cpus=4, object_store_gb=1))
    yield info
    ray.shutdown()


@pytest.fixture(scope="session")
def embedded_model() -> str:
    """The converted embedded model folder (prepared once into ATHEUS_CACHE)."""
    from atheus_ray import models

    return str(models.prepare_embedded())



@pytest.fixture(scope="session")
def tiny_model(embedded_model, tmp_path_factory) -> str:
    """A tiny random Llama with the embedded model's tokenizer: trains in seconds on CPU, loads in vLLM."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    folder = tmp_path_factory.mktemp("tiny_llama")
    tokenizer = AutoTokenizer.from_pretrained(embedded_model)
    torch.manual_seed(0)
    # head_dim 64: vLLM's CPU attention supports no smaller head (16 fails: "Unsupported CPU attention configuration")
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=128, intermediate_size=256, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=2048,
                         bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                         tie_word_embeddings=True)  # fmt: skip
    LlamaForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return str(folder)
