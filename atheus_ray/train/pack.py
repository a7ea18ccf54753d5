"""Batches for SFT: packing several examples per sequence, or padding.

Packing (`pack`): examples are placed first-fit, longest first, into sequences of at most `max_length`
tokens. Each example's `position_ids` restart at 0; `collate(packed=True)` passes no attention mask, and
transformers then builds a block-diagonal causal mask from the position ids (masking_utils,
`find_packed_sequence_indices`), so no token attends across an example boundary and the loss is the same as
for the examples one by one (tests/train/test_pack.py, benchmarks/sft_packing.py). The model must run with
`use_cache=False`: given a KV cache, transformers skips that mask and examples see each other.

Padding (`collate(packed=False)`): one example per row, padded to the longest in the batch with an attention
mask; the trainer groups examples of similar length into batches (`group_by_length`).
"""

from __future__ import annotations

import torch

from atheus_ray.train.tokens import IGNORE


def pack(examples: list[dict], max_length: int) -> list[dict]:
    """Pack {input_ids, labels} examples into {input_ids, labels, position_ids} sequences (first-fit decreasing)."""
    bins: list[list[dict]] = []
    room: list[int] = []
    for example in sorted(examples, key=lambda e: (-len(e["input_ids"]), e["input_ids"])):
        n = len(example["input_ids"])
        if n > max_length:
            raise ValueError(f"an example of {n} tokens is longer than max_length {max_length}; drop it first")
        k = next((i for i, r in enumerate(room) if r >= n), None)
        if k is None:
            bins.append([])
            room.append(max_length)
            k = len(bins) - 1
        bins[k].append(example)
        room[k] -= n
    return [
        {
            "input_ids": [t for e in group for t in e["input_ids"]],
            "labels": [t for e in group for t in e["labels"]],
            "position_ids": [p for e in group for p in range(len(e["input_ids"]))],
        }
        for group in bins
    ]


def collate(features: list[dict], pad_id: int, packed: bool) -> dict[str, torch.Tensor]:
    """Pad a batch to its longest row. Packed rows: pad positions restart at 0 (a separate, fully masked
    segment) and no attention mask; padded rows: an attention mask of ones over the real tokens."""
    width = max(len(f["input_ids"]) for f in features)
    batch = {"input_ids": [], "labels": [], ("position_ids" if packed else "attention_mask"): []}
    for f in features:
        n, extra = len(f["input_ids"]), width - len(f["input_ids"])
        batch["input_ids"].append(f["input_ids"] + [pad_id] * extra)
        batch["labels"].append(f["labels"] + [IGNORE] * extra)
        if packed:
            batch["position_ids"].append(f["position_ids"] + list(range(extra)))
        else:
            batch["attention_mask"].append([1] * n + [0] * extra)
    return {k: torch.tensor(v, dtype=torch.long) for k, v in batch.items()}
