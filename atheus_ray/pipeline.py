"""Phases composed: seeds → data set (synthesis + screening) → SFT of every condition → Serve → evaluation.

    atheus synth    --config jobs/configs/synth.yaml [--set key=value ...]    # synthesis + screening
    atheus pipeline --config jobs/configs/pipeline.yaml [--set key=value ...] # everything, end to end

The pipeline wires the phases' configs together so they cannot disagree: synthesis writes OUT/data; the
training condition named `synthetic` trains on OUT/data/sft/train.jsonl; SFT writes OUT/sft; every exported
model (condition x base model) becomes an evaluation candidate, grouped by base model; evaluation writes
OUT/eval. Every phase resumes: a rerun reuses finished stages, trained models, answers and judgments.
Phases never import each other; they meet here.
"""

from __future__ import annotations

import json
import time

from atheus_ray import models
from atheus_ray.config import CandidateConfig, ConfigError, PipelineConfig, SynthConfig
from atheus_ray.engine import Engine
from atheus_ray.evaluate.run import evaluate
from atheus_ray.ray_init import init_ray
from atheus_ray.screen.run import screen
from atheus_ray.storage import Location
from atheus_ray.synth.run import synthesize
from atheus_ray.tables import read_rows
from atheus_ray.train.run import run_name, train


def synth(cfg: SynthConfig, log=print) -> dict:
    """Synthesis, then (unless `screen.enabled` is false) screening of its responses into the same folder, on one
    Engine: with `engine.kind: serve` the generator starts once for both (and not at all when every stage of
    both is reused). Returns the synthesis manifest, with the screening summary under "screen"."""
    with Engine(cfg.model, cfg.engine, log) as llm:
        manifest = synthesize(cfg, log=log, llm=llm)
        if cfg.screen.enabled:
            responses = manifest["tables"]["responses"]
            manifest["screen"] = screen(
                read_rows(responses),
                cfg.out,
                cfg.screen,
                cfg.model,
                cfg.engine,
                cfg.ray,
                log=log,
                source=responses,
                llm=llm,
                synthesis=manifest,
            )
    return manifest


def wire(cfg: PipelineConfig) -> PipelineConfig:
    """A copy of `cfg` whose phases read and write inside OUT and share one Ray cluster."""
    cfg = cfg.model_copy(deep=True)
    out = Location(cfg.out)
    if not cfg.synth.screen.enabled:
        raise ConfigError("synth.screen.enabled: the pipeline trains on the screened data set; turn screening on")
    names = [c.name for c in cfg.train.conditions]
    if cfg.synthetic not in names:
        raise ConfigError(f"synthetic: no training condition is named {cfg.synthetic!r} (train.conditions: {names})")
    for name in (cfg.eval.x, cfg.eval.y):
        if name not in names:
            raise ConfigError(f"eval.x / eval.y: {name!r} is not a training condition (train.conditions: {names})")
    cfg.synth.out, cfg.train.out, cfg.eval.out = str(out / "data"), str(out / "sft"), str(out / "eval")
    cfg.synth.ray = cfg.train.ray = cfg.eval.ray = cfg.ray
    for condition in cfg.train.conditions:
        if condition.name == cfg.synthetic:
            condition.paths = [str(out / "data" / "sft" / "train.jsonl")]
    cfg.eval.candidates = [
        CandidateConfig(
            name=c.name, group=models.display_name(m), model=str(out / "sft" / run_name(c.name, m) / "model")
        )
        for m in cfg.train.models
        for c in cfg.train.conditions
    ]
    return cfg


def run(cfg: PipelineConfig, log=print) -> dict:
    """Every phase in order; return {data, train, eval, wall_seconds} (also in OUT/pipeline.json)."""
    start = time.time()
    cfg = wire(cfg)
    init_ray(cfg.ray)
    summary = {"data": synth(cfg.synth, log=log)}
    if not summary["data"].get("screen", {}).get("rows_out"):
        raise RuntimeError(f"the data set in {cfg.synth.out} is empty: nothing to train on (see its rejected/)")
    summary["train"] = train(cfg.train, log=log)
    summary["eval"] = evaluate(cfg.eval, log=log)
    summary["wall_seconds"] = round(time.time() - start, 1)
    (Location(cfg.out) / "pipeline.json").write_text(json.dumps(summary, ensure_ascii=False, indent=2, default=str))
    return summary
