"""Phases composed: synthesis, then screening of its responses (the data set), as far as the pipeline exists.

    atheus synth    --config jobs/configs/synth.yaml [--set key=value ...]   # synthesis + screening
    atheus pipeline --config jobs/configs/synth.yaml                         # every phase that exists

SFT and evaluation join `run` as they land. Phases never import each other; they meet here.
"""

from __future__ import annotations

from atheus_ray.config import SynthConfig
from atheus_ray.screen.run import screen
from atheus_ray.synth.run import synthesize
from atheus_ray.tables import read_rows


def synth(cfg: SynthConfig, log=print) -> dict:
    """Synthesis, then (unless `screen.enabled` is false) screening of its responses into the same folder.
    Returns the synthesis manifest, with the screening summary under "screen"."""
    manifest = synthesize(cfg, log=log)
    if cfg.screen.enabled:
        responses = manifest["tables"]["responses"]
        manifest["screen"] = screen(read_rows(responses), cfg.out, cfg.screen, cfg.model, cfg.engine, cfg.ray,
                                    log=log, source=responses)  # fmt: skip
    return manifest


def run(cfg: SynthConfig, log=print) -> dict:
    """Run every phase that exists (synthesis and screening); return the manifest."""
    return synth(cfg, log=log)
