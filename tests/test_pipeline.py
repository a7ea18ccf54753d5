"""The first slice end to end: real seeds → real vLLM on CPU through ray.data.llm → Parquet."""

import datasets
import pyarrow.parquet as pq
import pytest

from atheus_ray import pipeline
from atheus_ray.config import PipelineConfig, load_config
from atheus_ray.rows import LINEAGE_COLUMNS, content_id, prompt_version
from atheus_ray.seeds import expand_paths, load_seeds
from atheus_ray.synth.respond import PROMPT


@pytest.mark.slow
def test_pipeline_writes_contract_rows_that_pyarrow_and_datasets_read(ray_local, embedded_model, tmp_path):
    cfg = load_config(
        PipelineConfig,
        "jobs/configs/local.yaml",
        [f"out={tmp_path}", "seeds.limit=4", "respond.max_tokens=16", "respond.temperature=0"],
    )
    summary = pipeline.run(cfg, log=lambda m: None)

    assert summary["counts"]["seeds"] == 4
    assert summary["counts"]["responses"] + summary["counts"]["rejected"] == 4
    table = pq.read_table(tmp_path / "responses")
    assert table.num_rows == summary["counts"]["responses"] > 0
    for column in (*LINEAGE_COLUMNS, "instruction", "input", "output", "response", "response_model"):
        assert column in table.column_names

    seeds = {s.id: s for s in load_seeds(expand_paths(["seeds/*.jsonl"]))}
    version = prompt_version(PROMPT)
    for row in table.to_pylist():
        seed = seeds[row["seed_ids"][0]]
        assert row["id"] == content_id(seed.instruction, seed.input)
        assert (row["origin"], row["round"], row["parent_id"]) == ("seed", 0, None)
        assert row["instruction"] == seed.instruction and row["output"] == seed.output
        assert row["response"].strip()
        assert 0 < row["response_tokens"] <= 16
        assert row["response_prompt_version"] == version
    assert len({r["perspective"] for r in table.to_pylist()}) == table.num_rows  # round-robin over perspectives

    loaded = datasets.load_dataset("parquet", data_dir=str(tmp_path / "responses"), split="train")
    assert loaded.num_rows == table.num_rows
    assert sorted(loaded["id"]) == sorted(table.column("id").to_pylist())
    assert (tmp_path / "rejected").is_dir()
