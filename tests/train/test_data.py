import json

import pytest

from atheus_ray.config import ConditionConfig
from atheus_ray.sources import SourceError
from atheus_ray.train.data import load_condition, subsample_and_split, to_messages


def test_formats_become_chat_messages():
    chat = {"messages": [{"role": "user", "content": "こんにちは"}, {"role": "assistant", "content": "どうも"}]}
    assert to_messages(chat, "f:1") == chat["messages"]
    assert to_messages({"conversation": chat["messages"]}, "f:1") == chat["messages"]  # llm-jp's field name
    alpaca = {"instruction": "要約して", "input": "長い文章", "output": "短い文章"}
    assert to_messages(alpaca, "f:1") == [
        {"role": "user", "content": "要約して\n\n長い文章"},
        {"role": "assistant", "content": "短い文章"},
    ]
    screened = {"instruction": "挨拶して", "input": None, "response": "こんにちは"}
    assert to_messages(screened, "f:1")[1] == {"role": "assistant", "content": "こんにちは"}


@pytest.mark.parametrize(
    "record,reason",
    [
        ({"messages": [{"role": "user", "content": "質問"}]}, "missing_roles"),
        ({"messages": [{"role": "assistant", "content": "答え"}]}, "missing_roles"),
        ({"messages": [{"role": "user", "content": "質問"}, {"role": "bot", "content": "答え"}]}, "missing_roles"),
        ({"messages": [{"role": "user", "content": 3}, {"role": "assistant", "content": "答え"}]}, "missing_roles"),
        ({"messages": "質問"}, "missing_roles"),
        (
            {"messages": [{"role": "user", "content": "質問"}, {"role": "assistant", "content": "  "}]},
            "empty_assistant",
        ),
        ({"instruction": "質問", "output": ""}, "empty_assistant"),
        ({"instruction": "質問"}, "missing_roles"),
    ],
)
def test_bad_examples_give_a_reason(record, reason):
    assert to_messages(record, "f:1") == reason


def test_load_counts_drops_and_names_unknown_shapes(tmp_path):
    good = tmp_path / "good.jsonl"
    good.write_text(
        "\n".join(
            json.dumps(r, ensure_ascii=False)
            for r in [
                {"instruction": "挨拶して", "output": "こんにちは"},
                {"instruction": "挨拶して", "output": ""},
                {"messages": [{"role": "user", "content": "質問"}]},
            ]
        )
        + "\n",
        encoding="utf-8",
    )
    examples, dropped = load_condition(ConditionConfig(name="x", paths=[str(good)]))
    assert len(examples) == 1 and dropped == {"empty_assistant": 1, "missing_roles": 1}
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"question": "何？", "answer": "これ"}\n', encoding="utf-8")
    with pytest.raises(SourceError, match=rf"{bad}:1: messages: missing"):
        load_condition(ConditionConfig(name="x", paths=[str(bad)]))


def test_subsample_is_seeded_order_free_and_holds_out_dev():
    examples = [{"id": f"e{i:03d}", "messages": []} for i in range(100)]
    train, dev, skipped = subsample_and_split(examples, 40, 0.1, seed=0)
    assert len(train) == 36 and len(dev) == 4 and skipped == 0
    assert not {e["id"] for e in train} & {e["id"] for e in dev}
    again = subsample_and_split(list(reversed(examples)), 40, 0.1, seed=0)
    assert again == (train, dev, 0)
    assert subsample_and_split(examples, 40, 0.1, seed=1) != (train, dev, 0)


def test_examples_that_cannot_be_used_are_replaced_by_the_next():
    """A condition with long examples still trains on n of them (the fair comparison), and says how many it skipped."""
    examples = [{"id": f"e{i:03d}", "long": i % 2 == 0} for i in range(100)]
    train, dev, skipped = subsample_and_split(examples, 20, 0.1, seed=0, prepare=lambda e: None if e["long"] else e)
    assert len(train) + len(dev) == 20 and not any(e["long"] for e in train + dev)
    assert 10 <= skipped <= 40  # about as many long ones as short ones were met on the way
    few = subsample_and_split(examples, 80, 0.0, seed=0, prepare=lambda e: None if e["long"] else e)
    assert len(few[0]) == 50 and few[2] == 50  # not enough usable: all 50 of them, every long one skipped
