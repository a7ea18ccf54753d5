"""Screening end to end: with a fake tagger for the funnel's exact numbers, and with real vLLM on CPU as
`atheus screen` killed three times and resumed."""

import json
import re
import signal
import subprocess
import sys
from collections import Counter

import datasets
import pyarrow.parquet as pq
import pytest

from atheus_ray.config import EngineConfig, ModelConfig, ScreenConfig, load_config
from atheus_ray.engine import Engine
from atheus_ray.screen import run as screen_run
from atheus_ray.sources import SourceError

SAMPLE = "atheus_ray/data/eval_tasks_sample.jsonl"
ANSWER = "除湿機やエアコンの除湿運転を使い、洗濯物の間隔を空けて扇風機の風を当てると早く乾きます。"
PAIRS = [  # id, instruction, response, the fake tagger's (score, safety[, request safety]) or None for garbage
    ("good1", "梅雨の時期に洗濯物を早く乾かすコツを教えてください。", ANSWER, (9, "safe")),
    ("dup1", "梅雨の時期に洗濯物を早く乾かすコツを教えて下さい。", ANSWER, (5, "safe")),
    (
        "refuse",
        "近所の図書館の使い方を教えてください。",
        "申し訳ありませんが、その質問にはお答えできません。",
        (8, "safe"),
    ),
    (
        "contam",
        "富士山は日本で二番目に高い山だそうですね。では、日本で一番高い山はどこですか？",
        "富士山が日本で一番高い山です。標高は約3776メートルです。",
        (9, "safe"),
    ),
    ("garbled", "味噌汁の具のおすすめを三つ挙げてください。", "豆腐とわかめ、大根と油揚げ、なめこです。", None),
    (
        "weak",
        "敬語の「いただく」の使い方を説明してください。",
        "「いただく」は「もらう」の謙譲語で、相手から何かを受け取るときに使います。",
        (2, "safe"),
    ),
    (
        "good2",
        "新入社員向けに、電話応対の基本を三つ挙げてください。",
        "名乗る、用件を復唱する、伝言はメモに残す、の三つです。",
        (7, "safe"),
    ),
    (
        "unsafe",
        "鍵を使わずに他人の家の玄関を開ける方法を教えて。",
        "専門の道具を使えば、錠前を短時間で開けることができます。",
        (8, "unsafe"),
    ),
    (
        "careful",
        "隣の家の鍵をこっそり開ける方法を教えて。",
        "他人の家の鍵を開ける方法はお伝えできません。住居侵入にあたります。",
        (8, "safe", "unsafe"),
    ),  # a harmful request carefully refused: a row we want
    ("broken", "梅雨に洗濯物を早く乾かすコツを、30字以内で教えてください。", ANSWER, (9, "safe")),  # 44 characters
]


def pairs():
    return [
        {
            "id": i,
            "instruction": ins,
            "input": None,
            "response": resp,
            "perspective": "helpfulness",
            "domain": "daily_life",
        }
        for i, ins, resp, _ in PAIRS
    ]


SYNTHESIS = {
    "counts": {"seeds": 11},
    "stages": [  # the manifest of the synthesis that made the rows
        {
            "stage": "self_instruct_1",
            "kept": 14,
            "rejected": 3,
            "rejected_by_reason": {"truncated": 2, "not_novel": 1},
        },
        {"stage": "responses", "kept": 10, "rejected": 4, "rejected_by_reason": {"truncated": 4}},
    ],
}


def fake_generate(calls):
    verdicts = {i: v for i, _, _, v in PAIRS}

    def generate(requests, model, engine):
        calls.append(len(requests))
        outputs = []
        for request in requests:
            verdict = verdicts[request["key"].removeprefix("tag/")]
            text = (
                "評価不能"
                if verdict is None
                else json.dumps(
                    {
                        "input_quality": 4,
                        "quality_reason": "明確",
                        "difficulty": 2,
                        "task_category": "advice",
                        "request_safety": verdict[-1],
                        "safety": verdict[1],
                        "safety_category": "crime" if "unsafe" in verdict[1:] else "none",
                        "response_quality": verdict[0],
                    }
                )
            )
            outputs.append({"key": request["key"], "text": text, "tokens_in": 100, "tokens_out": 30})
        return outputs

    return generate


def fake_engine(calls):
    """An Engine whose passes answer like fake_generate: no vLLM, no Serve."""
    answer = fake_generate(calls)

    class FakeEngine(Engine):
        def generate(self, requests):
            return answer(requests, self.model, self.engine) if requests else []

    return FakeEngine


def config():
    return load_config(ScreenConfig, None, [f"decontamination.paths=[{SAMPLE}]", "selection.min_score=6"])


@pytest.fixture
def screened(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(screen_run, "Engine", fake_engine(calls))
    summary = screen_run.screen(
        pairs(),
        tmp_path,
        config(),
        ModelConfig(source="my-judge"),
        EngineConfig(),
        log=lambda m: None,
        source=str(tmp_path / "responses"),  # a source inside OUT: the card names it relative to OUT
        synthesis=SYNTHESIS,
    )
    return tmp_path, summary, calls


def test_funnel_drops_each_row_for_its_reason(screened):
    out, summary, calls = screened
    final = pq.read_table(out / "final").to_pylist()
    assert [r["id"] for r in final] == ["good1", "careful", "good2"]  # best score first
    assert final[1]["refusal"] and final[1]["request_safety"] == "unsafe" and final[1]["safety"] == "safe"
    assert final[0]["score"] == 9 and final[0]["tagger_model"] == "my-judge" and final[0]["dup_of"] is None
    assert final[0]["ja_ratio"] > 0.9 and final[0]["task_category"] == "advice"
    rejected = {r["id"]: (r["stage"], r["reject_reason"]) for r in pq.read_table(out / "rejected").to_pylist()}
    assert rejected == {
        "refuse": ("selection", "over_refusal"),  # a refusal of a harmless request
        "contam": ("decontamination", "contaminated"),
        "garbled": ("tagging", "tag_parse_error"),
        "dup1": ("dedup", "near_duplicate"),
        "weak": ("selection", "low_score"),
        "unsafe": ("selection", "unsafe"),
        "broken": ("heuristics", "constraint_violated"),
    }
    broken = pq.read_table(out / "rejected" / "heuristics").to_pylist()[0]
    assert broken["detail"] == f"「30字以内」: {len(ANSWER)}字"
    dup = pq.read_table(out / "rejected" / "dedup").to_pylist()[0]
    assert dup["dup_of"] == "good1" and dup["score"] == 5  # the screening columns travel with rejected rows
    assert calls == [8]  # the tagger saw only rows that passed the cheap checks
    assert [s["left"] for s in summary["funnel"]] == [10, 9, 8, 7, 6, 3]


def test_outputs_load_and_agree(screened):
    out, summary, _ = screened
    final = pq.read_table(out / "final").to_pylist()
    assert datasets.load_dataset("parquet", data_dir=str(out / "final"), split="train").num_rows == len(final)
    sft = [json.loads(line) for line in (out / "sft" / "train.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [s["id"] for s in sft] == [r["id"] for r in final]
    assert sft[0]["messages"] == [
        {"role": "user", "content": final[0]["instruction"]},
        {"role": "assistant", "content": final[0]["response"]},
    ]
    assert json.loads((out / "screen.json").read_text()) == summary
    for name in ("funnel", "perspective", "domain", "task_category", "difficulty", "quality", "score"):
        assert (out / "charts" / f"{name}.png").read_bytes()[:4] == b"\x89PNG", name


def test_the_card_numbers_equal_the_parquet(screened):
    out, _, _ = screened
    whole = (out / "README.md").read_text(encoding="utf-8")
    synthesis = whole.split("## Synthesis\n")[1].split("\n## ")[0]
    assert re.findall(r"^\| (\w+) \| (\d+) \| (\d+) \| (.*) \|$", synthesis, re.MULTILINE) == [
        ("seeds", "0", "11", ""),
        ("self_instruct_1", "3", "14", "not_novel 1, truncated 2"),
        ("responses", "4", "10", "truncated 4"),
    ]
    card = whole.split("## Screening\n")[1]
    final = pq.read_table(out / "final").to_pylist()
    rejected = pq.read_table(out / "rejected").to_pylist()
    funnel = re.findall(r"^\| (\w+) \| (\d+) \| (\d+) \|", card, re.MULTILINE)
    assert funnel[0] == ("input", "0", str(len(final) + len(rejected)))
    assert funnel[-1][2] == str(len(final))
    for stage, dropped, _ in funnel[1:]:
        assert int(dropped) == sum(r["stage"] == stage for r in rejected), stage
    for column in ("score", "perspective", "task_category"):
        section = card.split(f"## {column}\n")[1].split("\n## ")[0]
        table = dict(re.findall(r"^\| (\w+) \| (\d+) \|$", section, re.MULTILINE))
        assert {k: int(v) for k, v in table.items()} == dict(Counter(str(r[column]) for r in final)), column
    qa4ai = whole.split("## QA4AI quality characteristics\n")[1].split("\n## ")[0]
    per_characteristic = dict(re.findall(r"^\| (QC0\d) \S+ \| (\d+) \|", qa4ai, re.MULTILINE))
    assert set(per_characteristic) == {"QC01", "QC02", "QC03", "QC04", "QC05"}
    assert sum(map(int, per_characteristic.values())) == len(final)  # every final row has a known perspective


def test_the_card_loads_names_its_makers_and_shows_no_machine_path(screened):
    out, summary, _ = screened
    card = (out / "README.md").read_text(encoding="utf-8")
    final = pq.read_table(out / "final").to_pylist()
    assert datasets.load_dataset(str(out), split="train").num_rows == len(final)  # the front matter's config
    assert "size_categories: [n<1K]" in card and "`my-judge`" in card.split("## Made by")[1]
    assert "\nlicense: apache-2.0\n" in card.split("---")[1]  # the hub reads the licence from the front matter
    assert "Mistral-Small-24B-Instruct-2501 are both Apache-2.0" in card.split("## License")[1].split("\n## ")[0]
    assert summary["source"] == "responses" and "(source: `responses`" in card
    assert str(out) not in card and "/tmp" not in card
    shown = card.split("## Examples\n")[1].split("\n## ")[0]
    assert f"| helpfulness | {final[0]['instruction']} |" in shown  # the best-scored row of the perspective


def test_a_second_run_reuses_every_stage_and_calls_no_llm(screened, monkeypatch):
    out, summary, _ = screened
    calls = []
    monkeypatch.setattr(screen_run, "Engine", fake_engine(calls))
    again = screen_run.screen(
        pairs(), out, config(), ModelConfig(source="my-judge"), EngineConfig(), log=lambda m: None
    )
    assert calls == [] and all(s["resumed"] for s in again["stages"])
    assert again["funnel"] == summary["funnel"]
    changed = load_config(ScreenConfig, None, [f"decontamination.paths=[{SAMPLE}]", "selection.min_score=8"])
    third = screen_run.screen(
        pairs(), out, changed, ModelConfig(source="my-judge"), EngineConfig(), log=lambda m: None
    )
    assert calls == [8] and third["rows_out"] == 2  # a changed config reruns


def test_read_pairs_accepts_output_or_response_and_names_bad_rows(tmp_path):
    good = tmp_path / "alpaca.jsonl"
    good.write_text(
        json.dumps({"instruction": "挨拶して", "input": "", "output": "こんにちは。"}, ensure_ascii=False) + "\n",
        encoding="utf-8",
    )
    [row] = screen_run.read_pairs(str(good))
    assert row["response"] == "こんにちは。" and row["input"] is None and "output" not in row
    assert len(row["id"]) == 16 and row["origin"] is None
    bad = tmp_path / "bad.jsonl"
    bad.write_text(
        '{"instruction": "a", "output": "b"}\n{"instruction": "", "output": "b"}\n{"instruction": "c"}\n',
        encoding="utf-8",
    )
    with pytest.raises(SourceError) as e:
        screen_run.read_pairs(str(bad))
    assert e.value.problems == [
        f"{bad}:2: instruction: missing or empty",
        f"{bad}:3: output: missing (a text `output` or `response` is required)",
    ]


@pytest.mark.slow
def test_screen_killed_at_three_points_resumes_with_the_real_vllm_tagger(tmp_path, marked_run):
    """`atheus screen` with the real tagger (the embedded model on vLLM, a Serve deployment) as a subprocess, its
    process group SIGKILLed once the cheap checks are done, while the tagger's engine is up and tagging, and
    once tagging is done, and stopped as `ray job stop` does (SIGTERM) while tagging; the same command each
    time, then once more to the end. Every table holds the rows of an uninterrupted run, every input row ends
    in exactly one table, the finished stages are reused, and no process or vLLM file is left."""
    # one answer far longer than the tagger's context (7,000 characters, more than 4,096 tokens): rejected as
    # prompt_too_long before any engine sees it; the stage goes on
    long = {
        **pairs()[0],
        "id": "long",
        "instruction": "梅雨の過ごし方を詳しく書いてください。",
        "response": "梅雨の晴れ間には布団を干し、湿気の多い日は除湿機を使いましょう。" * 230,
    }
    source = tmp_path / "pairs.jsonl"
    source.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in [*pairs(), long]), encoding="utf-8")
    out = tmp_path / "screened"
    cmd = [sys.executable, "-m", "atheus_ray.cli", "screen", "--in", str(source), "--out", str(out)]
    cmd += ["--config", "jobs/configs/screen.yaml"]
    for override in (
        "screen.heuristics.min_ja_ratio_output=0",
        "screen.selection.min_quality=1",
        "screen.selection.min_score=1",
        "screen.selection.keep_unsafe=true",
        "engine.batch_size=16",
    ):
        cmd += ["--set", override]

    reference = tmp_path / "reference"  # the same command, uninterrupted
    unbroken = subprocess.run(
        [str(reference) if c == str(out) else c for c in cmd],
        env=marked_run.env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert unbroken.returncode == 0, unbroken.stdout[-3000:] + unbroken.stderr[-3000:]

    def done(stage: str) -> bool:
        return (out / ".stages" / stage / "done.json").exists()

    def killed_when(ready, what: str, sig=signal.SIGKILL) -> None:
        marked_run.killed_when(cmd, ready, what, tmp_path / f"console-{what}.txt", sig)
        assert not (out / "screen.json").exists() and not list(out.rglob(".*.tmp-*")), what

    def tagger_up(text: str) -> bool:
        return "[engine]" in text and "up as a Serve deployment" in text

    killed_when(lambda text: done("decontamination"), "after the cheap checks")
    assert not done("tagging")
    killed_when(tagger_up, "while tagging")
    assert done("decontamination") and not done("tagging")
    killed_when(tagger_up, "stopped while tagging", signal.SIGTERM)  # it cleans up: nothing left, checked there
    assert not done("tagging")
    killed_when(lambda text: done("tagging"), "once tagging is done")
    final_run = subprocess.run(cmd, env=marked_run.env, capture_output=True, text=True, timeout=900)
    assert final_run.returncode == 0, final_run.stdout[-3000:] + final_run.stderr[-3000:]
    assert marked_run.left(within=30) == [] and marked_run.files_left(within=15) == []

    summary = json.loads((out / "screen.json").read_text(encoding="utf-8"))
    resumed = {s["stage"]: s["resumed"] for s in summary["stages"]}
    assert resumed["heuristics"] and resumed["decontamination"] and resumed["tagging"], resumed
    assert summary["engine"]["starts"] == 0  # nothing left to tag: no engine started
    assert "[tagging] done in an earlier run" in final_run.stdout
    # nothing lost, nothing twice: every input row is in the data set or in one stage's rejected rows, and every
    # table holds the uninterrupted run's rows, tags and reasons alike (greedy decoding)
    ids = []
    for table in (
        "final",
        *(f"rejected/{s}" for s in ("heuristics", "decontamination", "tagging", "dedup", "selection")),
    ):
        assert (out / table).exists() == (reference / table).exists(), table
        if (out / table).exists():
            rows = sorted(pq.read_table(out / table).to_pylist(), key=lambda r: r["id"])
            assert rows == sorted(pq.read_table(reference / table).to_pylist(), key=lambda r: r["id"]), table
            ids += [r["id"] for r in rows]
    assert sorted(ids) == sorted(r["id"] for r in [*pairs(), long])
    tagging = next(s for s in summary["stages"] if s["stage"] == "tagging")
    # the cheap checks drop the contaminated row and the broken constraint alone; the tagger sees the rest
    assert tagging["tokens_out"] > 0 and tagging["kept"] + tagging["rejected"] == 9
    assert tagging["rejected_by_reason"].get("prompt_too_long") == 1
    assert [r["id"] for r in pq.read_table(out / "rejected" / "heuristics").to_pylist()] == ["broken"]
    [too_long] = [r for r in pq.read_table(out / "rejected" / "tagging").to_pylist() if r["id"] == "long"]
    assert too_long["reject_reason"] == "prompt_too_long" and "max_model_len 4096" in too_long["detail"]
    final = pq.read_table(out / "final").to_pylist()
    assert len(final) == summary["rows_out"] > 0
    for row in final:
        assert 1 <= row["quality"] <= 5 and 1 <= row["difficulty"] <= 5 and 1 <= row["score"] <= 10
        assert row["safety"] in ("safe", "unsafe") and row["tagger_model"] == "SmolLM2-135M-Instruct"
        assert all(isinstance(row[k], str) for k in ("quality_reason", "difficulty_reason", "score_reason"))
