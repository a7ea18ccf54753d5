"""The pipeline's wiring: each phase reads and writes inside OUT, the synthetic condition trains on the data set
this run makes, and the trained models become the evaluation's candidates."""

import pytest

from atheus_ray.config import ConfigError, PipelineConfig, load_config
from atheus_ray.pipeline import wire


def shipped(*overrides) -> PipelineConfig:
    return load_config(PipelineConfig, "jobs/configs/pipeline.yaml", ["out=/tmp/run", *overrides])


def test_phases_meet_inside_out():
    cfg = wire(shipped())
    assert (cfg.synth.out, cfg.train.out, cfg.eval.out) == ("/tmp/run/data", "/tmp/run/sft", "/tmp/run/eval")
    assert cfg.synth.ray == cfg.train.ray == cfg.eval.ray == cfg.ray
    paths = {c.name: c.paths for c in cfg.train.conditions}
    assert paths["atheus"] == ["/tmp/run/data/sft/train.jsonl"] and paths["open"] == ["seeds/*.jsonl"]
    assert [(c.name, c.group, c.model) for c in cfg.eval.candidates] == [
        ("open", "SmolLM2-135M-Instruct", "/tmp/run/sft/open-SmolLM2-135M-Instruct/model"),
        ("atheus", "SmolLM2-135M-Instruct", "/tmp/run/sft/atheus-SmolLM2-135M-Instruct/model"),
    ]


def test_every_model_and_condition_is_a_candidate():
    cfg = wire(shipped("train.models=[embedded, some/other-model]"))
    assert len(cfg.eval.candidates) == 4
    assert {c.group for c in cfg.eval.candidates} == {"SmolLM2-135M-Instruct", "some/other-model"}


def test_wiring_leaves_the_input_alone():
    cfg = shipped()
    wire(cfg)
    assert cfg.synth.out == "outputs/local"


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["synthetic=mine"], "synthetic: no training condition is named 'mine'"),
        (["eval.x=other"], "'other' is not a training condition"),
        (["synth.screen.enabled=false"], "synth.screen.enabled"),
    ],
)
def test_configs_that_cannot_be_wired_are_named(overrides, message):
    with pytest.raises(ConfigError, match=message):
        wire(shipped(*overrides))
