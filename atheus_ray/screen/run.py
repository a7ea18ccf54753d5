"""The screening run: pairs → heuristics → decontamination → LLM tags → near-duplicates → selection.

    atheus screen --in DIR/responses --out DIR [--config jobs/configs/screen.yaml] [--set key=value ...]

`atheus synth` ends with it on its own responses (section `screen` of its config). The cheap checks come
first, so the LLM tags only rows that can still be kept; near-duplicates come after tagging, so each
cluster keeps its best-scored row. Every stage is resumable (atheus_ray.stages), like synthesis.

Input: any table of pairs (Parquet/JSONL/CSV file or folder, or hf:owner/name[:split]) with `instruction`,
optional `input`, and the answer in `response` or `output` (stored as `response`). Rows without an `id`
get a content id; missing lineage columns are null. A row without an instruction or an answer is an error
naming its file and line or row.

Outputs under DIR:
- `final/`: the kept rows, best first, with every screening column: `ja_ratio`, `refusal`, `quality`,
  `quality_reason`, `difficulty`, `difficulty_reason`, `task_category`, `request_safety`, `safety`,
  `safety_category`, `score`, `score_reason`, `dup_of`,
  `tagger_model`, `tagger_prompt_version`
- `rejected/<stage>/`: the dropped rows of each stage (`heuristics`, `decontamination`, `tagging`, `dedup`,
  `selection`), with the screening columns known by then, `stage`, `reject_reason` and `detail`
- `sft/train.jsonl`: the final rows as chat messages, `{"id", "messages": [user, assistant]}`
- `README.md` (the data set card: funnel, distributions) with `charts/*.png`, and `screen.json` (the same
  numbers, machine-readable, and `engine`: starts and passes of the Engine the tagger ran on, which in the
  pipeline is synthesis's, so they count synthesis's too)
"""

from __future__ import annotations

import hashlib
import json
import time
from collections import Counter

from atheus_ray import constraints, models
from atheus_ray.config import CardConfig, DedupConfig, EngineConfig, ModelConfig, RayConfig, ScreenConfig
from atheus_ray.engine import Engine
from atheus_ray.ray_init import init_ray
from atheus_ray.rows import LINEAGE_COLUMNS, content_id, read_prompt, user_message
from atheus_ray.screen import card, decontam, tagger
from atheus_ray.screen.dedup import mark_duplicates
from atheus_ray.screen.heuristics import answer_ja_ratio, pair_problem
from atheus_ray.screen.select import rank_key, select
from atheus_ray.seeds import Taxonomy, load_taxonomy
from atheus_ray.sources import SourceError, read_records
from atheus_ray.stages import Stages
from atheus_ray.storage import Location
from atheus_ray.tables import REJECTED_COLUMNS, write_rows
from atheus_ray.text import is_refusal

SCREEN_COLUMNS = ("ja_ratio", "refusal", *tagger.TAG_COLUMNS, "dup_of")
SCREEN_REJECTED_COLUMNS = (*REJECTED_COLUMNS, *SCREEN_COLUMNS)


def read_pairs(source: str) -> list[dict]:
    """The pairs of a table, normalized (see module docstring); raise SourceError listing every bad row."""
    rows, problems = [], []
    for where, record in read_records([source]):
        instruction, input_text = record.get("instruction"), record.get("input")
        answer = record["response"] if record.get("response") is not None else record.get("output")
        if instruction is not None and not isinstance(instruction, str):
            problems.append(f"{where}: instruction: expected text, got {type(instruction).__name__}")
        elif not instruction or not instruction.strip():
            problems.append(f"{where}: instruction: missing or empty")
        if answer is None:
            problems.append(f"{where}: output: missing (a text `output` or `response` is required)")
        elif not isinstance(answer, str):
            problems.append(f"{where}: output: expected text, got {type(answer).__name__}")
        if input_text is not None and not isinstance(input_text, str):
            problems.append(f"{where}: input: expected text or null, got {type(input_text).__name__}")
        if problems and problems[-1].startswith(f"{where}:"):
            continue
        row = {**dict.fromkeys(LINEAGE_COLUMNS), **{k: v for k, v in record.items() if k != "output"}}
        row.update(input=input_text if input_text and input_text.strip() else None, response=answer)
        row["id"] = str(record["id"]) if record.get("id") is not None else content_id(instruction, row["input"])
        rows.append(row)
    if problems:
        raise SourceError(problems)
    return rows


def fingerprint(
    rows: list[dict], cfg: ScreenConfig, model: ModelConfig, engine: EngineConfig, eval_prompts: list[tuple[str, str]]
) -> str:
    """What the screening output depends on: the input pairs, the screening config, the tagger (model and the
    engine settings that change its answers, not its placement or speed) and its prompt, the evaluation prompts.
    Where the near-duplicate search runs (`dedup.on_ray_above`) and the card's licence text (`card`) do not count:
    the rows are the same."""
    h = hashlib.sha256()
    for part in (
        cfg.model_dump(exclude={"dedup": {"on_ray_above"}, "card": True}),
        model.model_dump(),
        engine.output_settings(),
        eval_prompts,
    ):
        h.update(json.dumps(part, sort_keys=True, ensure_ascii=False).encode())
    h.update(read_prompt(tagger.PROMPT)[1].encode())
    for row in sorted(rows, key=lambda r: r["id"]):
        h.update(
            json.dumps([row["id"], row["instruction"], row["input"], row["response"]], ensure_ascii=False).encode()
        )
    return h.hexdigest()[:16]


def screen(
    rows: list[dict],
    out: str | Location,
    cfg: ScreenConfig,
    model: ModelConfig,
    engine: EngineConfig,
    ray: RayConfig | None = None,
    log=print,
    source: str = "",
    llm: Engine | None = None,
    synthesis: dict | None = None,
) -> dict:
    """Screen `rows` into OUT (see module docstring); return the summary written to OUT/screen.json. The tagger
    runs on `llm` (the pipeline's, shared with synthesis), or on an Engine of its own, closed at the end.
    `synthesis`, the manifest of the synthesis that made the rows, puts its funnel in the card too."""
    if llm is None:
        with Engine(model, engine, log) as own:
            return screen(rows, out, cfg, model, engine, ray, log, source, own, synthesis)
    start = time.time()
    out = Location(out)
    taxonomy = load_taxonomy()
    categories = list(taxonomy.categories)
    tagger_name = models.display_name(model.source)
    prompts = decontam.load_prompts(cfg.decontamination.paths) if cfg.decontamination.paths else []
    decon = decontam.Decontaminator(prompts, cfg.decontamination.ngram, cfg.decontamination.threshold)
    log(f"screening {len(rows)} rows; tagger {tagger_name}; {len(prompts)} evaluation prompts; output {out}")

    def connect():
        if ray is not None:
            where = init_ray(ray)
            log(f"ray: {where['address']} ({where['cpus']:g} CPUs, {where['gpus']:g} GPUs)")

    stages = Stages(out, fingerprint(rows, cfg, model, engine, prompts), log, connect, SCREEN_REJECTED_COLUMNS)
    n_in = len(rows)
    rows = stages.run("heuristics", rows, lambda rows: (*_heuristics(rows, cfg), 0, 0))
    rows = stages.run("decontamination", rows, lambda rows: (*decontam.contaminated(rows, decon), 0, 0))

    def tag(rows):
        outputs = llm.generate([tagger.tag_request(r, taxonomy, cfg.tagger) for r in rows])
        tagged, rejected = tagger.with_tags(rows, outputs, categories, tagger_name)
        return tagged, rejected, sum(o["tokens_in"] for o in outputs), sum(o["tokens_out"] for o in outputs)

    rows = stages.run("tagging", rows, tag)
    rows = stages.run("dedup", rows, lambda rows: (*_dedup(rows, cfg.dedup, ray, log), 0, 0))
    rows = stages.run("selection", rows, lambda rows: (*select(rows, cfg.selection), 0, 0))
    return _write_outputs(
        out,
        sorted(rows, key=rank_key),
        n_in,
        stages.report,
        tagger_name,
        source,
        time.time() - start,
        log,
        llm.stats(),
        synthesis,
        cfg.card,
        taxonomy,
    )


def _heuristics(rows: list[dict], cfg: ScreenConfig) -> tuple[list[dict], list[dict]]:
    kept, rejected, seen = [], [], set()
    for row in rows:
        row = {**row, "ja_ratio": round(answer_ja_ratio(row["response"]), 4), "refusal": is_refusal(row["response"])}
        if row["id"] in seen:
            rejected.append({**row, "reject_reason": "duplicate_id", "detail": "an earlier row has this id"})
            continue
        seen.add(row["id"])
        reason = pair_problem(row["instruction"], row["input"], row["response"], cfg.heuristics)
        broken = None if reason else constraints.violation(row["instruction"], row["response"])
        if reason or broken:
            rejected.append({**row, "reject_reason": reason or "constraint_violated", "detail": broken})
        else:
            kept.append(row)
    return kept, rejected


def _dedup(rows: list[dict], cfg: DedupConfig, ray: RayConfig | None, log) -> tuple[list[dict], list[dict]]:
    blocks = None
    if len(rows) > cfg.on_ray_above:
        blocks = 2 * max(1, int(init_ray(ray)["cpus"]))
        log(
            f"dedup: {len(rows)} rows > on_ray_above {cfg.on_ray_above}: near-duplicate search on Ray, {blocks} blocks"
        )
    marked = mark_duplicates(rows, cfg.threshold, on_ray_blocks=blocks)
    kept = [r for r in marked if r["dup_of"] is None]
    rejected = [{**r, "reject_reason": "near_duplicate", "detail": f"of {r['dup_of']}"} for r in marked if r["dup_of"]]
    return kept, rejected


def sft_record(row: dict) -> dict:
    """A final row as a chat-messages training example."""
    return {
        "id": row["id"],
        "messages": [
            {"role": "user", "content": user_message(row["instruction"], row["input"])},
            {"role": "assistant", "content": row["response"]},
        ],
    }


def _write_outputs(
    out: Location,
    rows: list[dict],
    n_in: int,
    report: list[dict],
    tagger_name: str,
    source: str,
    seconds: float,
    log,
    engine: dict,
    synthesis: dict | None,
    card_cfg: CardConfig,
    taxonomy: Taxonomy,
) -> dict:
    columns = dict.fromkeys(
        [*LINEAGE_COLUMNS, "category", "instruction", "input", "response", *_columns(rows), *SCREEN_COLUMNS]
    )
    final = write_rows(rows, out / "final", tuple(columns))
    sft = (out / "sft" / "train.jsonl").write_text(
        "".join(json.dumps(sft_record(r), ensure_ascii=False) + "\n" for r in rows)
    )
    summary = {
        "source": _shown_source(source, out),
        "tagger_model": tagger_name,
        "license": card_cfg.license,
        "license_reasoning": card_cfg.license_reasoning,
        "rows_in": n_in,
        "rows_out": len(rows),
        "synthesis": card.synthesis_funnel(synthesis) if synthesis else None,
        "synthesis_tokens": {"in": synthesis.get("tokens_in", 0), "out": synthesis.get("tokens_out", 0)}
        if synthesis
        else None,
        "made_by": card.made_by(rows),
        "examples": card.examples(rows),
        "characteristics": taxonomy.by_characteristic(Counter(r.get("perspective") for r in rows)),
        "funnel": card.funnel(n_in, report),
        "distributions": card.distributions(rows),
        "stages": report,
        "tokens_in": sum(s["tokens_in"] for s in report),
        "tokens_out": sum(s["tokens_out"] for s in report),
        "wall_seconds": round(seconds, 1),
        "engine": engine,
        "tables": {
            "final": str(final),
            "rejected": str(out / "rejected"),
            "sft": str(sft),
            "card": str(out / "README.md"),
        },
    }
    (out / "screen.json").write_text(json.dumps(summary, ensure_ascii=False, indent=2))
    card.write_card(out, summary)
    log(f"[screen] {n_in} rows in, {len(rows)} out")
    return summary


def _shown_source(source: str, out: Location) -> str:
    """The source as the card and screen.json show it: relative to OUT when inside it, else its last name (no
    machine path in a card that travels with the data)."""
    if not source:
        return ""
    inside = str(out).rstrip("/") + "/"
    return source[len(inside) :] if source.startswith(inside) else source.rstrip("/").rsplit("/", 1)[-1]


def _columns(rows: list[dict]) -> list[str]:
    return list(dict.fromkeys(k for row in rows for k in row)) if rows else []
