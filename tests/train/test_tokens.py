import pytest
from transformers import AutoTokenizer

from atheus_ray.train.tokens import FALLBACK_TEMPLATE, IGNORE, TemplateError, encode, ensure_chat_template

CHAT = [
    {"role": "system", "content": "丁寧に答えてください。"},
    {"role": "user", "content": "梅雨の洗濯のコツは？"},
    {"role": "assistant", "content": "除湿機を使い、風を当てます。"},
    {"role": "user", "content": "ほかには？ 🌧"},
    {"role": "assistant", "content": "部屋干し用の洗剤も効きます。```\ncode = 1\n```"},
]


@pytest.fixture(params=["own", "fallback"])
def tokenizer(request, embedded_model):
    tok = AutoTokenizer.from_pretrained(embedded_model)
    if request.param == "fallback":
        tok.chat_template = None
        assert ensure_chat_template(tok) and tok.chat_template == FALLBACK_TEMPLATE
    return tok


def labelled_runs(encoded):
    """The labelled tokens as runs of consecutive positions."""
    runs, current = [], []
    for token, label in zip(encoded["input_ids"], encoded["labels"]):
        if label == IGNORE:
            if current:
                runs.append(current)
            current = []
        else:
            assert label == token
            current.append(token)
    return runs + ([current] if current else [])


def test_the_mask_decodes_back_to_exactly_the_assistant_text(tokenizer):
    encoded = encode(CHAT, tokenizer, 4096)
    runs = labelled_runs(encoded)
    assert len(runs) == 2  # one run per assistant turn, nothing of the user or system turns
    for run, turn in zip(runs, [CHAT[2], CHAT[4]]):
        text = tokenizer.decode(run, skip_special_tokens=True)
        assert text.strip() == turn["content"]
        assert tokenizer.eos_token_id in run or tokenizer.convert_tokens_to_ids("<|im_end|>") in run  # learns to stop


def test_too_long_examples_are_dropped(tokenizer):
    n = len(encode(CHAT, tokenizer, 4096)["input_ids"])
    assert encode(CHAT, tokenizer, n) is not None and encode(CHAT, tokenizer, n - 1) is None


def test_a_template_that_rewrites_earlier_turns_is_an_error(embedded_model):
    tok = AutoTokenizer.from_pretrained(embedded_model)
    tok.chat_template = "{% for m in messages %}{{ m['content'] }}{% endfor %}{{ messages | length }}"
    with pytest.raises(TemplateError, match="turn 3"):
        encode(CHAT, tok, 4096)
