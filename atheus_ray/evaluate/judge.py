"""Pairwise LLM judging over an OpenAI-compatible API (the OpenAI API, a vLLM server, the local Serve app).

The judge sees the task, the reference answer, the project's base rubric (prompts/eval/rubric.md: a base 1-5 scale,
standard deductions and an over-refusal cap, under the task's own rubric), the task's rubric (`eval_aspect`) and two
answers as A and B, never which model wrote them; each pair is judged in both orders. The verdict is the one `[[A]]`,
`[[B]]` or `[[C]]` (tie) in the reply: none or more than one is unreadable, and the request is sent again up to
`verdict_retries` times, then recorded as `invalid` (counted, never dropped). A job without `answer_b` is an absolute
judgment instead (prompts/eval/score.md, ELYZA-style): the verdict is the one `[[1]]`..`[[5]]`.
With `constrain` (small local judges on vLLM), decoding is held to exactly one mark and nothing else.

Transport: the `openai` client (`max_retries` retries with exponential backoff on 408/409/429/5xx, connection
errors and timeouts, honouring Retry-After), at most `concurrency` requests in flight. A 200 whose body is no
chat completion (a proxy's error page) is asked again like an unreadable verdict. A request that still fails
is recorded as `error` and not cached, so a rerun tries it again (tests/chaos/test_judge_faults.py). The API key is read from the
environment variable `api_key_env` and never logged or written.

Cache: readable judgments, keyed by a hash of (task, answer A, answer B, judge model, prompt and rubric versions), are
written as JSONL parts into a cache folder (a local disk or an object store: nothing appends), one part per
`FLUSH_EVERY` judgments and one at the end of each batch; a rerun answers from them and makes no new call for
them. A crash costs at most the judgments not yet in a part.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import re
import uuid
from pathlib import Path
from typing import Callable

from atheus_ray.console import progress
from atheus_ray.rows import read_prompt
from atheus_ray.storage import Location

PROMPTS = Path(__file__).resolve().parent.parent / "prompts" / "eval"
PROMPT, SCORE_PROMPT, RUBRIC = PROMPTS / "pairwise.md", PROMPTS / "score.md", PROMPTS / "rubric.md"
VERDICT = re.compile(r"\[\[([ABC])\]\]")
SCORE = re.compile(r"\[\[([1-5])\]\]")
# `constrain`: the reply is the mark and nothing else (vLLM structured outputs, regex); a small local judge's
# reasons are noise, and each costs a hundred decode steps on a CPU
CONSTRAINED = {VERDICT: r"\[\[[ABC]\]\]", SCORE: r"\[\[[1-5]\]\]"}


def parse_verdict(text: str, pattern: re.Pattern = VERDICT) -> str | None:
    """'A', 'B' or 'C' (or with SCORE, '1'..'5') when the reply holds exactly one mark, else None."""
    found = pattern.findall(text or "")
    return found[0] if len(found) == 1 else None


def prompt(task: dict, answer_a: str, answer_b: str | None) -> str:
    common = {
        "task": task["input"],
        "reference": task["output"],
        "rubric": task["eval_aspect"] or "（なし）",
        "base_rubric": read_prompt(RUBRIC)[0].strip(),
    }
    if answer_b is None:
        return read_prompt(SCORE_PROMPT)[0].format(**common, answer=answer_a)
    return read_prompt(PROMPT)[0].format(**common, answer_a=answer_a, answer_b=answer_b)


def judgment_key(task: dict, answer_a: str, answer_b: str | None, judge_model: str) -> str:
    version = read_prompt(SCORE_PROMPT if answer_b is None else PROMPT)[1] + read_prompt(RUBRIC)[1]
    data = json.dumps(
        [task["input"], task["output"], task["eval_aspect"], answer_a, answer_b, judge_model, version],
        ensure_ascii=False,
    )
    return hashlib.sha256(data.encode()).hexdigest()[:24]


class Cache:
    """Judgments by key, kept in a folder of JSONL parts (see the module docstring); an unreadable line is skipped."""

    FLUSH_EVERY = 16  # a crash loses at most this many judgments (and one part per this many on an object store)

    def __init__(self, folder: str | Location):
        self.folder = Location(folder)
        self.records: dict[str, dict] = {}
        self.pending: list[dict] = []
        for part in self.folder.files():
            if not part.name.endswith(".jsonl"):
                continue
            for line in part.read_text().splitlines():
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:
                    continue
                self.records[record["key"]] = record

    def put(self, record: dict) -> None:
        self.records[record["key"]] = record
        self.pending.append(record)
        if len(self.pending) >= self.FLUSH_EVERY:
            self.flush()

    def flush(self) -> None:
        """Write the judgments not yet written as one new part."""
        if self.pending:
            lines = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in self.pending)
            (self.folder / f"part-{uuid.uuid4().hex[:12]}.jsonl").write_text(lines)
            self.pending = []


class Judge:
    """Judges pairs over an OpenAI-compatible endpoint; see the module docstring."""

    def __init__(
        self,
        base_url: str,
        model: str,
        cache: Cache,
        api_key_env: str = "OPENAI_API_KEY",
        concurrency: int = 8,
        max_retries: int = 5,
        timeout: float = 60.0,
        verdict_retries: int = 2,
        max_tokens: int = 512,
        constrain: bool = False,
        log: Callable[[str], None] | None = None,
    ):
        self.base_url, self.model, self.cache, self.api_key_env = base_url, model, cache, api_key_env
        self.concurrency, self.max_retries, self.timeout = concurrency, max_retries, timeout
        self.verdict_retries, self.max_tokens, self.constrain = verdict_retries, max_tokens, constrain
        self.calls, self.reused, self.log = 0, 0, log

    def judge(self, jobs: list[dict]) -> list[dict]:
        """One record per job {task, answer_a, answer_b (None: absolute), ...}, in order: the job's fields (less
        the task) plus `task_id`, `key`, `verdict` (A | B | C, or 1-5 | invalid | error), `attempts`, `reply`,
        `cached`."""
        return asyncio.run(self._all(jobs))

    async def _all(self, jobs: list[dict]) -> list[dict]:
        from openai import AsyncOpenAI

        keys = [judgment_key(j["task"], j["answer_a"], j.get("answer_b"), self.model) for j in jobs]
        unique = {}  # the same judgment asked twice (identical answers) is made once
        for key, job in zip(keys, jobs):
            unique.setdefault(key, job)
        client = AsyncOpenAI(
            base_url=self.base_url,
            api_key=os.environ.get(self.api_key_env) or "none",
            max_retries=self.max_retries,
            timeout=self.timeout,
        )
        limit = asyncio.Semaphore(self.concurrency)
        self.reused = sum(key in self.cache.records for key in unique)
        if self.reused and self.log:
            self.log(f"[judge] {self.reused} of {len(unique)} judgments reused from an earlier run")
        bar = progress(len(unique) - self.reused, f"[judge] {self.model}", self.log)

        async def one(key: str, job: dict) -> dict:
            found = await self._one(client, limit, key, job)
            if not found["cached"]:
                bar.update(1)
            return found

        try:
            with bar:
                done = await asyncio.gather(*(one(key, job) for key, job in unique.items()))
        finally:
            self.cache.flush()
            await client.close()
        found = dict(zip(unique, done))
        return [
            {**{k: v for k, v in job.items() if k != "task"}, "task_id": job["task"]["id"], "key": key, **found[key]}
            for key, job in zip(keys, jobs)
        ]

    async def _one(self, client, limit: asyncio.Semaphore, key: str, job: dict) -> dict:
        """{verdict, attempts, reply, cached} of one judgment: from the cache, or asked."""
        import openai

        if key in self.cache.records:
            return {**{k: self.cache.records[key][k] for k in ("verdict", "attempts", "reply")}, "cached": True}
        answer_b = job.get("answer_b")
        messages = [{"role": "user", "content": prompt(job["task"], job["answer_a"], answer_b)}]
        pattern = VERDICT if answer_b is not None else SCORE
        extra = {"structured_outputs": {"regex": CONSTRAINED[pattern]}} if self.constrain else None
        reply, attempts = "", 0
        async with limit:
            for attempts in range(1, self.verdict_retries + 2):
                self.calls += 1
                try:
                    response = await client.chat.completions.create(
                        model=self.model,
                        messages=messages,
                        max_tokens=self.max_tokens,
                        temperature=0.0 if attempts == 1 else 0.7,
                        extra_body=extra,
                    )
                except (openai.APIError, openai.APITimeoutError) as e:  # retries exhausted
                    return {"verdict": "error", "attempts": attempts, "reply": type(e).__name__, "cached": False}
                garbled = not hasattr(response, "choices")  # a 200 that is no chat completion: a proxy's page
                if garbled:
                    reply = f"not a chat completion: {str(response)[:200]}"
                    continue
                reply = (response.choices[0].message.content or "") if response.choices else ""
                verdict = parse_verdict(reply, pattern)
                if verdict:
                    break
            else:
                if garbled:  # the endpoint's fault, not the judge's: not cached, a rerun asks again
                    return {"verdict": "error", "attempts": attempts, "reply": reply, "cached": False}
                verdict = "invalid"
        record = {"key": key, "verdict": verdict, "attempts": attempts, "reply": reply}
        self.cache.put(record)
        return {"verdict": verdict, "attempts": attempts, "reply": reply, "cached": False}
