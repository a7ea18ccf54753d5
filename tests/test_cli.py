import json
import subprocess
import sys
from pathlib import Path


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


def test_missing_config_exits_2_naming_the_file(tmp_path):
    done = atheus("pipeline", "--config", str(tmp_path / "absent.yaml"))
    assert done.returncode == 2
    assert f"config file not found: {tmp_path / 'absent.yaml'}" in done.stderr


def test_an_unsupported_uri_out_exits_2_and_writes_nothing(tmp_path):
    """`out: ftp://...` would become a local folder named `ftp:` (Path.resolve); it is refused, naming the key.
    (s3:// and gs:// are written through pyarrow.fs: tests/test_storage.py, tests/test_jobs.py.)"""
    synth = str(Path("jobs/configs/synth.yaml").resolve())
    done = atheus("synth", "--config", synth, "--out", "ftp://host/run", cwd=tmp_path)
    assert done.returncode == 2 and "out: Value error, ftp:// is not a supported place for outputs" in done.stderr
    done = atheus("synth", "--config", synth, "--set", "out=s3://", cwd=tmp_path)
    assert done.returncode == 2 and "needs a bucket" in done.stderr and "(got 's3://')" in done.stderr
    assert list(tmp_path.iterdir()) == []


def test_unknown_override_exits_2_naming_the_key():
    done = atheus("synth", "--config", "jobs/configs/synth.yaml", "--set", "engine.bogus=1")
    assert done.returncode == 2
    assert "engine.bogus: unknown key" in done.stderr
    done = atheus(
        "pipeline", "--config", "jobs/configs/pipeline.yaml", "--set", "train.bogus=1"
    )  # inside an included file
    assert done.returncode == 2
    assert "train.bogus: unknown key" in done.stderr


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


def test_screen_bad_input_exits_2_naming_file_line_and_field(tmp_path):
    bad = tmp_path / "pairs.jsonl"
    bad.write_text(
        '{"instruction": "挨拶して", "output": "こんにちは"}\n{"instruction": "挨拶して"}\n', encoding="utf-8"
    )
    done = atheus("screen", "--in", str(bad), "--out", str(tmp_path / "out"))
    assert done.returncode == 2
    assert f"{bad}:2: output: missing" in done.stderr
    assert not (tmp_path / "out").exists()


def test_screen_without_input_exits_2():
    done = atheus("screen", "--config", "jobs/configs/screen.yaml")
    assert done.returncode == 2 and "no input: give --in PATH" in done.stderr


def test_eval_config_without_both_conditions_exits_2(tmp_path):
    done = atheus(
        "eval",
        "--config",
        "jobs/configs/eval.yaml",
        "--out",
        str(tmp_path),
        "--set",
        "candidates=[{name: open, group: g, model: m1}, {name: other, group: g, model: m2}]",
    )
    assert done.returncode == 2
    assert "candidates: group 'g' needs candidates named 'atheus' and 'open'" in done.stderr
