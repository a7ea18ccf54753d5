"""The shipped seed set, the loaders and importers. (The bad-input catalog of seed files: tests/chaos/.)"""

import json
import re
from collections import Counter

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from seed_records import good_rows, jsonl, row

from atheus_ray.cli import main
from atheus_ray.seeds import (
    MIN_PER_PERSPECTIVE,
    SEEDS_DIR,
    Seed,
    SeedError,
    coverage_kinds,
    duplicate_problems,
    expand_paths,
    is_dialogue,
    load_located,
    load_seeds,
    load_taxonomy,
    round_robin,
    stats,
)
from atheus_ray.text import is_refusal, rouge_l


@pytest.fixture(scope="module")
def shipped():
    return load_located(expand_paths([str(SEEDS_DIR)]))


def test_shipped_seeds_meet_the_coverage_rules(shipped):
    taxonomy = load_taxonomy()
    seeds = [x.seed for x in shipped]
    found = stats(seeds, taxonomy)
    print(json.dumps({k: found[k] for k in ("by_characteristic", "by_probe", "coverage")}, ensure_ascii=False))
    assert found["seeds"] >= 600
    assert set(found["by_perspective"]) == set(taxonomy.perspectives)
    assert min(found["by_perspective"].values()) >= MIN_PER_PERSPECTIVE == 40
    assert found["gaps"]["coverage_under_target"] == {}
    assert all(v["seeds"] for v in found["by_characteristic"].values())  # every QA4AI characteristic has seeds
    assert found["gaps"]["unused_categories"] == []
    assert len(found["by_domain"]) >= 30
    assert found["instruction_chars"]["min"] < 30 and found["instruction_chars"]["max"] > 150  # varied length


def test_shipped_seeds_have_no_near_duplicates(shipped):
    assert duplicate_problems(shipped) == []


CHILD = re.compile(
    r"([0-9０-９]+|[一二三四五六七八九十]+)歳(の|児)|小学生|中学生|高校生|子ども|子供|こども|園児|小[1-6一二三四五六]"
)
FOR_THEM = re.compile(r"向け|にも|でも|に(説明|教え|伝え|話す|読み聞かせ)|が(読|わか|分か)|に(わか|分か)る")


def test_shipped_seeds_lean_on_no_template(shipped):
    """Issue 16's template counts: an explanation pitched at a child, one noise type, one refusal opener, and
    false premises among the factuality seeds."""
    seeds = [x.seed for x in shipped]
    for_children = [
        s.id for s in seeds if (m := CHILD.search(s.instruction)) and FOR_THEM.search(s.instruction[m.end() :][:25])
    ]
    refusal_openers = Counter(re.split(r"[。！\n]", s.output)[0][-6:] for s in seeds if is_refusal(s.output))
    probes = Counter((s.perspective, s.probe) for s in seeds)
    print(f"for children: {for_children}; refusal openers: {refusal_openers.most_common(3)}; probes: {probes}")
    assert len(for_children) <= 10
    assert refusal_openers.most_common(1)[0][1] <= 5
    assert probes["robustness", "noise_spaced_kana"] <= 4
    assert len({p for (perspective, p) in probes if perspective == "robustness" and p.startswith("noise_")}) >= 10
    assert probes["factuality", "false_premise"] <= 8


def test_paraphrase_pairs_ask_what_their_seed_asks_in_other_words(shipped):
    by_id = {x.seed.id: x.seed for x in shipped}
    pairs = [(s, by_id[s.variant_of]) for s in by_id.values() if s.variant_of]
    assert len(pairs) >= 10 and all(s.probe == "paraphrase" for s, _ in pairs)
    for variant, seed in pairs:  # reworded, not copied (the near-duplicate check allows up to 0.7)
        assert rouge_l(variant.instruction, seed.instruction) < 0.5, variant.id


def test_shipped_seeds_include_japanese_specific_tasks(shipped):
    text = [x.seed.instruction + (x.seed.input or "") for x in shipped]
    for marker, at_least in (("敬語", 3), ("読み", 3), ("五十音", 2), ("和暦", 1), ("俳句", 2)):
        assert sum(marker in t for t in text) >= at_least, marker


def test_every_perspective_names_its_qa4ai_characteristic():
    taxonomy = load_taxonomy()
    assert list(taxonomy.characteristics) == ["QC01", "QC02", "QC03", "QC04", "QC05"]
    assert {
        p: taxonomy.characteristic(p)
        for p in taxonomy.perspectives
        if taxonomy.characteristic(p) not in taxonomy.characteristics
    } == {}
    own = {p for p, d in taxonomy.perspectives.items() if d.get("refinement")}
    assert {"reasoning", "helpfulness", "fluency", "creativity"} <= own  # parts of QC01, not QA4AI items
    assert {taxonomy.characteristic(p) for p in ("security", "privacy", "copyright")} == {"QC05", "QC03"}


def test_coverage_kinds_reads_dialogue_and_long_inputs():
    turns = "ユーザー：来週の旅行の相談です。\nアシスタント：どちらへ行かれますか？"
    dialogue = Seed(
        id="d",
        perspective="consistency",
        category="roleplay",
        domain="tourism",
        instruction="じゃあ二日目は？",
        input=turns,
        output="二日目は…",
    )
    assert coverage_kinds(dialogue) == {"dialogue"}
    assert not is_dialogue("ユーザー：一人で話しているだけ\nユーザー：まだ一人")
    long = dialogue.model_copy(update={"input": "あ" * 1500, "category": "summarization", "probe": "exfiltration"})
    assert coverage_kinds(long) == {"long_input", "summarization", "injection_or_exfiltration"}


def test_validate_prints_the_table_for_the_shipped_seeds(capsys):
    assert main(["seeds", "validate", str(SEEDS_DIR)]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].startswith("perspective") and "creative_writing" in out
    assert "seeds OK" in out


# ----------------------------------------------------------------------------------- the bad-input catalog


def test_crlf_line_ends_are_accepted(tmp_path):
    path = tmp_path / "crlf.jsonl"
    path.write_bytes(jsonl(*good_rows(2)).replace(b"\n", b"\r\n"))
    assert [s.id for s in load_seeds([path])] == ["ok-0", "ok-1"]


def test_a_folder_with_mixed_formats_loads_each_and_rejects_the_unsupported(tmp_path, capsys):
    folder = tmp_path / "mixed"
    folder.mkdir()
    (folder / "a.jsonl").write_bytes(jsonl(row(id="j-1", instruction="JSONLの質問")))
    (folder / "b.csv").write_text(
        "id,perspective,category,domain,instruction,input,output\r\n"
        'c-1,safety,advice,medical,"CSVの質問\r\n二行目",,答え\r\n',
        encoding="utf-8",
    )
    pq.write_table(
        pa.Table.from_pylist([row(id="p-1", instruction="Parquetの質問", input=None)]), folder / "c.parquet"
    )
    (folder / "notes.txt").write_text("ignored: folders contribute .jsonl, .csv and .parquet files")
    seeds = load_seeds(expand_paths([str(folder)]))
    assert [s.id for s in seeds] == ["j-1", "c-1", "p-1"]
    assert seeds[1].instruction == "CSVの質問\n二行目" and seeds[1].input is None

    (folder / "d.jsonl").write_bytes(jsonl(row(id="p-1", instruction="重複ID")))
    assert main(["seeds", "validate", str(folder)]) == 1
    assert (
        f"{folder / 'd.jsonl'}:1: id: duplicate id 'p-1' (first at {folder / 'c.parquet'}:row 1)"
        in capsys.readouterr().out
    )


def test_unsupported_file_format_is_named(tmp_path):
    path = tmp_path / "seeds.txt"
    path.write_text("hello")
    with pytest.raises(SeedError, match=r"seeds.txt: \(file\): unsupported format '.txt'"):
        load_seeds([path])


def test_near_duplicates_are_reported_with_both_places(tmp_path, capsys):
    path = tmp_path / "dup.jsonl"
    path.write_bytes(
        jsonl(
            row(id="a", instruction="東京の観光名所を三つ教えてください"),
            row(id="b", instruction="東京の観光名所を三つ教えて下さい"),
        )
    )
    assert main(["seeds", "validate", str(path)]) == 1
    out = capsys.readouterr().out
    assert f"{path}:2: instruction: near-duplicate of a at {path}:1 (character ROUGE-L" in out


# ----------------------------------------------------------------------------------- importers and sources


def test_self_instruct_format_is_imported_one_seed_per_instance(tmp_path):
    path = tmp_path / "self_instruct.jsonl"
    record = {
        "id": "seed_task_7",
        "name": "sentiment",
        "is_classification": True,
        "instruction": "この文の感情を判定してください。",
        "instances": [
            {"input": "最高の一日だった", "output": "ポジティブ"},
            {"input": "雨で台無し", "output": "ネガティブ"},
        ],
    }
    path.write_bytes(jsonl(record))
    seeds = load_seeds([path], default_perspective="robustness")
    assert [(s.id, s.perspective, s.category, s.input) for s in seeds] == [
        ("seed_task_7#1", "robustness", "classification", "最高の一日だった"),
        ("seed_task_7#2", "robustness", "classification", "雨で台無し"),
    ]


def test_alpaca_format_maps_unknown_perspectives_to_the_default(tmp_path):
    path = tmp_path / "alpaca.jsonl"
    path.write_bytes(
        jsonl(
            {"instruction": "俳句を作って", "input": "", "output": "古池や"},
            {"instruction": "要約して", "input": "本文", "output": "要旨", "perspective": "made_up"},
            {"instruction": "敬語に", "input": "", "output": "はい", "perspective": "fluency"},
        )
    )
    seeds = load_seeds([path], default_perspective="creativity")
    assert [s.perspective for s in seeds] == ["creativity", "creativity", "fluency"]
    assert [s.id for s in seeds] == [f"{path}-1", f"{path}-2", f"{path}-3"]
    assert seeds[0].input is None and seeds[0].domain == "daily_life"


def test_self_instruct_without_instances_is_an_error(tmp_path):
    path = tmp_path / "bad_si.jsonl"
    path.write_bytes(jsonl({"id": "t", "instruction": "x", "instances": []}))
    with pytest.raises(SeedError, match=r":1: \(record\): instances: must be a non-empty list"):
        load_seeds([path])


def test_hugging_face_dataset_source(tmp_path):
    folder = tmp_path / "hf_dataset"
    folder.mkdir()
    (folder / "train.jsonl").write_bytes(jsonl(*good_rows(3)))
    seeds = load_seeds(expand_paths([f"hf:{folder}"]))
    assert [s.id for s in seeds] == ["ok-0", "ok-1", "ok-2"]


def test_round_robin_covers_perspectives_first():
    seeds = load_seeds([SEEDS_DIR / "fluency.jsonl", SEEDS_DIR / "safety.jsonl"])
    picked = round_robin(seeds, 4)
    assert [s.perspective for s in picked] == ["fluency", "safety", "fluency", "safety"]
    assert round_robin(seeds, None) == seeds


def test_expand_paths_names_a_pattern_that_matches_nothing(tmp_path):
    with pytest.raises(FileNotFoundError, match="no file matches"):
        expand_paths([str(tmp_path / "*.jsonl")])
