"""SFT memory and speed on one GPU, per micro-batch size, with and without activation checkpointing, for
llm-jp-3 980m / 1.8b / 3.7b-shaped models with random weights: the measurement that checks the memory plan
(atheus_ray.train.memory), for a session with a GPU.

    python benchmarks/sft_memory.py                          # every shape, micro-batch 1 2 4 8, ckpt off/on
    python benchmarks/sft_memory.py --models 3.7b --micro-batches 2 4 --steps 3

Needs torch and transformers only (no Ray, no vLLM, no hub): each model is built from a LlamaConfig of the
published shape. One process on one GPU, unsharded (the plan at workers=1; FSDP's sharding of the 16 bytes a
parameter of state is plain division, and what it does not shard is measured here). Per configuration:
- `peak_gb`: torch.cuda.max_memory_allocated over `--steps` steps of bf16-autocast training with fp32 weights,
  gradients and fused AdamW (after one warm-up step);
- `activation_peak_gb`: that peak minus what is held between steps (weights, gradients, optimizer state): the
  activations and logits, which FSDP does not shard and the plan counts per GPU;
- `tokens_per_s`: micro-batch x length x steps / their seconds;
- `plan_total_gb`, `plan_activations_and_logits_gb`: the plan's figures for the same configuration.
One JSON line each; an out-of-memory configuration prints `"oom": true` and the run goes on.
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import time
from pathlib import Path

import torch
from transformers import LlamaConfig, LlamaForCausalLM

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from atheus_ray.train.memory import ModelShape, estimate  # noqa: E402  (plain arithmetic, imports nothing heavy)

SHAPES = {  # llm-jp-3 config.json shapes (Llama, untied embeddings)
    "980m": dict(hidden_size=1536, intermediate_size=5376, num_hidden_layers=20, num_attention_heads=8, head_dim=192),
    "1.8b": dict(hidden_size=2048, intermediate_size=7168, num_hidden_layers=24, num_attention_heads=16, head_dim=128),
    "3.7b": dict(hidden_size=3072, intermediate_size=8192, num_hidden_layers=28, num_attention_heads=24, head_dim=128),
}
VOCAB = 99584


def build(name: str) -> LlamaForCausalLM:
    shape = SHAPES[name]
    config = LlamaConfig(
        vocab_size=VOCAB,
        num_key_value_heads=shape["num_attention_heads"],
        tie_word_embeddings=False,
        max_position_embeddings=4096,
        attn_implementation="sdpa",
        use_cache=False,
        **shape,
    )
    return LlamaForCausalLM(config)


def measure(name: str, micro_batch: int, length: int, checkpointing: bool, steps: int) -> dict:
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    model = build(name).cuda()  # fp32 master weights, as accelerate keeps them under bf16 mixed precision
    shape = ModelShape.from_config(model.config)  # what the plan reads, from the same config
    if checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5, betas=(0.9, 0.98), weight_decay=0.1, fused=True)
    ids = torch.randint(0, VOCAB, (micro_batch, length), device="cuda")
    result = {"model": name, "micro_batch": micro_batch, "length": length, "checkpointing": checkpointing}
    try:
        times = []
        held = None
        for step in range(steps + 1):
            torch.cuda.synchronize()
            began = time.time()
            with torch.autocast("cuda", dtype=torch.bfloat16):
                loss = model(input_ids=ids, labels=ids).loss
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=False)  # gradients stay allocated, as in training
            torch.cuda.synchronize()
            if step == 0:
                held = torch.cuda.memory_allocated()  # weights, gradients, optimizer state
                torch.cuda.reset_peak_memory_stats()
            else:
                times.append(time.time() - began)
        peak = torch.cuda.max_memory_allocated()
        result.update(
            oom=False,
            peak_gb=round(peak / 1e9, 2),
            activation_peak_gb=round((peak - held) / 1e9, 2),
            tokens_per_s=round(micro_batch * length * len(times) / sum(times), 1),
        )
    except torch.cuda.OutOfMemoryError:
        result.update(oom=True)
    finally:
        del model, optimizer
        gc.collect()
        torch.cuda.empty_cache()
    plan = estimate(shape, micro_batch, length, 1, checkpointing)
    result.update(
        plan_total_gb=plan.total_gb,
        plan_activations_and_logits_gb=round(plan.activations_gb + plan.logits_gb, 2),
        gpu=torch.cuda.get_device_name(0),
    )
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=list(SHAPES), choices=list(SHAPES))
    parser.add_argument("--micro-batches", nargs="+", type=int, default=[1, 2, 4, 8])
    parser.add_argument("--length", type=int, default=2048)
    parser.add_argument("--steps", type=int, default=2, help="timed optimizer steps after one warm-up step")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        sys.exit("benchmarks/sft_memory.py needs a CUDA GPU")
    torch.manual_seed(0)
    for name in args.models:
        for checkpointing in (False, True):
            for micro_batch in args.micro_batches:
                print(json.dumps(measure(name, micro_batch, args.length, checkpointing, args.steps)), flush=True)


if __name__ == "__main__":
    main()
