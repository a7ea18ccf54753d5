import re

import pytest

from atheus_ray.evaluate.tasks import SAMPLE, load_tasks
from atheus_ray.sources import SourceError


def test_the_shipped_sample_loads():
    tasks = load_tasks([SAMPLE])
    assert len(tasks) == 24 and len({t["id"] for t in tasks}) == 24
    assert all(t["input"] and t["output"] and t["eval_aspect"].startswith("- ") for t in tasks)
    points = [p for t in tasks for p in re.findall(r"[-−]?\d+(?:\.\d+)?(?=点)", t["eval_aspect"])]
    assert points and all(re.fullmatch(r"[-−]?\d+", p) for p in points)  # whole points only, as the base rubric


def test_elyza_csv_columns_and_aliases(tmp_path):
    csv_file = tmp_path / "tasks.csv"
    csv_file.write_text('input_text,output_text,eval_aspect\n"1+1は？",2,- 2でなければ1点\n', encoding="utf-8")
    [task] = load_tasks([str(csv_file)])
    assert (task["input"], task["output"], task["eval_aspect"]) == ("1+1は？", "2", "- 2でなければ1点")
    assert task["source"] == f"{csv_file}:2"


def test_rows_without_input_or_reference_are_named(tmp_path):
    bad = tmp_path / "tasks.jsonl"
    bad.write_text('{"input": "質問", "output": "答え"}\n{"input": "質問"}\n{"output": "答え"}\n', encoding="utf-8")
    with pytest.raises(SourceError) as e:
        load_tasks([str(bad)])
    assert e.value.problems == [
        f"{bad}:2: output: missing or empty (also accepted: output_text)",
        f"{bad}:3: input: missing or empty (also accepted: input_text)",
    ]
