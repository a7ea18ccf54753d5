from pathlib import Path

import pytest

from atheus_ray.config import ConfigError, SynthConfig, apply_overrides, load_config


def write(tmp_path, text, name="c.yaml"):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_defaults_without_a_file():
    cfg = load_config(SynthConfig)
    assert cfg.model.source == "embedded"
    assert cfg.engine.accelerator == "cpu"


def test_shipped_local_config_loads():
    cfg = load_config(SynthConfig, "jobs/configs/synth.yaml")
    assert cfg.seeds.limit and cfg.engine.enforce_eager
    assert cfg.self_instruct.filters.min_ja_ratio < SynthConfig().self_instruct.filters.min_ja_ratio  # loose locally


def test_unknown_key_is_named(tmp_path):
    path = write(tmp_path, "engine:\n  batch_sise: 4\n")
    with pytest.raises(ConfigError) as e:
        load_config(SynthConfig, path)
    assert f"{path}: engine.batch_sise: unknown key" in str(e.value)


def test_unknown_section_is_named(tmp_path):
    with pytest.raises(ConfigError, match="enigne: unknown key"):
        load_config(SynthConfig, write(tmp_path, "enigne: {}\n"))


def test_wrong_type_is_named(tmp_path):
    with pytest.raises(ConfigError) as e:
        load_config(SynthConfig, write(tmp_path, "engine:\n  batch_size: many\n"))
    assert "engine.batch_size" in str(e.value) and "'many'" in str(e.value)


def test_bad_literal_is_named(tmp_path):
    with pytest.raises(ConfigError, match="engine.accelerator"):
        load_config(SynthConfig, write(tmp_path, "engine:\n  accelerator: tpu\n"))


def test_missing_file_is_named(tmp_path):
    missing = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError, match=f"config file not found: {missing}"):
        load_config(SynthConfig, missing)


def test_invalid_yaml_and_non_mapping(tmp_path):
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(SynthConfig, write(tmp_path, "engine: [1, 2\n"))
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        load_config(SynthConfig, write(tmp_path, "- 1\n- 2\n", "list.yaml"))


def test_overrides_are_typed_and_nested(tmp_path):
    path = write(tmp_path, "engine:\n  batch_size: 4\n")
    cfg = load_config(
        SynthConfig,
        path,
        [
            "engine.batch_size=16",
            "seeds.paths=[a.jsonl, b.jsonl]",
            "respond.sampling.temperature=0",
            "ray.address=auto",
            "self_instruct.sampling.max_tokens=99",
            "evol.operations=[deepen]",
        ],
    )
    assert cfg.engine.batch_size == 16
    assert cfg.seeds.paths == ["a.jsonl", "b.jsonl"]
    assert cfg.respond.sampling.temperature == 0.0
    assert cfg.ray.address == "auto"
    assert cfg.self_instruct.sampling.max_tokens == 99 and cfg.evol.operations == ["deepen"]


def test_override_errors():
    with pytest.raises(ConfigError, match="expected KEY=VALUE"):
        load_config(SynthConfig, None, ["engine.batch_size"])
    with pytest.raises(ConfigError, match="engine.bogus: unknown key"):
        load_config(SynthConfig, None, ["engine.bogus=1"])
    with pytest.raises(ConfigError, match="out is not a section"):
        load_config(SynthConfig, None, ["out=x", "out.deeper=1"])
    with pytest.raises(ConfigError, match="engine.batch_size"):
        load_config(SynthConfig, None, ["engine.batch_size=0"])
    with pytest.raises(ConfigError, match="evol.operations.0"):
        load_config(SynthConfig, None, ["evol.operations=[reverse]"])


def test_apply_overrides_does_not_touch_its_input():
    data = {"engine": {"batch_size": 4}}
    assert apply_overrides(data, ["engine.batch_size=8"]) == {"engine": {"batch_size": 8}}
    assert data == {"engine": {"batch_size": 4}}


def test_cluster_synth_config_loads():
    cfg = load_config(SynthConfig, "jobs/configs/cluster/synth.yaml")
    assert cfg.engine.accelerator == "gpu" and cfg.engine.tensor_parallel_size == 2
    assert cfg.model.source == "mistralai/Mistral-Small-24B-Instruct-2501"


CONFIGS = [
    ("jobs/configs/synth.yaml", "SynthConfig"),
    ("jobs/configs/cluster/synth.yaml", "SynthConfig"),
    ("jobs/configs/screen.yaml", "ScreenJobConfig"),
    ("jobs/configs/sft.yaml", "TrainConfig"),
    ("jobs/configs/cluster/sft.yaml", "TrainConfig"),
    ("jobs/configs/eval.yaml", "EvalConfig"),
    ("jobs/configs/serve.yaml", "ServeAppConfig"),
    ("jobs/configs/pipeline.yaml", "PipelineConfig"),
    ("jobs/configs/cluster/screen.yaml", "ScreenJobConfig"),
    ("jobs/configs/cluster/eval.yaml", "EvalConfig"),
    ("jobs/configs/cluster/serve.yaml", "ServeAppConfig"),
    ("jobs/configs/cluster/pipeline.yaml", "PipelineConfig"),
]


def test_every_config_file_is_checked():
    shipped = {str(p) for p in Path("jobs/configs").rglob("*.yaml")}
    assert shipped == {path for path, _ in CONFIGS}


@pytest.mark.parametrize("path,cls", CONFIGS)
def test_every_shipped_config_loads(path, cls):
    import atheus_ray.config as config

    model = getattr(config, cls)
    cfg = load_config(model, path)  # raises ConfigError on an unknown key or a wrong type
    assert model.model_validate(cfg.model_dump()) == cfg  # and what it holds survives a round trip


def test_cluster_sft_trains_the_three_llm_jp_sizes_on_both_conditions():
    from atheus_ray.config import TrainConfig

    cfg = load_config(TrainConfig, "jobs/configs/cluster/sft.yaml")
    assert cfg.models == ["llm-jp/llm-jp-3-980m", "llm-jp/llm-jp-3-1.8b", "llm-jp/llm-jp-3-3.7b"]
    assert [c.name for c in cfg.conditions] == ["open", "atheus"] and cfg.use_gpu
    assert all(c.license for c in cfg.conditions)


def test_a_section_can_be_a_file_and_overrides_reach_inside(tmp_path):
    from atheus_ray.config import PipelineConfig

    cfg = load_config(PipelineConfig, "jobs/configs/pipeline.yaml", ["train.epochs=3", "synth.seeds.limit=5"])
    assert cfg.train.epochs == 3 and cfg.synth.seeds.limit == 5
    assert cfg.eval.judge.source == "embedded"  # the rest of eval.yaml came along
    bad = write(tmp_path, "synth: nowhere.yaml\ntrain: jobs/configs/sft.yaml\neval: jobs/configs/eval.yaml\n")
    with pytest.raises(ConfigError, match="synth: config file not found: nowhere.yaml"):
        load_config(PipelineConfig, bad)
