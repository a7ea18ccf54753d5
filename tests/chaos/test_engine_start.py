"""An engine that cannot start stops the run, soon, with the model and the engine's own error: a model folder
whose weights are corrupt (vLLM fails to load them; Serve tries the replica 3 times, then gives up). No Serve
app is left behind."""

import shutil
import time

import pytest
from ray import serve

from atheus_ray.config import EngineConfig, ModelConfig, SamplingConfig
from atheus_ray.engine import SERVE_APP, Engine, sampling_params
from atheus_ray.serve.app import EngineStartError, last_error

REQUEST = {
    "key": "q",
    "messages": [{"role": "user", "content": "こんにちは"}],
    "sampling_params": sampling_params(SamplingConfig(max_tokens=4, temperature=0)),
}


def test_the_error_line_of_a_replicas_traceback():
    message = (
        "The deployment failed to start 3 times in a row. Error:\nTraceback (most recent call last):\n"
        '  File "x.py", line 1, in f\n    raise RuntimeError(...)\n'
        "RuntimeError: Failed to create vLLM engine config: 1 validation error for VllmConfig\n"
        "  Value error, Error while deserializing header: invalid JSON [type=value_error]\n"
        "    For further information visit https://errors.pydantic.dev/2.14/v/value_error\n"
    )
    assert last_error(message) == (
        "RuntimeError: Failed to create vLLM engine config: 1 validation error for VllmConfig / "
        "Value error, Error while deserializing header: invalid JSON [type=value_error]"
    )
    assert last_error("replica died") == "replica died"


def apps() -> list[str]:
    try:
        return list(serve.status().applications)
    except Exception:  # no Serve instance running: no app either
        return []


@pytest.mark.slow
def test_corrupt_weights_stop_the_pass_with_the_engines_error(ray_local, tiny_model, tmp_path):
    broken = tmp_path / "broken-model"
    shutil.copytree(tiny_model, broken)
    (broken / "model.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{not json")
    began = time.time()
    with pytest.raises(EngineStartError) as failure:
        with Engine(ModelConfig(source=str(broken), max_model_len=512), EngineConfig(batch_size=2)) as llm:
            llm.generate([REQUEST])
    message = str(failure.value)
    print(f"failed in {time.time() - began:.0f} s: {message[:300]}")
    assert f"the engine of {broken} failed to start: Engine:generator: RuntimeError: " in message
    # vLLM's own words: the weights' header (the JSON at the start of a safetensors file) does not parse
    assert "Expecting property name enclosed in double quotes" in message and len(message) < 1000
    assert SERVE_APP not in apps() and not apps()  # no app, and no Serve either: the next start sets its own proxy
