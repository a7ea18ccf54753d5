import re

import pytest

from atheus_ray.evaluate.tasks import SAMPLE, load_tasks
from atheus_ray.rows import task_text
from atheus_ray.seeds import SEEDS_DIR, expand_paths, load_seeds
from atheus_ray.sources import SourceError
from atheus_ray.text import rouge_l


def test_the_shipped_sample_loads():
    tasks = load_tasks([SAMPLE])
    assert len(tasks) == 30 and len({t["id"] for t in tasks}) == 30
    assert all(t["input"] and t["output"] and t["eval_aspect"].startswith("- ") for t in tasks)
    points = [p for t in tasks for p in re.findall(r"[-−]?\d+(?:\.\d+)?(?=点)", t["eval_aspect"])]
    assert points and all(re.fullmatch(r"[-−]?\d+", p) for p in points)  # whole points only, as the base rubric


def test_no_sample_task_is_a_near_twin_of_a_seed():
    """Lexical decontamination drops a copy; this keeps reworded twins of seeds out of the sample, where they
    would flatter the condition trained on data grown from those seeds."""
    seeds = [task_text(s.instruction, s.input) for s in load_seeds(expand_paths([str(SEEDS_DIR)]))]
    closest = {t["id"]: max(rouge_l(t["input"], s) for s in seeds) for t in load_tasks([SAMPLE])}
    print(f"closest seed per sample task (character ROUGE-L): max {max(closest.values()):.2f}")
    assert max(closest.values()) < 0.4


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
