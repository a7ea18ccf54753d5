import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import ray

from atheus_ray.tables import conform, write_table


def test_conform_gives_null_columns_their_contract_types():
    table = pa.table({"id": ["a"], "parent_id": [None], "seed_ids": [[]], "round": [0], "extra": [1.5]})
    out = conform(table)
    assert out.schema.field("parent_id").type == pa.string()
    assert out.schema.field("seed_ids").type == pa.list_(pa.string())
    assert out.schema.field("round").type == pa.int32()
    assert out.schema.field("extra").type == pa.float64()


def test_write_table_replaces_and_never_leaves_a_half_table(ray_local, tmp_path):
    path = tmp_path / "t"
    write_table(ray.data.from_items([{"id": "a", "parent_id": None}]), path)
    assert pq.read_table(path).column("id").to_pylist() == ["a"]

    def boom(row):
        raise RuntimeError("stage failed")

    with pytest.raises(Exception, match="stage failed"):
        write_table(ray.data.from_items([{"id": "b"}]).map(boom), path)
    assert pq.read_table(path).column("id").to_pylist() == ["a"]  # the old table is intact
    assert [p.name for p in tmp_path.iterdir()] == ["t"]  # no temporary folders left behind

    write_table(ray.data.from_items([{"id": "c"}, {"id": "d"}]), path)
    assert sorted(pq.read_table(path).column("id").to_pylist()) == ["c", "d"]


def test_write_table_of_nothing_is_an_empty_folder(ray_local, tmp_path):
    ds = ray.data.from_items([{"id": "a"}]).filter(lambda r: False)
    path = write_table(ds, tmp_path / "empty")
    assert path.is_dir()
