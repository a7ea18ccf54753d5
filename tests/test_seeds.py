import json

import pytest

from atheus_ray.seeds import SEEDS_DIR, SeedError, expand_paths, load_seeds, load_taxonomy, round_robin


def test_shipped_seeds_load_and_cover_every_perspective():
    seeds = load_seeds(expand_paths(["seeds/*.jsonl"]))
    taxonomy = load_taxonomy()
    assert len(seeds) >= 408
    assert {s.perspective for s in seeds} == set(taxonomy.perspectives)


def good(**changes):
    row = {"id": "x-1", "perspective": "fluency", "category": "qa", "domain": "it",
           "instruction": "質問です", "output": "答えです"}  # fmt: skip
    row.update(changes)
    return json.dumps(row, ensure_ascii=False)


def test_bad_rows_are_reported_with_file_line_and_field(tmp_path):
    path = tmp_path / "bad.jsonl"
    lines = [
        good(),
        "{not json",
        good(id="x-2", perspective="vibes"),
        good(id="x-3", instruction="  "),
        good(id="x-1"),
        good(id="x-4", colour="red"),
        json.dumps({"id": "x-5"}),
    ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(SeedError) as e:
        load_seeds([path])
    problems = e.value.problems
    assert f"{path}:2: (line): invalid JSON" in problems[0]
    assert f"{path}:3: perspective: unknown perspective 'vibes'" in problems[1]
    assert f"{path}:4: instruction:" in problems[2] and "must not be empty" in problems[2]
    assert f"{path}:5: id: duplicate id 'x-1' (first at {path}:1)" == problems[3]
    assert f"{path}:6: colour: unknown field" == problems[4]
    assert any(p.startswith(f"{path}:7: output:") for p in problems)


def test_expand_paths_names_a_pattern_that_matches_nothing(tmp_path):
    with pytest.raises(FileNotFoundError, match="no seed file matches"):
        expand_paths([str(tmp_path / "*.jsonl")])


def test_round_robin_covers_perspectives_first():
    seeds = load_seeds([SEEDS_DIR / "fluency.jsonl", SEEDS_DIR / "safety.jsonl"])
    picked = round_robin(seeds, 4)
    assert [s.perspective for s in picked] == ["fluency", "safety", "fluency", "safety"]
    assert round_robin(seeds, None) == seeds
