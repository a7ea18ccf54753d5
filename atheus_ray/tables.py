"""Writing Parquet tables safely.

Every stage writes a folder of Parquet files (`DIR/<table>/`). `write_table` writes into a temporary
sibling folder and only then swaps it into place, so a crash mid-write never leaves a half-written table
where a complete one stood. Lineage columns are cast to fixed Arrow types so that a table whose `parent_id`
happens to be all null still has the same schema as every other table.
"""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path

import pyarrow as pa

# Fixed types of the row contract's columns (atheus_ray.rows); other columns keep their inferred types.
CONTRACT_TYPES = {
    "id": pa.string(),
    "parent_id": pa.string(),
    "seed_ids": pa.list_(pa.string()),
    "origin": pa.string(),
    "round": pa.int32(),
    "domain": pa.string(),
    "perspective": pa.string(),
    "generator_model": pa.string(),
    "prompt_version": pa.string(),
    "category": pa.string(),
    "instruction": pa.string(),
    "input": pa.string(),
    "output": pa.string(),
}


def conform(table: pa.Table) -> pa.Table:
    """Cast the contract's columns present in `table` to their fixed types."""
    return table.cast(pa.schema([pa.field(f.name, CONTRACT_TYPES.get(f.name, f.type)) for f in table.schema]))


def write_table(ds, path: str | Path) -> Path:
    """Write a Ray Dataset as a Parquet folder at `path`, replacing an old one only once the new is complete."""
    path = Path(path).resolve()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex[:8]}")
    try:
        ds.map_batches(conform, batch_format="pyarrow", zero_copy_batch=True).write_parquet(str(tmp))
        if not tmp.exists():  # an empty dataset writes no files; an empty folder still says "zero rows"
            tmp.mkdir()
        if path.exists():
            old = path.with_name(f".{path.name}.old-{uuid.uuid4().hex[:8]}")
            path.rename(old)
            tmp.rename(path)
            shutil.rmtree(old)
        else:
            tmp.rename(path)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return path
