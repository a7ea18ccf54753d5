"""The bad-input catalog of the run commands: every malformed seed file, pair table, task file, config and
command line gets one message that names the file, the line or row and the field (or the config key), exit
status 2, and nothing written in the output folder. (Serve requests: tests/serve/test_app.py, 4xx naming the
field, the replica serving on; `atheus seeds validate` and its exit status 1: tests/test_seeds.py.)

Each case runs `atheus` in this process, as the command line does (atheus_ray.cli.main); one case more runs it
as a process (tests/test_cli.py), for the exit status the shell sees."""

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from seed_records import good_rows, jsonl, row

from atheus_ray.cli import main
from atheus_ray.seeds import SeedError, load_seeds

REPO = Path(__file__).resolve().parents[2]
SYNTH, SCREEN, EVAL = (str(REPO / "jobs" / "configs" / f"{name}.yaml") for name in ("synth", "screen", "eval"))
PIPELINE, SFT = str(REPO / "jobs" / "configs" / "pipeline.yaml"), str(REPO / "jobs" / "configs" / "sft.yaml")


def atheus(capsys, *argv: str) -> tuple[int, str]:
    """(exit status, stderr) of `atheus ARGV`; argparse's own errors exit through SystemExit."""
    try:
        status = main(list(argv))
    except SystemExit as e:
        status = e.code
    return status, capsys.readouterr().err


def refused(capsys, tmp_path: Path, argv: list[str], *expected: str) -> None:
    out = tmp_path / "out"
    status, err = atheus(capsys, *[a.replace("OUT", str(out)) for a in argv])
    assert status == 2, err
    for text in expected:
        assert text.replace("TMP", str(tmp_path)) in err, err
    assert not out.exists(), sorted(out.rglob("*"))  # nothing written, not even a log
    assert not Path("s3:").exists() and not Path("ftp:").exists()  # nor a local folder named after a URI


# ---------------------------------------------------------------- seed files


SEED_CATALOG = [
    ("invalid JSON line", jsonl(*good_rows()) + b'{"id": "broken"\n', ":2: (line): invalid JSON"),
    ("missing field", jsonl(row(output=None)), ":1: output: Field required"),
    ("empty field", jsonl(row(instruction="   ")), ":1: instruction: Value error, must not be empty"),
    ("unknown perspective", jsonl(row(perspective="vibes")), ":1: perspective: unknown perspective 'vibes'"),
    ("unknown field", jsonl(row(colour="red")), ":1: colour: unknown field"),
    ("duplicate id", jsonl(row(), row(instruction="別の質問")), ":2: id: duplicate id 'x-1' (first at"),
    ("wrong type", jsonl(row(instruction=42)), ":1: instruction: Input should be a valid string"),
    ("not an object", b"[1, 2]\n", ":1: (record): expected an object, got list"),
    ("non-UTF-8 bytes", jsonl(row()).replace("質".encode(), b"\x8e\xbf"), ":1: (line): not UTF-8"),
    ("BOM", b"\xef\xbb\xbf" + jsonl(row()), ":1: (line): starts with a byte-order mark"),
    ("10 MB line", jsonl(row(output="あ" * 3_500_000)), ":1: (line): 10,500,"),
    ("unknown probe", jsonl(row(probe="gotcha")), ":1: probe: unknown probe 'gotcha'"),
    ("paraphrase without variant_of", jsonl(row(probe="paraphrase")), ":1: variant_of: set it exactly when"),
    ("variant_of names no seed", jsonl(row(probe="paraphrase", variant_of="x-9")), ":1: variant_of: no seed has"),
    ("as_of not YYYY-MM", jsonl(row(as_of="2026/12")), ":1: as_of: String should match pattern"),
    ("empty file", b"", ": (file): no seeds in it"),
    ("blank lines only", b"\n\n  \n", ": (file): no seeds in it"),
]


@pytest.mark.parametrize("name,content,expected", SEED_CATALOG, ids=[c[0] for c in SEED_CATALOG])
def test_seeds_validate_names_the_problem_and_exits_1(tmp_path, capsys, name, content, expected):
    path = tmp_path / "seeds.jsonl"
    path.write_bytes(content)
    before = sorted(p.name for p in tmp_path.iterdir())
    assert main(["seeds", "validate", str(path)]) == 1
    captured = capsys.readouterr()
    assert any(line.startswith(str(path)) and expected in line for line in captured.out.splitlines()), captured.out
    assert "nothing was written" in captured.err
    assert sorted(p.name for p in tmp_path.iterdir()) == before
    with pytest.raises(SeedError):
        load_seeds([path])


# ---------------------------------------------------------------- seed files, through `atheus synth` (exit 2)


@pytest.mark.parametrize("name,content,expected", SEED_CATALOG, ids=[c[0] for c in SEED_CATALOG])
def test_a_bad_seed_file_stops_synthesis(capsys, tmp_path, name, content, expected):
    (tmp_path / "seeds.jsonl").write_bytes(content)
    argv = ["synth", "--config", SYNTH, "--out", "OUT", "--set", f"seeds.paths=[{tmp_path / 'seeds.jsonl'}]"]
    refused(capsys, tmp_path, argv, f"TMP/seeds.jsonl{expected}")


# ---------------------------------------------------------------- pair tables, `atheus screen --in`

PAIR = {"instruction": "挨拶してください", "output": "こんにちは"}
PAIRS = [
    ("missing answer", "p.jsonl", jsonl(PAIR, {"instruction": "挨拶して"}), "TMP/p.jsonl:2: output: missing"),
    ("answer not text", "p.jsonl", jsonl({**PAIR, "output": 3}), "TMP/p.jsonl:1: output: expected text, got int"),
    (
        "instruction not text",
        "p.jsonl",
        jsonl({**PAIR, "instruction": ["a"]}),
        "TMP/p.jsonl:1: instruction: expected text, got list",
    ),
    ("empty instruction", "p.jsonl", jsonl({**PAIR, "instruction": " "}), "TMP/p.jsonl:1: instruction: missing"),
    ("input not text", "p.jsonl", jsonl({**PAIR, "input": {"a": 1}}), "TMP/p.jsonl:1: input: expected text or null"),
    ("invalid JSON line", "p.jsonl", jsonl(PAIR) + b"{oops\n", "TMP/p.jsonl:2: (line): invalid JSON"),
    ("empty file", "p.jsonl", b"", "TMP/p.jsonl: (file): no records in it"),
    ("CSV row longer than its header", "p.csv", "instruction,output\na,b,c\n".encode(), "TMP/p.csv:2: (line): more"),
]


@pytest.mark.parametrize("name,filename,content,expected", PAIRS, ids=[c[0] for c in PAIRS])
def test_a_bad_pair_table_stops_screening(capsys, tmp_path, name, filename, content, expected):
    (tmp_path / filename).write_bytes(content)
    refused(
        capsys, tmp_path, ["screen", "--config", SCREEN, "--in", str(tmp_path / filename), "--out", "OUT"], expected
    )


def test_a_parquet_table_of_another_schema_stops_screening(capsys, tmp_path):
    pq.write_table(pa.table({"question": ["q"], "answer": ["a"]}), tmp_path / "p.parquet")
    argv = ["screen", "--config", SCREEN, "--in", str(tmp_path / "p.parquet"), "--out", "OUT"]
    refused(capsys, tmp_path, argv, "TMP/p.parquet:row 1: instruction: missing", "TMP/p.parquet:row 1: output:")


def test_a_missing_pair_table_is_named(capsys, tmp_path):
    refused(capsys, tmp_path, ["screen", "--in", str(tmp_path / "none.jsonl"), "--out", "OUT"], "TMP/none.jsonl")


# ---------------------------------------------------------------- evaluation tasks, `atheus eval`

TASK = {"input": "1+1は？", "output": "2"}
TASKS = [
    ("task without input", jsonl({"output": "2"}), "TMP/t.jsonl:1: input: missing or empty"),
    ("task without reference", jsonl({"input": "1+1は？"}), "TMP/t.jsonl:1: output: missing or empty"),
    ("the same task twice", jsonl(TASK, {"input": "2+2は？", "output": "4"}, TASK), "TMP/t.jsonl:3: input: the same"),
    ("no tasks", b"\n", "TMP/t.jsonl: (file): no records in it"),
]


@pytest.mark.parametrize("name,content,expected", TASKS, ids=[c[0] for c in TASKS])
def test_a_bad_task_file_stops_evaluation(capsys, tmp_path, name, content, expected):
    (tmp_path / "t.jsonl").write_bytes(content)
    refused(
        capsys, tmp_path, ["eval", "--config", EVAL, "--out", "OUT", "--set", f"tasks=[{tmp_path}/t.jsonl]"], expected
    )


# ---------------------------------------------------------------- configs and the command line

CONFIGS = [
    ("missing config file", ["pipeline", "--config", "TMP/absent.yaml", "--out", "OUT"], "config file not found: TMP"),
    ("unknown key", ["synth", "--config", SYNTH, "--out", "OUT", "--set", "engine.bogus=1"], "engine.bogus: unknown key"),
    ("unknown key in an included file", ["pipeline", "--config", PIPELINE, "--out", "OUT", "--set", "train.bogus=1"],
     "train.bogus: unknown key"),
    ("wrong type", ["synth", "--config", SYNTH, "--out", "OUT", "--set", "engine.batch_size=many"],
     "engine.batch_size: Input should be a valid integer"),
    ("out of range", ["train", "--config", SFT, "--out", "OUT", "--set", "epochs=0"], "epochs: Input should be"),
    ("an override without =", ["synth", "--config", SYNTH, "--out", "OUT", "--set", "seed"], "expected KEY=VALUE"),
    ("the synthetic condition is not trained",
     ["pipeline", "--config", PIPELINE, "--out", "OUT", "--set", "synthetic=nope"],
     "synthetic: no training condition is named 'nope'"),
    ("candidates without X and Y",
     ["eval", "--config", EVAL, "--out", "OUT", "--set", "candidates=[{name: a, group: g, model: m}, {name: open, group: g, model: m}]"],
     "candidates: group 'g' needs candidates named 'atheus' and 'open'"),
    ("unsupported place for outputs", ["synth", "--config", SYNTH, "--out", "ftp://host/run"], "ftp:// is not a supported"),
    ("an object store without a bucket", ["synth", "--config", SYNTH, "--set", "out=s3://"], "needs a bucket"),
    ("screen without input", ["screen", "--config", SCREEN, "--out", "OUT"], "no input: give --in PATH"),
    ("unknown command", ["transmogrify"], "invalid choice: 'transmogrify'"),
    ("run command without its config", ["train", "--out", "OUT"], "the following arguments are required: --config"),
]  # fmt: skip


@pytest.mark.parametrize("name,argv,expected", CONFIGS, ids=[c[0] for c in CONFIGS])
def test_a_bad_config_or_command_line_is_named(capsys, tmp_path, name, argv, expected):
    refused(capsys, tmp_path, [a.replace("TMP", str(tmp_path)) for a in argv], expected)


def test_a_config_file_that_is_not_yaml_names_its_line(capsys, tmp_path):
    (tmp_path / "broken.yaml").write_text("out: outputs\nengine: {kind: serve\n", encoding="utf-8")
    argv = ["synth", "--config", str(tmp_path / "broken.yaml"), "--out", "OUT"]
    refused(capsys, tmp_path, argv, "TMP/broken.yaml: not valid YAML", "line 3")


def test_a_config_file_that_is_a_list_is_named(capsys, tmp_path):
    (tmp_path / "list.yaml").write_text("- out\n- engine\n", encoding="utf-8")
    argv = ["synth", "--config", str(tmp_path / "list.yaml"), "--out", "OUT"]
    refused(capsys, tmp_path, argv, "TMP/list.yaml: top level must be a mapping")
