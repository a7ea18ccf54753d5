"""The pipeline, as far as it exists: synthesis (seeds → Self-Instruct → Evol-Instruct → responses).

    atheus pipeline --config jobs/configs/synth.yaml [--set key=value ...]

Screening, SFT and evaluation join here as they land; today this runs atheus_ray.synth.run.synthesize and
returns its manifest.
"""

from __future__ import annotations

from atheus_ray.config import SynthConfig
from atheus_ray.synth.run import synthesize


def run(cfg: SynthConfig, log=print) -> dict:
    """Run every phase that exists; return the synthesis manifest."""
    return synthesize(cfg, log=log)
