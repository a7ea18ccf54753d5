"""Shared fixtures: one local Ray cluster per test session, a `ray start --head` cluster per test that asks for
one, the embedded model, a tiny trainable model, and an offline environment.

Tests marked `slow` start real vLLM engines (tens of seconds each on a 2-core CPU).
"""

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

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


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def free_port():
    """A function that returns a TCP port free on 127.0.0.1 now."""
    return _free_port


@pytest.fixture
def ray_head(tmp_path):
    """A `ray start --head` cluster of the test's own (8 logical CPUs, job server), as users start one.

    Every port and the temp dir are its own: the session's local cluster holds Ray's default ports. `ray start`
    turns token auth on (token in ~/.ray/auth_token), so `env` opts the CLI and drivers in. Yields `address`
    (GCS), `dashboard` (job server URL), `env` and `log` (the head's output); stops the head afterwards.
    """
    bin_dir = Path(sys.executable).parent
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env["PATH"] = f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"  # a job's `python` is this environment's
    env["RAY_AUTH_MODE"] = "token"
    port, dashboard = _free_port(), _free_port()
    ports = [f"--{name}={_free_port()}" for name in ("dashboard-agent-listen-port", "dashboard-agent-grpc-port",
             "runtime-env-agent-port", "metrics-export-port", "ray-client-server-port")]  # fmt: skip
    temp = tempfile.mkdtemp(prefix="rh", dir="/tmp")  # short: Ray's unix sockets live under it
    log = tmp_path / "head.log"
    with open(log, "wb") as out:
        # --block keeps the head in its own process group, so one signal stops it (and only it)
        head = subprocess.Popen(
            [bin_dir / "ray", "start", "--head", "--block", f"--port={port}", f"--dashboard-port={dashboard}",
             "--num-cpus=8", "--object-store-memory=1000000000", "--include-dashboard=true",
             "--disable-usage-stats", f"--temp-dir={temp}", *ports],
            env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    url = f"http://127.0.0.1:{dashboard}"
    try:
        for _ in range(120):  # the job server answers once the dashboard is up
            assert head.poll() is None, log.read_text(errors="replace")[-3000:]
            if subprocess.run([bin_dir / "ray", "job", "list", f"--address={url}"], env=env,
                              capture_output=True).returncode == 0:  # fmt: skip
                break
            time.sleep(1)
        else:
            pytest.fail(f"the head's job server did not answer in 120 s: {log.read_text(errors='replace')[-3000:]}")
        yield {"address": f"127.0.0.1:{port}", "dashboard": url, "env": env, "log": log}
    finally:
        os.killpg(head.pid, signal.SIGTERM)
        try:
            head.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(head.pid, signal.SIGKILL)
        shutil.rmtree(temp, ignore_errors=True)
        current = Path("/tmp/ray/ray_current_cluster")  # `ray start` names its head here, even with --temp-dir
        if current.exists() and current.read_text().strip().endswith(f":{port}"):
            current.unlink()
