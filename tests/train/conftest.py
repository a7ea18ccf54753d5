"""A tiny random Llama with the embedded model's tokenizer: trains in seconds on CPU, loads in vLLM."""

import pytest


@pytest.fixture(scope="session")
def tiny_model(embedded_model, tmp_path_factory) -> str:
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    folder = tmp_path_factory.mktemp("tiny_llama")
    tokenizer = AutoTokenizer.from_pretrained(embedded_model)
    torch.manual_seed(0)
    # head_dim 64: vLLM's CPU attention supports no smaller head (16 fails: "Unsupported CPU attention configuration")
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=128, intermediate_size=256, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=2048,
                         bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                         tie_word_embeddings=True)  # fmt: skip
    LlamaForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return str(folder)
