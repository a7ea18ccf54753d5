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
