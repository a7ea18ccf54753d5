"""Reading records from files and data sets: JSONL, CSV and Parquet files, folders of them (local, or on an
object store as `s3://bucket/key`, `gs://...`: no globs there), and Hugging Face data sets written
`hf:owner/name` or `hf:owner/name:split`.

`records(source, problems)` yields `(where, record)` pairs, where `where` is `file:line` (JSONL, CSV) or
`file:row N` (Parquet, Hugging Face), so every later message can name the line or row. Unreadable parts
(bad JSON, non-UTF-8 bytes, a byte-order mark, a huge line) are appended to `problems` as
`where: (line): message` instead of raising, so a caller can report every problem at once.
Seeds, screening inputs, evaluation prompts and training data are all read through here.
"""

from __future__ import annotations

import csv
import glob
import io
import json
from pathlib import Path
from typing import Iterator

from atheus_ray.storage import Location, is_object_store

FORMATS = (".jsonl", ".csv", ".parquet")
MAX_LINE_BYTES = 1 << 20  # a record is a few KB; a 1 MiB line is a broken file, not a record


class SourceError(ValueError):
    """Unreadable sources; `problems` holds one `where: field: message` string per problem."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("\n".join(problems))


def expand_paths(patterns: list[str]) -> list[str]:
    """Expand globs and folders into source names. Folders contribute their JSONL, CSV and Parquet files; `hf:`
    names pass through. A pattern that matches nothing is an error naming it."""
    sources: list[str] = []
    for pattern in patterns:
        if pattern.startswith("hf:"):
            sources.append(pattern)
            continue
        if is_object_store(pattern):
            sources += _object_store_sources(pattern)
            continue
        found = sorted(glob.glob(pattern))
        if not found:
            raise FileNotFoundError(f"no file matches {pattern}")
        for path in map(Path, found):
            if path.is_dir():
                inside = sorted(p for p in path.iterdir() if p.is_file() and p.suffix in FORMATS)
                if not inside:
                    raise FileNotFoundError(f"{path}: folder has no {', '.join(FORMATS)} files")
                sources += [str(p) for p in inside]
            else:
                sources.append(str(path))
    return sources


def _object_store_sources(uri: str) -> list[str]:
    where = Location(uri)
    if where.is_dir():
        inside = [str(f) for f in where.files() if f.name.endswith(FORMATS)]
        if not inside:
            raise FileNotFoundError(f"{uri}: folder has no {', '.join(FORMATS)} files")
        return inside
    if not where.exists():
        raise FileNotFoundError(f"no file at {uri}")
    return [uri]


def records(source: str, problems: list[str]) -> Iterator[tuple[str, object]]:
    """Yield (where, record) from one source; unreadable parts become problems."""
    if source.startswith("hf:"):
        yield from hf_records(source)
        return
    path = Path(source)
    if path.suffix not in FORMATS:
        problems.append(f"{source}: (file): unsupported format {path.suffix or '(none)'!r}; use {', '.join(FORMATS)}")
        return
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        try:
            where = Location(source)
            rows = pq.read_table(where.path, filesystem=where.fs).to_pylist()
        except Exception as e:
            problems.append(f"{source}: (file): not a readable Parquet file: {e}")
            return
        for n, row in enumerate(rows, 1):
            yield f"{source}:row {n}", row
        return
    before = len(problems)
    lines = text_lines(source, problems)
    if path.suffix == ".jsonl":
        for lineno, line in lines:
            if not line.strip():
                continue
            try:
                yield f"{source}:{lineno}", json.loads(line)
            except json.JSONDecodeError as e:
                problems.append(f"{source}:{lineno}: (line): invalid JSON: {e.msg} at column {e.colno}")
        return
    if len(problems) > before:  # a CSV with unreadable lines cannot be parsed reliably past them
        return
    # .csv: a header line, then one record per row (a quoted field may span lines)
    reader = csv.DictReader(io.StringIO("\n".join(line for _, line in lines)))
    start = 2
    for row in reader:
        where = f"{source}:{lines[start - 1][0]}"
        start = reader.line_num + 1
        if None in row:
            problems.append(f"{where}: (line): more values than header columns")
            continue
        yield where, {k: v for k, v in row.items() if v not in (None, "")}


def text_lines(path: str, problems: list[str]) -> list[tuple[int, str]]:
    """(line number, text) of a UTF-8 text file; CRLF accepted; BOM, bad bytes and huge lines are problems."""
    out = []
    with Location(path).open_lines() as f:
        for lineno, raw in enumerate(f, 1):
            if len(raw) > MAX_LINE_BYTES:
                problems.append(f"{path}:{lineno}: (line): {len(raw):,} bytes, over the {MAX_LINE_BYTES:,}-byte limit")
                continue
            if lineno == 1 and raw.startswith(b"\xef\xbb\xbf"):
                problems.append(f"{path}:1: (line): starts with a byte-order mark; save the file as UTF-8 without BOM")
                continue
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                problems.append(f"{path}:{lineno}: (line): not UTF-8 (byte 0x{raw[e.start]:02x} at offset {e.start})")
                continue
            out.append((lineno, text.rstrip("\r\n")))
    return out


def hf_records(source: str) -> Iterator[tuple[str, object]]:
    import datasets

    name, _, split = source[3:].partition(":")
    for n, row in enumerate(datasets.load_dataset(name, split=split or "train"), 1):
        yield f"{source} row {n}", row


def read_records(patterns: list[str]) -> list[tuple[str, dict]]:
    """Every (where, record) of the sources the patterns name; raise SourceError listing every problem
    (an unreadable line, a record that is not an object, a source with no records)."""
    found, problems = [], []
    for source in expand_paths(patterns):
        before = len(found)
        for where, record in records(source, problems):
            if isinstance(record, dict):
                found.append((where, record))
            else:
                problems.append(f"{where}: (record): expected an object, got {type(record).__name__}")
        if len(found) == before:
            problems.append(f"{source}: (file): no records in it")
    if problems:
        raise SourceError(problems)
    return found
