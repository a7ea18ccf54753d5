from atheus_ray.config import SamplingConfig
from atheus_ray.synth.respond import PROMPT, answer_request, user_message, with_answer


def test_user_message_puts_input_after_a_blank_line():
    assert user_message("要約して", None) == "要約して"
    assert user_message("要約して", "本文") == "要約して\n\n本文"


def test_answer_request_and_response_columns():
    row = {"id": "a", "instruction": "要約して", "input": "本文"}
    request = answer_request(row, "answer/a", SamplingConfig(max_tokens=8))
    assert request["messages"][0] == {"role": "system", "content": PROMPT.read_text(encoding="utf-8").strip()}
    assert request["messages"][1]["content"] == "要約して\n\n本文"
    filled = with_answer(row, {"text": "  要旨です \n", "tokens_in": 3, "tokens_out": 8}, "M", SamplingConfig(max_tokens=8))
    assert filled["response"] == "要旨です" and filled["response_model"] == "M"
    assert filled["response_truncated"] is True and filled["response_tokens"] == 8
