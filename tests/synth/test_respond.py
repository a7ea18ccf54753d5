import ray

from atheus_ray.synth.respond import split_rejected, user_message


def test_user_message_puts_input_after_a_blank_line():
    assert user_message("要約して", None) == "要約して"
    assert user_message("要約して", "本文") == "要約して\n\n本文"


def test_empty_answers_are_rejected_with_a_reason(ray_local):
    ds = ray.data.from_items([{"id": "a", "response": "答え"}, {"id": "b", "response": ""}])
    kept, rejected = split_rejected(ds)
    assert [r["id"] for r in kept.take_all()] == ["a"]
    assert [(r["id"], r["reject_reason"]) for r in rejected.take_all()] == [("b", "empty_response")]
