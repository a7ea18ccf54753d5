import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from atheus_ray import tables
from atheus_ray.tables import REJECTED_COLUMNS, conform, read_rows, write_rows


def test_conform_gives_null_columns_their_contract_types():
    table = pa.table({"id": ["a"], "parent_id": [None], "seed_ids": [[]], "round": [0], "extra": [1.5]})
    out = conform(table)
    assert out.schema.field("parent_id").type == pa.string()
    assert out.schema.field("seed_ids").type == pa.list_(pa.string())
    assert out.schema.field("round").type == pa.int32()
    assert out.schema.field("extra").type == pa.float64()


def test_write_rows_replaces_and_never_leaves_a_half_table(tmp_path, monkeypatch):
    path = tmp_path / "t"
    write_rows([{"id": "a", "parent_id": None}], path)
    assert read_rows(path) == [{"id": "a", "parent_id": None}]

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(tables.pq, "write_table", boom)
    with pytest.raises(OSError, match="disk full"):
        write_rows([{"id": "b"}], path)
    monkeypatch.undo()
    assert read_rows(path) == [{"id": "a", "parent_id": None}]  # the old table is intact
    assert [p.name for p in tmp_path.iterdir()] == ["t"]  # no temporary folders left behind

    write_rows([{"id": "c"}, {"id": "d"}], path)
    assert [r["id"] for r in read_rows(path)] == ["c", "d"]


def test_fixed_columns_make_tables_that_read_together(tmp_path):
    write_rows([], tmp_path / "rejected" / "stage_a", REJECTED_COLUMNS)
    write_rows(
        [{"id": "x", "reject_reason": "too_short", "seed_ids": ["s"], "extra": 1}],
        tmp_path / "rejected" / "stage_b",
        REJECTED_COLUMNS,
    )
    table = pq.read_table(tmp_path / "rejected")
    assert table.column_names == list(REJECTED_COLUMNS)
    assert table.column("reject_reason").to_pylist() == ["too_short"]


def test_a_column_only_later_rows_have_is_kept(tmp_path):
    """The evaluation's judgments: pairwise rows first, then 1-5 score rows that also name their `candidate`."""
    rows = [{"id": "p", "verdict": "A"}, {"id": "s", "verdict": "4", "candidate": "open"}]
    write_rows(rows, tmp_path / "judgments")
    assert read_rows(tmp_path / "judgments") == [
        {"id": "p", "verdict": "A", "candidate": None},
        {"id": "s", "verdict": "4", "candidate": "open"},
    ]
