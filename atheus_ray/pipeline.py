"""The pipeline, as far as it exists: seeds → answers by the generator model → Parquet.

    atheus pipeline --config jobs/configs/local.yaml [--set key=value ...]

Writes `OUT/responses/` (rows of the contract with `output` = the seed's reference answer and `response` =
the model's answer) and `OUT/rejected/` (rows dropped, with `reject_reason`), and returns a summary.
"""

from __future__ import annotations

import time
from pathlib import Path

import ray

from atheus_ray.config import PipelineConfig
from atheus_ray.ray_init import init_ray
from atheus_ray.rows import seed_row
from atheus_ray.seeds import expand_paths, load_seeds, round_robin
from atheus_ray.synth.respond import respond, split_rejected
from atheus_ray.tables import write_table

def run(cfg: PipelineConfig, log=print) -> dict:
    """Run every stage that exists; return {'out', 'tables': {name: path}, 'counts': {name: rows}, 'seconds'}."""
    start = time.time()
    seeds = load_seeds(expand_paths(cfg.seeds.paths), default_perspective=cfg.seeds.default_perspective)
    seeds = round_robin(seeds, cfg.seeds.limit)
    rows = [seed_row(s) for s in seeds]
    if not rows:
        raise ValueError(f"no seeds in {cfg.seeds.paths}")
    log(f"{len(rows)} seeds from {', '.join(cfg.seeds.paths)}")

    where = init_ray(cfg.ray)
    log(f"ray: {where['address']} ({where['cpus']:g} CPUs, {where['gpus']:g} GPUs)")

    answered = respond(ray.data.from_items(rows), list(rows[0]), cfg.model, cfg.engine, cfg.respond)
    kept, rejected = split_rejected(answered)
    out = Path(cfg.out)
    tables = {"responses": write_table(kept, out / "responses"), "rejected": write_table(rejected, out / "rejected")}
    counts = {"seeds": len(rows), "responses": kept.count(), "rejected": rejected.count()}
    return {"out": str(out.resolve()), "tables": {k: str(v) for k, v in tables.items()}, "counts": counts,
            "seconds": round(time.time() - start, 1)}  # fmt: skip
