"""SFT with packing vs padding: real (non-pad) tokens per second, and the loss of both on a fixed batch.

    .venv/bin/python benchmarks/sft_packing.py [--model embedded] [--examples 48] [--max-length 1024] [--batch-size 4]

Data: seed-set examples (Japanese instructions and reference answers, a realistic spread of lengths), rendered
with the model's chat template and tokenized with loss on the answers (atheus_ray.train.tokens).
1. One epoch of training steps (forward, backward, AdamW step) over the same examples, packed
   (atheus_ray.train.pack.pack) and padded (batches of `batch-size` examples in a fixed random order, padded
   to the longest of the batch): wall time, real tokens/s, and the share of the batch that is padding.
2. The loss of one fixed set of examples computed packed, padded, and one example at a time, before training:
   they must agree (packing must not change what is learned).
Prints one JSON object as the last line of stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="embedded")
    parser.add_argument("--examples", type=int, default=48)
    parser.add_argument("--max-length", type=int, default=1024)
    parser.add_argument("--batch-size", type=int, default=4)
    args = parser.parse_args()

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from atheus_ray import models
    from atheus_ray.config import ConditionConfig
    from atheus_ray.train.data import load_condition
    from atheus_ray.train.pack import collate, pack
    from atheus_ray.train.tokens import IGNORE, encode, ensure_chat_template

    torch.manual_seed(0)
    path = models.resolve(args.model)
    tokenizer = AutoTokenizer.from_pretrained(path)
    ensure_chat_template(tokenizer)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    found, _ = load_condition(ConditionConfig(name="seeds", paths=["seeds/*.jsonl"]))
    rows = random.Random(0).sample(sorted(found, key=lambda e: e["id"]), args.examples)
    examples = [e for e in (encode(r["messages"], tokenizer, args.max_length) for r in rows) if e]
    lengths = sorted(len(e["input_ids"]) for e in examples)
    real_tokens = sum(lengths)

    def model():
        m = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
        m.config.use_cache = False
        return m

    # 2. loss agreement on a fixed batch, before any training
    fixed = examples[: args.batch_size * 2]
    m = model().eval()
    with torch.no_grad():
        packed_loss = m(**collate(pack(fixed, args.max_length), pad, packed=True)).loss.item()
        padded_loss = m(**collate(fixed, pad, packed=False)).loss.item()
        counts = [sum(label != IGNORE for label in e["labels"][1:]) for e in fixed]
        single = sum(m(**collate([e], pad, packed=False)).loss.item() * n for e, n in zip(fixed, counts)) / sum(counts)
    del m

    # 1. one epoch of training steps each way
    packed_batches = pack(examples, args.max_length)
    order = examples[:]
    random.Random(1).shuffle(order)
    layouts = {
        "packed": [
            collate(packed_batches[i : i + args.batch_size], pad, packed=True)
            for i in range(0, len(packed_batches), args.batch_size)
        ],
        "padded": [
            collate(order[i : i + args.batch_size], pad, packed=False) for i in range(0, len(order), args.batch_size)
        ],
    }
    results = {}
    for name, batches in layouts.items():
        m = model().train()
        optimizer = torch.optim.AdamW(m.parameters(), lr=2e-5, betas=(0.9, 0.98), weight_decay=0.1)
        start = time.perf_counter()
        for batch in batches:
            m(**batch).loss.backward()
            torch.nn.utils.clip_grad_norm_(m.parameters(), 1.0)
            optimizer.step()
            optimizer.zero_grad()
        seconds = time.perf_counter() - start
        slots = sum(b["input_ids"].numel() for b in batches)
        results[name] = {
            "steps": len(batches),
            "sequences": sum(b["input_ids"].shape[0] for b in batches),
            "token_slots": slots,
            "padding_share": round(1 - real_tokens / slots, 3),
            "wall_s": round(seconds, 1),
            "real_tokens_per_s": round(real_tokens / seconds, 1),
        }
        del m, optimizer

    print(
        json.dumps(
            {
                "benchmark": "sft_packing",
                "machine": {"cpus": os.cpu_count(), "device": "cpu", "torch_threads": torch.get_num_threads()},
                "model": models.display_name(args.model),
                "examples": len(examples),
                "real_tokens": real_tokens,
                "example_tokens": {"min": lengths[0], "median": lengths[len(lengths) // 2], "max": lengths[-1]},
                "max_length": args.max_length,
                "batch_size": args.batch_size,
                **results,
                "speedup": round(results["packed"]["real_tokens_per_s"] / results["padded"]["real_tokens_per_s"], 2),
                "fixed_batch_loss": {
                    "packed": round(packed_loss, 6),
                    "padded": round(padded_loss, 6),
                    "one_by_one": round(single, 6),
                    "max_abs_diff": round(max(abs(packed_loss - padded_loss), abs(packed_loss - single)), 8),
                },
            }
        )
    )


if __name__ == "__main__":
    main()
