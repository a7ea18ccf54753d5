"""The evaluation run: every candidate answers every task, the judge compares X with Y in both orders within
each group, and the report says which data wins per model.

    atheus eval --config jobs/configs/eval.yaml [--out DIR] [--set key=value ...]

Serving: the candidates that still have tasks to answer, and the judge when `judge.source` names a local
model, are hosted together by one Ray Serve app (atheus_ray.serve.app, OpenAI-compatible, routed by model id
`GROUP/NAME` for candidates and `judge.model` for the judge), started here and removed at the end; a rerun
with every answer saved and every judgment cached starts none.
Answers: sent to each candidate's deployment in that app by handle, `concurrency` at once and every candidate
at the same time (atheus_ray.engine.generate_by_handle; Ray's HTTP processor awaits a batch's requests one
after another), greedy by default, saved to `DIR/answers/` (task_id, candidate, group, model, answer, error),
and reused by a rerun with the same model, tasks and sampling. An answer the replica refused (e.g. a prompt
too long) has `error` set and no `answer`; it is counted (`answer_errors`) and not judged, and more than
`max_error_share` of them fails the run.
Judging: atheus_ray.evaluate.judge (the local judge's replies constrained to one verdict mark and nothing else
when `judge.constrain`), all of it in one go, `judge.concurrency` requests in flight, with its cache in
`DIR/judge_cache/`; every judgment goes to `DIR/judgments/`. Absolute 1-5 scores per candidate (ELYZA-style,
same judge) are the second view. Statistics: atheus_ray.evaluate.stats. Report: atheus_ray.evaluate.report.
"""

from __future__ import annotations

import hashlib
import json
import time
from concurrent.futures import ThreadPoolExecutor

from atheus_ray.config import ConfigError, EvalConfig, ServedModelConfig
from atheus_ray.engine import generate_by_handle, sampling_params
from atheus_ray.evaluate.judge import Cache, Judge, judgment_key
from atheus_ray.evaluate.report import write_report
from atheus_ray.evaluate.stats import absolute, summarize
from atheus_ray.evaluate.tasks import load_tasks
from atheus_ray.ray_init import init_ray
from atheus_ray.serve import app as serve_app
from atheus_ray.storage import Location
from atheus_ray.tables import write_rows

NO_KEY = "ATHEUS_NO_KEY"  # an environment variable nobody sets: requests to an app without auth carry no key


def model_identity(model: str) -> str:
    """What names a model's weights: its name or path, and for an SFT export the run fingerprint in its `hash`
    file, so that a model retrained into the same folder is a new model, not the one answered before."""
    marker = Location(model) / "hash"
    return f"{model}@{marker.read_text().strip()}" if marker.exists() else model


def _saved_answers(candidate, tasks: list[dict], cfg: EvalConfig, out: Location) -> Location:
    """Where a candidate's answers are kept, by a hash of its model (`model_identity`), the tasks and the sampling."""
    key = hashlib.sha256(
        json.dumps(
            [
                "v2",
                model_identity(candidate.model),
                cfg.serve.max_model_len,
                cfg.answer.model_dump(),
                [t["input"] for t in tasks],
            ],
            ensure_ascii=False,
        ).encode()
    ).hexdigest()[:16]
    return out / ".answers" / f"{key}.json"


def _answer(candidate, tasks: list[dict], cfg: EvalConfig, saved: Location, log) -> None:
    """Ask the served candidate every task, `concurrency` at once, by deployment handle; save {task id: answer}."""
    requests = [
        {
            "key": t["id"],
            "messages": [{"role": "user", "content": t["input"]}],
            "sampling_params": sampling_params(cfg.answer),
        }
        for t in tasks
    ]
    name = f"{candidate.group}/{candidate.name}"
    deployment = serve_app.deployment_name(name)
    outputs = generate_by_handle(requests, serve_app.APP_NAME, deployment, name, cfg.concurrency, log)
    errors = {t["id"]: o["error"] for t, o in zip(tasks, outputs) if o["error"]}
    if not any(o["tokens_out"] for o in outputs):
        first = next(iter(errors.values()), "no tokens")
        raise RuntimeError(f"candidate {name} answered no task (first error: {first}; see the Serve logs)")
    if len(errors) > cfg.max_error_share * len(tasks):
        first = next(iter(errors.items()))
        raise RuntimeError(
            f"candidate {name}: {len(errors)} of {len(tasks)} answers are errors, more than "
            f"max_error_share {cfg.max_error_share:g} (task {first[0]}: {first[1]})"
        )
    answers = {t["id"]: o["text"].strip() for t, o in zip(tasks, outputs) if not o["error"]}
    saved.write_text(json.dumps({"answers": answers, "errors": errors}, ensure_ascii=False))
    log(
        f"[answers] {name}: {sum(o['tokens_out'] for o in outputs)} tokens"
        + (f", {len(errors)} error(s), left out of judging (first: {next(iter(errors.values()))})" if errors else "")
    )


def evaluate(cfg: EvalConfig, log=print) -> dict:
    """Answer, judge, report; return the results (also in DIR/results.json)."""
    start = time.time()
    out = Location(cfg.out)
    tasks = load_tasks(cfg.tasks)[: cfg.limit]
    groups = sorted({c.group for c in cfg.candidates})
    for group in groups:
        names = {c.name for c in cfg.candidates if c.group == group}
        if not {cfg.x, cfg.y} <= names:
            raise ConfigError(
                f"candidates: group {group!r} needs candidates named {cfg.x!r} and {cfg.y!r} "
                f"(x and y), has {sorted(names)}"
            )
    where = init_ray(cfg.ray)
    log(f"{len(tasks)} tasks, {len(cfg.candidates)} candidates; ray: {where['address']}")

    saved = {(c.group, c.name): _saved_answers(c, tasks, cfg, out) for c in cfg.candidates}
    pending = [c for c in cfg.candidates if not saved[c.group, c.name].exists()]
    cache = Cache(out / "judge_cache")
    # a local judge is started only when something is left to judge (a rerun of a finished run starts nothing)
    serve_judge = cfg.judge.source is not None and (
        bool(pending)
        or not all(
            judgment_key(j["task"], j["answer_a"], j["answer_b"], cfg.judge.model) in cache.records
            for jobs in _jobs(cfg, tasks, groups, _load_answers(cfg, tasks, saved))
            for j in jobs
        )
    )
    served = [ServedModelConfig(name=f"{c.group}/{c.name}", source=c.model) for c in pending]
    if serve_judge:
        served.append(
            ServedModelConfig(
                name=cfg.judge.model, source=cfg.judge.source, tensor_parallel_size=cfg.judge.tensor_parallel_size
            )
        )
    url = serve_app.start(served, cfg.serve, log=log) if served else None
    try:
        for candidate in cfg.candidates:
            if candidate not in pending:
                log(f"[answers] {candidate.group}/{candidate.name}: reused from an earlier run")
        with ThreadPoolExecutor(max(1, len(pending))) as pool:  # every candidate's replicas answer at once
            for future in [pool.submit(_answer, c, tasks, cfg, saved[c.group, c.name], log) for c in pending]:
                future.result()
        return _judge_and_report(cfg, tasks, groups, saved, cache, out, url, start, log)
    finally:
        if served:
            serve_app.stop()


def _load_answers(cfg: EvalConfig, tasks: list[dict], saved: dict) -> dict:
    """{(group, candidate, task id): answer} from the saved answers; an answer that was an error is None."""
    answers = {}
    for candidate in cfg.candidates:
        found = json.loads(saved[candidate.group, candidate.name].read_text())["answers"]
        for task in tasks:
            answers[candidate.group, candidate.name, task["id"]] = found.get(task["id"])
    return answers


def _jobs(cfg: EvalConfig, tasks: list[dict], groups: list[str], answers: dict) -> list[list[dict]]:
    """The judge's work, one list per batch: X vs Y in both orders per group, then each candidate's 1-5 scores."""
    batches = []
    for group in groups:
        jobs = []
        for task in tasks:
            ax, ay = answers[group, cfg.x, task["id"]], answers[group, cfg.y, task["id"]]
            if ax is None or ay is None:  # an answer that was an error is not judged (counted in answer_errors)
                continue
            for order, (a, b) in (("XY", (ax, ay)), ("YX", (ay, ax))):
                jobs.append(
                    {
                        "task": task,
                        "answer_a": a,
                        "answer_b": b,
                        "order": order,
                        "group": group,
                        "len_x": len(ax),
                        "len_y": len(ay),
                    }
                )
        batches.append(jobs)
    for candidate in cfg.candidates:  # the second view: ELYZA-style 1-5 scores, one answer at a time
        batches.append(
            [
                {
                    "task": t,
                    "answer_a": answers[candidate.group, candidate.name, t["id"]],
                    "answer_b": None,
                    "order": "score",
                    "group": candidate.group,
                    "candidate": candidate.name,
                }
                for t in tasks
                if answers[candidate.group, candidate.name, t["id"]] is not None
            ]
        )
    return batches


def _judge_and_report(
    cfg: EvalConfig, tasks, groups, saved, cache, out: Location, url: str | None, start: float, log
) -> dict:
    answers = _load_answers(cfg, tasks, saved)
    errors = {(c.group, c.name): json.loads(saved[c.group, c.name].read_text())["errors"] for c in cfg.candidates}
    answer_rows = [
        {
            "task_id": t["id"],
            "group": c.group,
            "candidate": c.name,
            "model": c.model,
            "answer": answers[c.group, c.name, t["id"]],
            "error": errors[c.group, c.name].get(t["id"]),
        }
        for c in cfg.candidates
        for t in tasks
    ]
    write_rows(sorted(answer_rows, key=lambda r: (r["group"], r["candidate"], r["task_id"])), out / "answers")

    local = cfg.judge.source is not None
    judge = Judge(
        url if local else cfg.judge.base_url,
        cfg.judge.model,
        cache,
        (cfg.serve.auth_token_env or NO_KEY) if local else cfg.judge.api_key_env,
        cfg.judge.concurrency,
        cfg.judge.max_retries,
        cfg.judge.timeout,
        cfg.judge.verdict_retries,
        cfg.judge.max_tokens,
        cfg.judge.constrain,
        log,
    )
    batches = _jobs(cfg, tasks, groups, answers)
    # all of the judge's work in one go, `judge.concurrency` in flight: the engine batches them together
    all_judgments = judge.judge([job for jobs in batches for job in jobs])
    judged, begin = [], 0
    for jobs in batches:
        judged.append(all_judgments[begin : begin + len(jobs)])
        begin += len(jobs)
    comparisons, scores = [], []
    for group, judgments in zip(groups, judged):
        stats = summarize(judgments, cfg.resamples, cfg.seed)
        unanswered = sum(
            answers[group, cfg.x, t["id"]] is None or answers[group, cfg.y, t["id"]] is None for t in tasks
        )
        comparisons.append({"model": group, "x": cfg.x, "y": cfg.y, **stats, "answer_errors": unanswered})
        log(
            f"[judge] {group}: {cfg.x} vs {cfg.y}: win rate {stats['win_rate']} CI {stats['ci95']} "
            f"({stats['wins']}/{stats['ties']}/{stats['losses']}, invalid {stats['invalid']}, errors {stats['errors']}, "
            f"answer errors {unanswered})"
        )
    for candidate, judgments in zip(cfg.candidates, judged[len(groups) :]):
        scores.append(
            {"model": candidate.group, "candidate": candidate.name, **absolute(judgments, cfg.resamples, cfg.seed)}
        )
    write_rows(all_judgments, out / "judgments")
    results = {
        "judge_model": cfg.judge.model,
        "tasks": len(tasks),
        "task_sources": cfg.tasks,
        "candidates": [c.model_dump() for c in cfg.candidates],
        "comparisons": comparisons,
        "absolute": scores,
        "judge_calls": judge.calls,
        "judgments_reused": judge.reused,
        "wall_seconds": round(time.time() - start, 1),
    }
    paths = write_report(out, results, tasks, answers, all_judgments)
    results["report"] = {k: str(v) for k, v in paths.items()}
    return results
