"""SFT through Ray Train on CPU with a tiny random Llama: loss goes down, the export serves in vLLM, and a
killed run resumes from its checkpoint."""

import json
import math
import sys
import tempfile
from pathlib import Path

import pytest
import yaml

from atheus_ray.config import EngineConfig, ModelConfig, SamplingConfig, TrainConfig, load_config
from atheus_ray.engine import generate, sampling_params
from atheus_ray.train.data import load_condition, subsample_and_split
from atheus_ray.train.pack import pack
from atheus_ray.train.run import train
from atheus_ray.train.tokens import encode

pytestmark = pytest.mark.slow


def expected_steps(cfg: TrainConfig, condition) -> int:
    """Optimizer steps of an unbroken run: packed training sequences / batch size, times epochs."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(cfg.models[0])
    examples, _ = load_condition(condition)
    train_rows, _, _ = subsample_and_split(examples, cfg.examples, cfg.dev_fraction, cfg.seed)
    packs = pack([encode(r["messages"], tokenizer, cfg.max_length) for r in train_rows], cfg.max_length)
    return math.ceil(len(packs) / cfg.batch_size) * int(cfg.epochs)


def write_condition(folder: Path, name: str, n: int) -> str:
    path = folder / f"{name}.jsonl"
    rows = [
        {"instruction": f"{name}の質問{i}：季節の果物を一つ挙げてください。", "output": f"{name}の答え{i}：柿です。"}
        for i in range(n)
    ]
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return str(path)


def config_file(tmp_path: Path, tiny_model: str, **changes) -> Path:
    data = {
        "out": str(tmp_path / "out"),
        "models": [tiny_model],
        "conditions": [
            {"name": "open", "paths": [write_condition(tmp_path, "open", 12)]},
            {"name": "atheus", "paths": [write_condition(tmp_path, "atheus", 10)]},
        ],
        "examples": 10,
        "dev_fraction": 0.2,
        "max_length": 256,
        "epochs": 3,
        "batch_size": 2,
        "lr": 1e-3,
        "min_lr": 1e-4,
        "warmup_ratio": 0.0,
        "save_steps": 2,
        "seed": 0,
        **changes,
    }
    path = tmp_path / "sft.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return path


def test_trains_every_condition_lowers_the_loss_and_exports_for_vllm(ray_local, tiny_model, tmp_path, monkeypatch):
    from atheus_ray import console

    monkeypatch.setattr(console.progress, "EVERY", 0.0)  # a progress line at every step the driver hears of
    cfg = load_config(TrainConfig, config_file(tmp_path, tiny_model))
    logs = []
    summary = train(cfg, log=logs.append)
    assert [(r["condition"], r["resumed"]) for r in summary["runs"]] == [("open", False), ("atheus", False)]
    for run in summary["runs"]:
        history = json.loads((Path(run["export"]) / "log_history.json").read_text())
        losses = [h["loss"] for h in history if "loss" in h]
        assert len(losses) >= 4 and losses[-1] < losses[0], losses
        assert run["eval_loss"] > 0 and run["real_tokens_per_second"] > 0
        condition = next(c for c in cfg.conditions if c.name == run["condition"])
        assert run["global_step"] == expected_steps(cfg, condition)
        assert (Path(cfg.out) / run["run"] / "loss.png").read_bytes()[:4] == b"\x89PNG"
    assert list((Path(cfg.out) / "checkpoints").iterdir()) == []  # finished: model kept, checkpoints gone
    # the driver showed rank 0's steps as it trained: "[open-tiny] steps: 3/12 (2 s, about 6 s left)"
    for run in summary["runs"]:
        shown = [m for m in logs if m.startswith(f"[{run['run']}] steps: ")]
        assert shown and all(f"/{run['global_step']} (" in m for m in shown), logs
    again = train(cfg, log=lambda m: None)  # the same command again reuses the finished runs
    assert all(r["resumed"] for r in again["runs"])

    export = summary["runs"][0]["export"]
    request = {
        "key": "q",
        "messages": [{"role": "user", "content": "季節の果物を一つ挙げてください。"}],
        "sampling_params": sampling_params(SamplingConfig(max_tokens=8, temperature=0)),
    }
    [out] = generate([request], ModelConfig(source=export, max_model_len=512), EngineConfig(batch_size=4))
    assert out["tokens_out"] > 0


def test_a_killed_run_resumes_at_its_checkpoint(ray_local, tiny_model, tmp_path, marked_run):
    """`atheus train` SIGKILLed as it starts and after a checkpoint (the third point, after its final checkpoint,
    is the next test's), the same command each time: the last run resumes at the checkpoint and ends where an
    unbroken run would; nothing of the killed runs is left."""
    path = config_file(
        tmp_path,
        tiny_model,
        models=[tiny_model],
        epochs=12,
        save_steps=3,
        conditions=[{"name": "open", "paths": [write_condition(tmp_path, "open", 12)]}],
    )
    storage = tmp_path / "out" / "checkpoints"

    def registered() -> bool:  # a checkpoint Ray Train has recorded, not a folder still being uploaded
        for snapshot in storage.glob("*/checkpoint_manager_snapshot.json"):
            try:
                return json.loads(snapshot.read_text())["latest_checkpoint_result"] is not None
            except (ValueError, KeyError):  # being written
                return False
        return False

    command = [sys.executable, "-m", "atheus_ray.cli", "train", "--config", str(path)]
    # early: the run planned (its step count printed), its training worker starting, no checkpoint yet
    marked_run.killed_when(command, lambda out: "optimizer steps" in out, "as it starts", tmp_path / "early.log")
    assert not registered()
    # mid-run: once Ray Train has recorded a checkpoint (the same command again)
    marked_run.killed_when(command, lambda out: registered(), "after a checkpoint", tmp_path / "late.log")
    [run_dir] = [p.parent for p in storage.glob("*/checkpoint_manager_snapshot.json")]
    scratch = Path(tempfile.gettempdir()) / f"atheus-sft-{run_dir.name}-0"  # the killed worker's, left behind
    assert scratch.exists()

    cfg = load_config(TrainConfig, path)
    [run] = train(cfg, log=lambda m: None)["runs"]
    assert run["resumed_from_step"] >= 3 and run["resumed_from_step"] % 3 == 0  # a checkpoint step, not 0
    assert run["global_step"] == expected_steps(cfg, cfg.conditions[0])  # the same end as an unbroken run
    assert list(storage.iterdir()) == []  # finished: the checkpoints that resumed it are gone
    assert not scratch.exists()  # and so is the scratch the killed worker left


def test_a_driver_that_dies_after_the_final_checkpoint_finishes_without_training_again(
    ray_local, tiny_model, tmp_path, monkeypatch
):
    """The driver dies after Ray Train recorded the final checkpoint (the export) and before metrics.json: the
    rerun finds that checkpoint, trains no step again, and records the same run (it used to look for a trainer
    checkpoint inside the export and crash)."""
    from atheus_ray.train import run as train_run

    path = config_file(
        tmp_path,
        tiny_model,
        models=[tiny_model],
        epochs=2,
        conditions=[{"name": "open", "paths": [write_condition(tmp_path, "open", 12)]}],
    )
    cfg = load_config(TrainConfig, path)

    def die(*args, **kwargs):
        raise KeyboardInterrupt("the driver dies here")

    monkeypatch.setattr(train_run, "_loss_chart", die)  # after the export is copied, before metrics.json
    with pytest.raises(KeyboardInterrupt):
        train(cfg, log=lambda m: None)
    run_dir = Path(cfg.out) / train_run.run_name("open", tiny_model)
    first = json.loads((run_dir / "model" / "train_metrics.json").read_text())
    assert not (run_dir / "metrics.json").exists()
    monkeypatch.undo()

    [run] = train(cfg, log=lambda m: None)["runs"]
    assert (run["global_step"], run["train_seconds"], run["train_loss"]) == (
        first["global_step"],
        first["train_seconds"],
        first["train_loss"],
    )  # the same run, reported again
    assert (run_dir / "metrics.json").exists() and list((Path(cfg.out) / "checkpoints").iterdir()) == []

    # dying after metrics.json but before the checkpoints were deleted: the next run reuses it and deletes them
    leftover = Path(cfg.out) / "checkpoints" / f"{run['run']}-{run['fingerprint']}" / "checkpoint_000001"
    leftover.mkdir(parents=True)
    [again] = train(cfg, log=lambda m: None)["runs"]
    assert again["resumed"] and not leftover.parent.exists()


def test_a_cpu_worker_runs_on_the_jemalloc_that_ships_with_ray():
    """CPU training workers preload Ray's own jemalloc, told to keep freed memory (see cpu_worker_env)."""
    from atheus_ray.train.run import cpu_worker_env

    env = cpu_worker_env()["env_vars"]
    assert Path(env["LD_PRELOAD"]).is_file() and env["LD_PRELOAD"].endswith("libjemalloc.so")
    assert env["MALLOC_CONF"] == "dirty_decay_ms:-1,muzzy_decay_ms:-1"
