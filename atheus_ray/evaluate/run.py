"""The evaluation run: every candidate answers every task, the judge compares X with Y in both orders within
each group, and the report says which data wins per model.

    atheus eval --config jobs/configs/eval.yaml [--out DIR] [--set key=value ...]

Absolute 1-5 scores per candidate (ELYZA-style, same judge) are the second view.
Answers: one `ray.data.llm` pass per candidate (atheus_ray.engine.generate), greedy by default, saved to
`DIR/answers/` (task_id, candidate, group, model, answer), and reused by a rerun with the same model, tasks
and sampling. Judging: atheus_ray.evaluate.judge, with
its cache in `DIR/judge_cache.jsonl`; every judgment goes to `DIR/judgments/`. Statistics:
atheus_ray.evaluate.stats. Report: atheus_ray.evaluate.report.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

from atheus_ray.config import ConfigError, EvalConfig, ModelConfig
from atheus_ray.engine import generate, sampling_params
from atheus_ray.evaluate.judge import Cache, Judge
from atheus_ray.evaluate.report import write_report
from atheus_ray.evaluate.stats import absolute, summarize
from atheus_ray.evaluate.tasks import load_tasks
from atheus_ray.ray_init import init_ray
from atheus_ray.tables import write_rows


def _answers(candidate, tasks: list[dict], cfg: EvalConfig, out: Path, log) -> dict[str, str]:
    """A candidate's answer per task id, reused from an earlier run with the same model, tasks and sampling."""
    key = hashlib.sha256(json.dumps([candidate.model, cfg.max_model_len, cfg.answer.model_dump(),
                                     [t["input"] for t in tasks]], ensure_ascii=False).encode()).hexdigest()[:16]  # fmt: skip
    saved = out / ".answers" / f"{key}.json"
    if saved.exists():
        log(f"[answers] {candidate.group}/{candidate.name}: reused from an earlier run")
        return json.loads(saved.read_text(encoding="utf-8"))
    requests = [{"key": t["id"], "messages": [{"role": "user", "content": t["input"]}],
                 "sampling_params": sampling_params(cfg.answer)} for t in tasks]  # fmt: skip
    outputs = generate(requests, ModelConfig(source=candidate.model, max_model_len=cfg.max_model_len), cfg.engine)
    found = {t["id"]: o["text"].strip() for t, o in zip(tasks, outputs)}
    saved.parent.mkdir(parents=True, exist_ok=True)
    saved.write_text(json.dumps(found, ensure_ascii=False), encoding="utf-8")
    log(f"[answers] {candidate.group}/{candidate.name}: {sum(o['tokens_out'] for o in outputs)} tokens")
    return found


def evaluate(cfg: EvalConfig, log=print) -> dict:
    """Answer, judge, report; return the results (also in DIR/results.json)."""
    start = time.time()
    out = Path(cfg.out).resolve()
    tasks = load_tasks(cfg.tasks)
    groups = sorted({c.group for c in cfg.candidates})
    for group in groups:
        names = {c.name for c in cfg.candidates if c.group == group}
        if not {cfg.x, cfg.y} <= names:
            raise ConfigError(f"candidates: group {group!r} needs candidates named {cfg.x!r} and {cfg.y!r} "
                              f"(x and y), has {sorted(names)}")  # fmt: skip
    where = init_ray(cfg.ray)
    log(f"{len(tasks)} tasks, {len(cfg.candidates)} candidates; ray: {where['address']}")

    answers, answer_rows = {}, []
    for candidate in cfg.candidates:
        for task_id, text in _answers(candidate, tasks, cfg, out, log).items():
            answers[candidate.group, candidate.name, task_id] = text
            answer_rows.append({"task_id": task_id, "group": candidate.group, "candidate": candidate.name,
                                "answer": text, "model": candidate.model})  # fmt: skip
    write_rows(sorted(answer_rows, key=lambda r: (r["group"], r["candidate"], r["task_id"])), out / "answers")

    judge = Judge(cfg.judge.base_url, cfg.judge.model, Cache(out / "judge_cache.jsonl"), cfg.judge.api_key_env,
                  cfg.judge.concurrency, cfg.judge.max_retries, cfg.judge.timeout, cfg.judge.verdict_retries,
                  cfg.judge.max_tokens)  # fmt: skip
    comparisons, all_judgments = [], []
    for group in groups:
        jobs = []
        for task in tasks:
            ax, ay = answers[group, cfg.x, task["id"]], answers[group, cfg.y, task["id"]]
            for order, (a, b) in (("XY", (ax, ay)), ("YX", (ay, ax))):
                jobs.append({"task": task, "answer_a": a, "answer_b": b, "order": order, "group": group,
                             "len_x": len(ax), "len_y": len(ay)})  # fmt: skip
        judgments = judge.judge(jobs)
        all_judgments += judgments
        stats = summarize(judgments, cfg.resamples, cfg.seed)
        comparisons.append({"model": group, "x": cfg.x, "y": cfg.y, **stats})
        log(f"[judge] {group}: {cfg.x} vs {cfg.y}: win rate {stats['win_rate']} CI {stats['ci95']} "
            f"({stats['wins']}/{stats['ties']}/{stats['losses']}, invalid {stats['invalid']}, errors {stats['errors']})")  # fmt: skip
    scores = []
    for candidate in cfg.candidates:  # the second view: ELYZA-style 1-5 scores, one answer at a time
        jobs = [{"task": t, "answer_a": answers[candidate.group, candidate.name, t["id"]], "answer_b": None,
                 "order": "score", "group": candidate.group, "candidate": candidate.name} for t in tasks]  # fmt: skip
        judgments = judge.judge(jobs)
        all_judgments += judgments
        scores.append({"model": candidate.group, "candidate": candidate.name, **absolute(judgments, cfg.resamples, cfg.seed)})
    write_rows(all_judgments, out / "judgments")
    results = {"judge_model": cfg.judge.model, "tasks": len(tasks), "task_sources": cfg.tasks,
               "candidates": [c.model_dump() for c in cfg.candidates], "comparisons": comparisons, "absolute": scores,
               "judge_calls": judge.calls, "wall_seconds": round(time.time() - start, 1)}  # fmt: skip
    paths = write_report(out, results)
    results["report"] = {k: str(v) for k, v in paths.items()}
    return results
