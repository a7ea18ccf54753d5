"""The SFT memory plan: estimates for llm-jp-3-shaped models, a refusal that names the knobs, and `train` stopping
on the driver before any Ray Train worker starts. (benchmarks/sft_memory.py measures the same shapes on a GPU.)"""

import json
from pathlib import Path

import pytest
import yaml

from atheus_ray.config import ConfigError, TrainConfig, load_config
from atheus_ray.train import memory, run
from atheus_ray.train.memory import MemoryPlanError, ModelShape

# llm-jp-3 980m / 1.8b / 3.7b: the shapes of their config.json files (Llama, untied embeddings, vocab 99,584)
LLM_JP_3 = {
    "980m": ModelShape(
        hidden=1536, intermediate=5376, layers=20, vocab=99584, heads=8, kv_heads=8, head_dim=192, tied=False
    ),
    "1.8b": ModelShape(
        hidden=2048, intermediate=7168, layers=24, vocab=99584, heads=16, kv_heads=16, head_dim=128, tied=False
    ),
    "3.7b": ModelShape(
        hidden=3072, intermediate=8192, layers=28, vocab=99584, heads=24, kv_heads=24, head_dim=128, tied=False
    ),
}
A100_40GB = 42.4  # GB as torch reports it (40 GiB)
CLUSTER_SFT = yaml.safe_load((Path(__file__).resolve().parents[2] / "jobs/configs/cluster/sft.yaml").read_text())


@pytest.mark.parametrize("name,billions", [("980m", 0.99), ("1.8b", 1.87), ("3.7b", 3.78)])
def test_parameter_counts_match_the_model_names(name, billions):
    assert LLM_JP_3[name].params / 1e9 == pytest.approx(billions, rel=0.02)


@pytest.mark.parametrize("name", sorted(LLM_JP_3))
def test_the_cluster_config_fits_an_a100_40gb_and_the_old_one_did_not(name):
    """jobs/configs/cluster/sft.yaml (micro-batch 4 x 2048, activation checkpointing, 8 FSDP workers) fits every
    model with room to spare; the config it replaced (8 x 2048, no checkpointing) fits none of them."""
    shape = LLM_JP_3[name]
    new = memory.check(
        shape,
        CLUSTER_SFT["batch_size"],
        CLUSTER_SFT["max_length"],
        CLUSTER_SFT["num_workers"],
        CLUSTER_SFT["activation_checkpointing"],
        A100_40GB,
        name,
    )
    assert new.total_gb < 0.75 * A100_40GB
    with pytest.raises(MemoryPlanError):
        memory.check(shape, 8, 2048, 8, False, A100_40GB, name)
    # the logits alone: 16k tokens x 99,584 x 14 bytes
    assert memory.estimate(shape, 8, 2048, 8, False).logits_gb == pytest.approx(22.8, abs=0.1)


def test_the_refusal_names_the_knobs_and_a_setting_that_fits():
    with pytest.raises(MemoryPlanError) as e:
        memory.check(LLM_JP_3["3.7b"], 8, 2048, 8, False, A100_40GB, "llm-jp-3-3.7b")
    message = str(e.value)
    assert message.startswith("train: llm-jp-3-3.7b will not fit: ~123")
    for knob in ("train.batch_size", "train.grad_accum", "train.activation_checkpointing", "train.max_length"):
        assert knob in message
    suggested = int(message.split("set train.batch_size=")[1].split()[0].rstrip(","))
    assert (
        memory.estimate(LLM_JP_3["3.7b"], suggested, 2048, 8, "activation_checkpointing=true" in message).total_gb
        <= A100_40GB
    )
    with pytest.raises(MemoryPlanError, match="no micro-batch fits"):
        memory.check(LLM_JP_3["3.7b"], 1, 2048, 1, True, 16.0)


def test_checkpointing_keeps_only_layer_inputs():
    shape = LLM_JP_3["1.8b"]
    off, on = memory.estimate(shape, 4, 2048, 8, False), memory.estimate(shape, 4, 2048, 8, True)
    assert on.activations_gb < off.activations_gb / 10 and on.state_gb == off.state_gb
    assert memory.estimate(shape, 4, 2048, 1, False).state_gb == pytest.approx(16 * shape.params / 1e9, rel=0.01)


def write_rows(path: Path, n: int) -> str:
    rows = [
        {"instruction": f"質問{i}：季節の果物を一つ挙げてください。", "output": f"答え{i}：柿です。"} for i in range(n)
    ]
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return str(path)


def small_config(tmp_path: Path, model: str, **changes) -> TrainConfig:
    data = {
        "out": str(tmp_path / "out"),
        "models": [model],
        "examples": 40,
        "dev_fraction": 0.0,
        "max_length": 256,
        "conditions": [
            {"name": "a", "paths": [write_rows(tmp_path / "a.jsonl", 40)]},
            {"name": "b", "paths": [write_rows(tmp_path / "b.jsonl", 40)]},
        ],
        **changes,
    }
    path = tmp_path / "sft.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return load_config(TrainConfig, path)


@pytest.fixture
def no_workers(monkeypatch):
    """Fail the test if a Ray Train trainer is built: the checks below must stop on the driver."""
    import ray.train.torch

    monkeypatch.setattr(ray.train.torch, "TorchTrainer", lambda *a, **k: pytest.fail("a trainer was started"))


def test_train_refuses_a_config_that_does_not_fit_before_any_worker(ray_local, tiny_model, tmp_path, no_workers):
    cfg = small_config(tmp_path, tiny_model, use_gpu=True, gpu_memory_gb=0.5, batch_size=64, max_length=2048)
    with pytest.raises(MemoryPlanError, match="will not fit.*more than the GPU's 0.5 GB"):
        run.train(cfg, log=lambda m: None)


def test_train_refuses_save_steps_past_the_end_of_a_long_run(ray_local, tiny_model, tmp_path, no_workers):
    """40 examples packed into 256-token sequences, batch 1, 2 epochs: a run of tens of steps; save_steps 500 would
    write no checkpoint before the end."""
    cfg = small_config(tmp_path, tiny_model, batch_size=1, epochs=2, save_steps=500)
    with pytest.raises(ConfigError, match=r"train.save_steps: 500, but a-.* has \d+ optimizer steps"):
        run.train(cfg, log=lambda m: None)


def test_planned_steps_count_packing_workers_accumulation_and_epochs():
    rows = [{"input_ids": [1] * 30, "labels": [1] * 30}] * 10  # two a 64-token sequence: 5 sequences
    cfg = TrainConfig(conditions=[{"name": "a", "paths": ["x"]}], max_length=64, batch_size=2, epochs=2)
    assert run.planned_steps(cfg, rows) == 6  # ceil(5 / 2) = 3 micro-batches an epoch, 2 epochs
    assert run.planned_steps(cfg.model_copy(update={"grad_accum": 3}), rows) == 2
    assert run.planned_steps(cfg.model_copy(update={"num_workers": 5, "batch_size": 1}), rows) == 2
    assert run.planned_steps(cfg.model_copy(update={"packing": False}), rows) == 10


def test_a_warmup_leaves_the_first_step_at_learning_rate_zero():
    cfg = TrainConfig(conditions=[{"name": "a", "paths": ["x"]}], warmup_ratio=0.1)
    assert [run.learning_steps(cfg, n) for n in (1, 2, 30)] == [0, 1, 29]  # ceil(0.1 x n) >= 1 warmup step
    assert run.learning_steps(cfg.model_copy(update={"warmup_ratio": 0.0}), 2) == 2


def test_a_run_of_too_few_learning_steps_says_so():
    cfg = TrainConfig(conditions=[{"name": "a", "paths": ["x"]}], warmup_ratio=0.1)
    assert run.few_steps_warning(cfg, 4) is None  # 3 steps at a non-zero learning rate
    assert run.few_steps_warning(cfg, 1).startswith("only 0 of its 1 optimizer step(s) have a non-zero learning")
    assert "set train.warmup_ratio=0" in run.few_steps_warning(cfg, 3)
    no_warmup = cfg.model_copy(update={"warmup_ratio": 0.0})
    assert run.few_steps_warning(no_warmup, 3) is None
    assert run.few_steps_warning(no_warmup, 2) == (
        "only 2 optimizer step(s): the model will barely move from its base; give it more examples or epochs"
    )
