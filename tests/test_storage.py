"""Location on a local folder and on a real S3-compatible server (moto, tests/conftest.py): the same calls, the
same results; tables, judge caches and sources read back from S3; no local folder named after the URI."""

import pyarrow.parquet as pq
import pytest

from atheus_ray.evaluate.judge import Cache
from atheus_ray.sources import expand_paths, read_records
from atheus_ray.storage import Location
from atheus_ray.tables import read_rows, write_rows


@pytest.fixture(params=["local", "s3"])
def root(request, tmp_path, monkeypatch):
    if request.param == "local":
        return str(tmp_path / "out")
    s3 = request.getfixturevalue("s3_server")
    for key, value in s3["env"].items():
        monkeypatch.setenv(key, value)
    monkeypatch.chdir(tmp_path)
    return "s3://atheus-test/run"


def test_files_are_written_whole_read_back_and_deleted(root, tmp_path):
    out = Location(root)
    assert str(out) == root and not out.exists()
    done = (out / "stages" / "a" / "done.json").write_text('{"kept": 3}')
    assert done.exists() and done.read_text() == '{"kept": 3}' and done.name == "done.json"
    assert str(done.parent) == f"{root}/stages/a"
    done.write_text("二回目")  # replaced, not appended
    assert done.read_text() == "二回目"
    assert [f.name for f in (out / "stages" / "a").files()] == ["done.json"]  # no temporary file left
    (out / "stages").delete()
    assert not done.exists() and (out / "nothing").files() == []
    assert not list(tmp_path.rglob("s3:*"))


def test_a_table_replaces_the_old_one_and_reads_back_with_pyarrow(root):
    folder = Location(root) / "final"
    write_rows([{"id": "a"}, {"id": "b"}], folder)
    write_rows([{"id": "c"}], folder)
    assert read_rows(folder) == [{"id": "c"}]
    assert pq.read_table(folder.path, filesystem=folder.fs).column("id").to_pylist() == ["c"]
    assert [f.name for f in folder.files()] == ["part-0.parquet"]


def test_a_table_of_an_older_layout_loses_its_other_parts(root):
    folder = Location(root) / "final"
    write_rows([{"id": "a"}], folder)
    (folder / "part-1.parquet").write_bytes((folder / "part-0.parquet").read_bytes())  # two parts: a doubled table
    write_rows([{"id": "b"}], folder)
    assert read_rows(folder) == [{"id": "b"}]


def test_the_judge_cache_is_parts_that_a_new_cache_reads(root):
    cache = Cache(Location(root) / "judge_cache")
    for n in range(Cache.FLUSH_EVERY + 1):
        cache.put({"key": f"k{n}", "verdict": "A", "attempts": 1, "reply": "[[A]]"})
    assert len((Location(root) / "judge_cache").files()) == 1  # FLUSH_EVERY written, one still pending
    cache.flush()
    again = Cache(Location(root) / "judge_cache")
    assert len(again.records) == Cache.FLUSH_EVERY + 1 and again.records["k0"]["verdict"] == "A"


def test_sources_read_jsonl_files_and_folders_on_the_store(root):
    (Location(root) / "sft" / "train.jsonl").write_text('{"a": 1}\n\n{"a": 2}\n')
    (Location(root) / "sft" / "notes.txt").write_text("not data")
    assert expand_paths([f"{root}/sft"]) == [f"{root}/sft/train.jsonl"]
    assert [r for _, r in read_records([f"{root}/sft/train.jsonl"])] == [{"a": 1}, {"a": 2}]
    assert read_records([f"{root}/sft/train.jsonl"])[1][0] == f"{root}/sft/train.jsonl:3"
    with pytest.raises(FileNotFoundError, match="missing.jsonl"):
        expand_paths([f"{root}/missing.jsonl"])


def test_a_folder_is_uploaded_whole_and_replaces_the_old_one(root, tmp_path):
    local = tmp_path / "export"
    (local / "sub").mkdir(parents=True)
    (local / "config.json").write_text("{}")
    (local / "sub" / "weights.bin").write_bytes(b"\x00\x01")
    target = Location(root) / "sft" / "run" / "model"
    (target / "stale.bin").write_bytes(b"old")
    target.upload(local)
    assert sorted(f.name for f in target.files()) == ["config.json"] and not (target / "stale.bin").exists()
    assert (target / "sub" / "weights.bin").read_bytes() == b"\x00\x01"


def test_the_next_write_removes_what_a_killed_write_left(tmp_path):
    """A write killed between its hidden sibling and the rename leaves the sibling (the kill tests found none
    because their kills land between writes): the next write of the same file removes it, and leaves other
    files alone."""
    table = Location(tmp_path / "final" / "part-0.parquet")
    table.write_bytes(b"old")
    orphan = tmp_path / "final" / ".part-0.parquet.tmp-0badc0de"
    orphan.write_bytes(b"half")
    other = tmp_path / "final" / ".other.tmp-12345678"
    other.write_bytes(b"not ours")
    table.write_bytes(b"new")
    assert table.read_bytes() == b"new" and not orphan.exists() and other.exists()
