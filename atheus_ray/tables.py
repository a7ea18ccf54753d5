"""Reading and writing Parquet tables safely.

A table is a folder holding one Parquet file (`DIR/<table>/part-0.parquet`), on a local disk, a shared file
system or an object store (atheus_ray.storage). `write_rows` replaces that file at once (a rename on a disk,
one upload on an object store), so a crash mid-write never leaves a half-written table where a complete one
stood, and a rerun never sees a partial one; any other file in the folder goes after. The contract's columns
get fixed Arrow types, so a table whose `parent_id` is all null has the same schema as every other table and
tables concatenate.
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq

from atheus_ray.rows import LINEAGE_COLUMNS
from atheus_ray.storage import Location

# Fixed types of the row contract's columns (atheus_ray.rows) and of the columns every stage shares.
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
    "response": pa.string(),
    "response_model": pa.string(),
    "response_prompt_version": pa.string(),
    "response_tokens": pa.int32(),
    "response_truncated": pa.bool_(),
    "response_examples": pa.list_(pa.string()),
    "ja_ratio": pa.float64(),
    "quality": pa.int32(),
    "quality_reason": pa.string(),
    "difficulty_reason": pa.string(),
    "score_reason": pa.string(),
    "difficulty": pa.int32(),
    "task_category": pa.string(),
    "request_safety": pa.string(),
    "refusal": pa.bool_(),
    "safety": pa.string(),
    "safety_category": pa.string(),
    "score": pa.int32(),
    "tagger_model": pa.string(),
    "tagger_prompt_version": pa.string(),
    "dup_of": pa.string(),
    "stage": pa.string(),
    "reject_reason": pa.string(),
    "detail": pa.string(),
}
PART = "part-0.parquet"
REJECTED_COLUMNS = (
    *LINEAGE_COLUMNS,
    "category",
    "instruction",
    "input",
    "response",
    "stage",
    "reject_reason",
    "detail",
)


def conform(table: pa.Table) -> pa.Table:
    """Cast the shared columns present in `table` to their fixed types."""
    return table.cast(pa.schema([pa.field(f.name, CONTRACT_TYPES.get(f.name, f.type)) for f in table.schema]))


def to_table(rows: list[dict], columns: tuple[str, ...] | None = None) -> pa.Table:
    """Rows → an Arrow table with the shared columns typed; `columns` fixes the column set (missing → null).
    Without it, the columns are every key any row has, in order of appearance (Arrow alone would keep only the
    first row's: the evaluation's 1-5 score rows lost their `candidate` behind the pairwise ones)."""
    if columns is None and rows:
        columns = tuple(dict.fromkeys(key for row in rows for key in row))
    if columns is not None:
        rows = [{c: row.get(c) for c in columns} for row in rows]
        if not rows:
            return pa.schema([pa.field(c, CONTRACT_TYPES.get(c, pa.string())) for c in columns]).empty_table()
    return conform(pa.Table.from_pylist(rows))


def write_rows(rows: list[dict], path: str | Location, columns: tuple[str, ...] | None = None) -> Location:
    """Write rows as the Parquet folder `path` (one file), replacing an old table only once the new is complete."""
    folder = Location(path)
    buffer = pa.BufferOutputStream()
    pq.write_table(to_table(rows, columns), buffer)
    part = (folder / PART).write_bytes(buffer.getvalue().to_pybytes())
    for stale in folder.files():
        if stale != part and not stale.name.startswith((".", "_")):
            stale.delete()
    return folder


def read_rows(path: str | Location) -> list[dict]:
    """All rows of a Parquet file or folder, as dicts."""
    where = Location(path)
    return pq.read_table(where.path, filesystem=where.fs).to_pylist()
