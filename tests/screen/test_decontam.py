import json

import pytest

from atheus_ray.screen.decontam import Decontaminator, contaminated, load_prompts, ngrams
from atheus_ray.seeds import SEEDS_DIR, expand_paths, load_seeds
from atheus_ray.sources import SourceError

SAMPLE = "atheus_ray/data/eval_tasks_sample.jsonl"


@pytest.fixture(scope="module")
def decon():
    return Decontaminator(load_prompts([SAMPLE]))


@pytest.mark.parametrize(
    "paraphrase",
    [
        # reworded copies of sample tasks: particles, numerals, endings and word order changed
        "時計の長針と短針について答えてください。(1) 3時40分に長針と短針がつくる小さいほうの角は何度ですか。"
        "(2) 4時から5時の間で長針と短針が重なるのは4時何分何秒？秒の小数点以下は切り捨てで。考え方も示して。",
        "富士山は日本で二番目に高い山だそうですね。では、日本で一番高い山はどこですか？",
        "「傘」「駅」「ありがとう」の3語を必ず使い、最後に意外な結末がある短い物語を200字以内で書いてください。",
        "ＦＹＩ：時計の長針と短針について、次の２つに答えてください。(1) ３時４０分のとき、長針と短針がつくる角の"
        "うち、小さいほうの角は何度？(2) ４時から５時までの間で、長針と短針がぴったり重なるのは４時何分何秒ですか。",
    ],
)
def test_catches_a_paraphrased_evaluation_prompt(decon, paraphrase):
    hit = decon.match(paraphrase)
    assert hit is not None and hit[0].startswith(SAMPLE + ":")


def test_no_seed_is_flagged_against_the_sample_tasks(decon):
    # The seeds were written apart from the evaluation sample: none may count as contaminated.
    flagged = [
        s.id for s in load_seeds(expand_paths([str(SEEDS_DIR)])) if decon.match(s.instruction + "\n" + (s.input or ""))
    ]
    assert flagged == []


def test_a_row_quoting_a_prompt_inside_longer_text_is_caught(decon):
    prompt = json.loads(open(SAMPLE, encoding="utf-8").readline())["input"]
    rows = [
        {"id": "a", "instruction": "次の問題を解いてから、解き方を小学生向けに説明してください。", "input": prompt},
        {"id": "b", "instruction": "味噌汁の具のおすすめを教えてください。", "input": None},
    ]
    clean, dropped = contaminated(rows, decon)
    assert [r["id"] for r in clean] == ["b"]
    assert dropped[0]["reject_reason"] == "contaminated" and f"of {SAMPLE}:1" in dropped[0]["detail"]


def test_ngrams_normalize_width_and_spaces():
    assert ngrams("ＡＢ Ｃ１", 3) == ngrams("AB C1", 3) == {"ABC", "BC1"}
    assert ngrams("あ", 3) == {"あ"} and ngrams("", 3) == set()


def test_prompts_from_csv_with_input_text_and_errors_name_the_row(tmp_path):
    csv_file = tmp_path / "tasks.csv"
    csv_file.write_text("input_text,output_text\n日本の首都はどこですか,東京\n", encoding="utf-8")
    assert load_prompts([str(csv_file)]) == [(f"{csv_file}:2", "日本の首都はどこですか")]
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"input": "よい"}\n{"question": "欄が違う"}\n', encoding="utf-8")
    with pytest.raises(SourceError, match=rf"{bad}:2: input: missing"):
        load_prompts([str(bad)])
