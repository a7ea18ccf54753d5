import json
import subprocess
import sys


def atheus(*args, **kw):
    return subprocess.run(
        [sys.executable, "-m", "atheus_ray.cli", *args], capture_output=True, text=True, timeout=300, **kw
    )


def test_help_lists_the_commands():
    done = atheus("--help")
    assert done.returncode == 0
    for command in ("doctor", "models", "seeds", "synth", "screen", "train", "eval", "serve", "pipeline"):
        assert command in done.stdout


def test_doctor_reports_versions():
    done = atheus("doctor")
    assert done.returncode == 0, done.stdout + done.stderr
    for key in ("ray", "vllm", "torch", "transformers", "accelerator", "ray address"):
        assert any(line.startswith(key) for line in done.stdout.splitlines()), key
    assert "NOT USABLE" not in done.stdout


def test_bad_seed_file_exits_2_naming_file_line_and_field(tmp_path):
    bad = tmp_path / "bad.jsonl"
    row = {
        "id": "a",
        "perspective": "fluency",
        "category": "qa",
        "domain": "nowhere",
        "instruction": "x",
        "output": "y",
    }
    bad.write_text(json.dumps(row) + "\n", encoding="utf-8")
    done = atheus(
        "pipeline",
        "--config",
        "jobs/configs/pipeline.yaml",
        "--set",
        f"synth.seeds.paths=[{bad}]",
        "--out",
        str(tmp_path / "out"),
    )
    assert done.returncode == 2
    assert f"{bad}:1: domain: unknown domain 'nowhere'" in done.stderr
    assert not (tmp_path / "out").exists()  # nothing was written
