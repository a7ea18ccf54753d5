from atheus_ray.config import RespondConfig, SamplingConfig
from atheus_ray.rows import user_message
from atheus_ray.seeds import Seed
from atheus_ray.synth.respond import PROMPT, Answers, answer_problem, answer_request, system_prompt, with_answer

CFG = RespondConfig(sampling=SamplingConfig(max_tokens=8))


def seed(i: int, perspective: str, category: str, output: str = "例の答えです。") -> Seed:
    return Seed(
        id=f"{perspective}-{i:03d}",
        perspective=perspective,
        category=category,
        domain="daily_life",
        instruction=f"{perspective}の例の指示{i}",
        output=output,
    )


SEEDS = [seed(i, "fluency", "rewrite" if i < 3 else "qa") for i in range(6)] + [seed(0, "safety", "advice")]


def test_user_message_puts_input_after_a_blank_line():
    assert user_message("要約して", None) == "要約して"
    assert user_message("要約して", "本文") == "要約して\n\n本文"


def test_answer_request_and_response_columns():
    row = {"id": "a", "instruction": "要約して", "input": "本文"}
    request = answer_request(row, "answer/a", CFG)
    policy = PROMPT.read_text(encoding="utf-8").split("\n---\n")[0].strip()
    assert request["messages"][0] == {"role": "system", "content": policy}  # no examples: the policy alone
    assert request["messages"][1]["content"] == "要約して\n\n本文"
    filled = with_answer(row, {"text": "  要旨です \n", "tokens_in": 3, "tokens_out": 8}, "M", CFG, SEEDS[:1])
    assert filled["response"] == "要旨です" and filled["response_model"] == "M"
    assert filled["response_truncated"] is True and filled["response_tokens"] == 8
    assert filled["response_examples"] == ["fluency-000"]


def test_examples_are_shown_after_the_policy_as_pairs():
    prompt = system_prompt(SEEDS[:2])
    assert prompt.startswith(system_prompt()) and "# 回答例" in prompt
    assert "【指示】\nfluencyの例の指示0\n【回答】\n例の答えです。" in prompt and "fluencyの例の指示1" in prompt


def test_examples_come_from_the_rows_perspective_and_category_never_its_own_seeds():
    answers = Answers(SEEDS, RespondConfig(examples=2), seed=0)
    row = {
        "id": "r1",
        "instruction": "言い換えて",
        "input": None,
        "perspective": "fluency",
        "category": "rewrite",
        "seed_ids": ["fluency-000"],
        "parent_id": None,
    }
    shown = answers.examples(row)
    assert {s.id for s in shown} == {"fluency-001", "fluency-002"}  # the two other rewrite seeds
    assert answers.examples(row) == shown  # the same on every call (and every rerun)
    other = answers.examples({**row, "category": None, "seed_ids": []})
    assert len(other) == 2 and all(s.perspective == "fluency" for s in other)
    assert answers.examples({**row, "perspective": "safety"}) == [SEEDS[-1]]  # as many as there are
    assert Answers(SEEDS, RespondConfig(examples=0), seed=0).examples(row) == []
    assert answers.request(row)["messages"][0]["content"].count("【指示】") == 2


def test_long_seed_pairs_are_not_shown():
    answers = Answers([seed(0, "fluency", "qa", "長い" * 500), seed(1, "fluency", "qa")], RespondConfig(), seed=0)
    assert [s.id for s in answers.examples({"id": "r", "perspective": "fluency", "category": "qa"})] == ["fluency-001"]


def test_an_empty_or_truncated_answer_is_rejected_with_its_reason():
    assert answer_problem({"response": ""}, CFG) == ("empty_response", None)
    assert answer_problem({"response": "途中で", "response_truncated": True}, CFG) == (
        "truncated",
        "cut at respond.sampling.max_tokens (8)",
    )
    assert (
        answer_problem(
            {"response": "途中で", "response_truncated": True}, CFG.model_copy(update={"drop_truncated": False})
        )
        is None
    )
    assert answer_problem({"response": "全部です。", "response_truncated": False}, CFG) is None
