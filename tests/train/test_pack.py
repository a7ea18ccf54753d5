import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from atheus_ray.train.pack import collate, pack
from atheus_ray.train.tokens import IGNORE, encode


def examples(tokenizer, lengths=(1, 7, 15, 3, 12, 9)):
    return [
        encode(
            [{"role": "user", "content": "質問" * k}, {"role": "assistant", "content": "答えです。" * (k + 1)}],
            tokenizer,
            4096,
        )
        for k in lengths
    ]


def test_pack_keeps_every_token_within_max_length_and_restarts_positions(tiny_model):
    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    found = examples(tokenizer)
    packed = pack(found, max_length=256)
    assert len(packed) < len(found)
    assert all(len(p["input_ids"]) <= 256 for p in packed)
    assert sorted(t for p in packed for t in p["input_ids"]) == sorted(t for e in found for t in e["input_ids"])
    assert sum(p["position_ids"].count(0) for p in packed) == len(found)  # one start per example
    assert pack(list(reversed(found)), 256) == packed  # order-independent


def test_packed_and_padded_batches_give_the_same_loss(tiny_model):
    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    model = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32).eval()
    model.config.use_cache = False
    found = examples(tokenizer)
    pad = tokenizer.pad_token_id
    with torch.no_grad():
        packed = model(**collate(pack(found, 256), pad, packed=True)).loss
        padded = model(**collate(found, pad, packed=False)).loss
        one_by_one = [model(**collate([e], pad, packed=False)) for e in found]
    tokens = [sum(label != IGNORE for label in e["labels"][1:]) for e in found]
    mean = sum(o.loss * n for o, n in zip(one_by_one, tokens)) / sum(tokens)
    assert torch.allclose(packed, padded, atol=1e-5) and torch.allclose(packed, mean, atol=1e-5)
    # without the restarted positions the examples would attend to each other, and the loss would differ
    batch = collate(pack(found, 256), pad, packed=True)
    batch["position_ids"] = torch.arange(batch["input_ids"].shape[1]).expand_as(batch["input_ids"])
    with torch.no_grad():
        assert not torch.allclose(model(**batch).loss, packed, atol=1e-5)


def test_collate_pads_labels_with_ignore(tiny_model):
    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    found = examples(tokenizer, lengths=(1, 12))
    batch = collate(found, tokenizer.pad_token_id, packed=False)
    n = len(found[0]["input_ids"])
    assert batch["attention_mask"][0].tolist() == [1] * n + [0] * (batch["input_ids"].shape[1] - n)
    assert (batch["labels"][0, n:] == IGNORE).all()


def test_an_example_longer_than_a_sequence_is_an_error(tiny_model):
    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    with pytest.raises(ValueError, match="longer than max_length"):
        pack(examples(tokenizer, lengths=(40,)), max_length=64)
