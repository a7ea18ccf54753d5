"""Evaluation tasks in the ELYZA-tasks-100 format: `input`, `output` (a reference answer), `eval_aspect`
(grading notes). `input_text` / `output_text` are accepted for the first two.

Sources: `hf:elyza/ELYZA-tasks-100:test` (loaded at run time, never shipped), or any CSV/JSONL/Parquet file
in the same format, such as the sample written for this project (atheus_ray/data/eval_tasks_sample.jsonl).
A row without an input or a reference, or with the input of an earlier row, is an error naming its file and line
or row.
"""

from __future__ import annotations

from atheus_ray.rows import content_id
from atheus_ray.sources import SourceError, read_records

SAMPLE = "atheus_ray/data/eval_tasks_sample.jsonl"


def _text(record: dict, *names: str) -> str | None:
    value = next((record[n] for n in names if isinstance(record.get(n), str) and record[n].strip()), None)
    return value.strip() if value else None


def load_tasks(paths: list[str]) -> list[dict]:
    """[{id, input, output, eval_aspect, source}] in file order; raise SourceError naming every bad row."""
    tasks, problems, first = [], [], {}
    for where, record in read_records(paths):
        task = {
            "input": _text(record, "input", "input_text"),
            "output": _text(record, "output", "output_text"),
            "eval_aspect": _text(record, "eval_aspect") or "",
        }
        if task["input"] is None:
            problems.append(f"{where}: input: missing or empty (also accepted: input_text)")
        if task["output"] is None:
            problems.append(f"{where}: output: missing or empty (also accepted: output_text)")
        if task["input"] and task["output"]:
            task_id = content_id(task["input"])
            if task_id in first:  # the same input twice would be answered and judged twice, under one id
                problems.append(f"{where}: input: the same task as {first[task_id]}")
                continue
            first[task_id] = where
            tasks.append({"id": task_id, **task, "source": where})
    if problems:
        raise SourceError(problems)
    return tasks
