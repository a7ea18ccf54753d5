"""`atheus doctor`: what this machine has for running the pipeline.

Prints the versions of Python, Ray, vLLM, torch and transformers, whether vLLM imports, CPU or GPU, the
embedded model's cache state, and which Ray cluster a job would use. Imports are tried one by one so a broken
package is reported, not fatal.
"""

from __future__ import annotations

import importlib
import os
import platform

from atheus_ray import models


def _version(module: str) -> str:
    try:
        return getattr(importlib.import_module(module), "__version__", "installed")
    except Exception as e:  # report any import failure, e.g. the torchvision::nms trap
        return f"NOT USABLE ({type(e).__name__}: {str(e).splitlines()[0][:120]})"


def report() -> list[tuple[str, str]]:
    lines = [("python", platform.python_version()), ("platform", platform.platform())]
    for module in ("ray", "torch", "transformers", "vllm", "datasets", "pyarrow"):
        lines.append((module, _version(module)))
    try:
        import torch

        gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
        lines.append(("accelerator", f"GPU x{gpus} ({torch.cuda.get_device_name(0)})" if gpus else "CPU only"))
    except Exception:
        lines.append(("accelerator", "unknown (torch not usable)"))
    lines.append(("cpu cores", str(os.cpu_count())))
    path = models.embedded_path()
    state = "prepared" if (path / ".prepared").exists() else "not prepared (run `atheus models prepare`)"
    lines.append(("embedded model", f"{path} ({state})"))
    lines.append(("ray address", os.environ.get("RAY_ADDRESS") or "none set: jobs start a local cluster"))
    return lines


def main() -> int:
    rows = report()
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        print(f"{key:<{width}}  {value}")
    return 1 if any("NOT USABLE" in v for _, v in rows) else 0
